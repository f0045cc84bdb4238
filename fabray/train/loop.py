"""The per-worker train function: one model, one Ray Train worker (DESIGN §4, §10).

`train_loop_per_worker(config)` runs inside the `TensorflowTrainer`'s single worker:

1. limits TensorFlow's threads to the worker's CPUs and sets the precision policy (here, not in
   the driver: the driver's global policy does not reach worker processes);
2. builds the model, or on a restart (`FailureConfig(max_failures)`) loads it, optimizer state
   included, from `ray.train.get_checkpoint()` and continues at the next epoch (logged as
   "resuming <model> from epoch k", and the next report carries `resumed_from_epoch`); a
   retrain (`fabray retrain`) instead starts from a parent model's weights (`init_model`);
3. fits on the window END rows that Ray Data shards to it (`get_dataset_shard("train")`),
   gathering each batch's windows from the series arrays (`ray.put` once by the driver);
4. after every epoch, scores the validation windows (gathered here from the same arrays, chunk by
   chunk) with `fabray.metrics`, updates early stopping, and reports the metrics WITH a checkpoint
   (`model.keras` + `state.json`): Train V2 keeps `result.metrics` only for reports that carry one.

The best epoch's model is the best checkpoint Ray keeps (`CheckpointConfig` scores on
`val_score`), so early stopping "restores best" by the driver taking that checkpoint. A retrain's
warm start is scored and checkpointed first, as epoch 0 (`report_warm_start`): when no fine-tuned
epoch beats the parent's weights on validation, they remain the best epoch and land unchanged.

A wall-clock budget (`WorkerSpec.deadline_unix`: this model's share of `fabray train --budget`,
see `fabray.train.budget`, or `fabray retrain`'s) stops training after the epoch whose successor
would not finish in time (judged by the last epoch's duration), or in the middle of an epoch once
the deadline has passed; that partial epoch is still validated and checkpointed, and the state
says `stopped_by_budget`.

What the worker is given and keeps (`WorkerSpec`, `EarlyStoppingState`, `validation_score`)
is `fabray.train.spec`.

Sampled epochs (`WorkerSpec.windows_per_epoch` / `epoch_fraction`, `fabray.train.sampling`):
the Ray Data shard still streams the worker's end rows; each epoch keeps only that epoch's
stratified sample (drawn from the training ends, the 4th array ref) and re-batches it.

Why one file of ~420 lines: it is the one function a Ray Train worker runs, with its private
steps (data, model, epochs, checkpoints, reports) in the order they run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
import warnings
from typing import Any

import numpy as np

from fabray.numeric import sigmoid
from fabray.train.spec import (
    MODEL_FILE,
    SCORE,
    STATE_FILE,
    VAL_CHUNK,
    EarlyStoppingState,
    WorkerSpec,
    budget_allows_next_epoch,
    clean_metrics,
    validation_score,
)

logger = logging.getLogger(__name__)

def _peak_rss_mb() -> float:
    """This process's peak resident memory so far, MiB (Linux reports ru_maxrss in KiB)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


# ---------------------------------------------------------------------------- worker pieces


def _limit_threads(cpus: float) -> None:
    """TensorFlow uses every core by default; a worker holding 0.5 CPU should use one thread."""
    import tensorflow as tf

    threads = max(1, int(math.ceil(cpus)))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TF already initialized in this process (a restart in the same actor)
        logger.debug("TF threads already fixed; keeping them")


def predict_windows(
    model: Any, features: np.ndarray, ends: np.ndarray, lookback: int, batch_size: int
) -> np.ndarray:
    """Model outputs [W] for the windows ending at `ends`, gathered chunk by chunk (float32)."""
    from fabray.data.windows import gather_windows

    outputs = []
    for start in range(0, len(ends), VAL_CHUNK):
        x = gather_windows(features, ends[start:start + VAL_CHUNK], lookback)  # [C, L, F]
        y = model.predict(x, batch_size=batch_size, verbose=0)  # [C, 1]
        outputs.append(np.asarray(y, dtype=np.float32).reshape(-1))
    return np.concatenate(outputs) if outputs else np.zeros(0, np.float32)  # [W]


def evaluate_validation(
    model: Any,
    loss_fn: Any,
    spec: WorkerSpec,
    features: np.ndarray,
    target: np.ndarray,
    val_ends: np.ndarray,
) -> dict[str, float]:
    """Validation loss and metrics ("val_"-prefixed) of the model on the validation windows."""
    import keras

    from fabray import metrics as fm

    output = predict_windows(model, features, val_ends, spec.lookback, spec.batch_size * 4)  # [W]
    y_true = target[val_ends].astype(np.float32)  # [W]
    loss = float(np.mean(keras.ops.convert_to_numpy(loss_fn(y_true[:, None], output[:, None]))))
    values = fm.event_metrics(y_true, sigmoid(output).astype(np.float32), spec.event_threshold)
    result = {"val_loss": loss, **{f"val_{k}": v for k, v in values.items()}}
    result[SCORE] = validation_score(values, loss)
    return result


def _compiled(model: Any, spec: WorkerSpec, loss: Any) -> Any:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(spec.learning_rate), loss=loss)
    return model


def warm_start_model(spec: WorkerSpec, init_model_path: str) -> Any:
    """A new model built from `spec` (architecture, precision policy) carrying the weights of
    the saved model at `init_model_path`. Only the weights move: the optimizer starts afresh
    at `spec.learning_rate`, and config-only values (the scaling layer's statistics, the rule
    model's rules) come from `spec.scaler` and `spec.overrides`. Refuses a saved model whose
    weights do not fit the architecture."""
    import keras

    import fabray.models  # noqa: F401 - registers the custom layers for load_model
    from fabray.models import build_model

    model = build_model(spec.model, spec.lookback, spec.n_features, spec.overrides, spec.scaler)
    parent = keras.saving.load_model(init_model_path, compile=False)
    source = parent.get_weights()
    target = model.get_weights()
    shapes = [w.shape for w in source], [w.shape for w in target]
    if shapes[0] != shapes[1]:
        raise ValueError(
            f"{spec.model}: the parent model's weights do not fit the model built from its "
            f"overrides ({len(shapes[0])} vs {len(shapes[1])} arrays). Received: parent shapes "
            f"{shapes[0][:6]}..., built {shapes[1][:6]}..."
        )
    model.set_weights(source)
    del parent
    return model


def _build_or_resume(
    spec: WorkerSpec, checkpoint: Any, init_model_path: str | None = None
) -> tuple[Any, EarlyStoppingState, Any]:
    """(compiled model, state, loss): from the last checkpoint after a restart; else from the
    parent's weights (`init_model_path`, a retrain); else fresh."""
    import keras

    from fabray.models import build_model, model_loss

    loss = keras.losses.get(model_loss(spec.model, spec.task, spec.overrides))
    if checkpoint is None:
        if init_model_path is not None:
            model = warm_start_model(spec, init_model_path)
            logger.info("%s: warm start from %s", spec.model, init_model_path)
            return _compiled(model, spec, loss), EarlyStoppingState(warm_started=True), loss
        model = build_model(spec.model, spec.lookback, spec.n_features, spec.overrides, spec.scaler)
        return _compiled(model, spec, loss), EarlyStoppingState(), loss
    with checkpoint.as_directory() as ckpt_dir:
        with open(os.path.join(ckpt_dir, STATE_FILE)) as fh:
            state = EarlyStoppingState.from_dict(json.load(fh)["state"])
        model = keras.saving.load_model(os.path.join(ckpt_dir, MODEL_FILE), compile=True)
    if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", True):
        _compiled(model, spec, loss)
    state.resumed_from.append(state.epoch + 1)
    # WARNING, not INFO: a restart is worth seeing in the worker's log at Ray's default level.
    logger.warning("resuming %s from epoch %d (best so far: epoch %d)", spec.model, state.epoch + 1,
                   state.best_epoch + 1)
    return model, state, loss


def _report_epoch(model: Any, state: EarlyStoppingState, metrics: dict[str, Any], epoch: int) -> None:
    """ray.train.report with a checkpoint (model.keras + state.json) written in a temp dir."""
    import ray.train

    rank = ray.train.get_context().get_world_rank()
    with tempfile.TemporaryDirectory(prefix="fabray-ckpt-") as tmp:
        checkpoint = None
        if rank == 0:
            model.save(os.path.join(tmp, MODEL_FILE))
            with open(os.path.join(tmp, STATE_FILE), "w") as fh:
                json.dump({"metrics": metrics, "state": state.to_dict()}, fh)
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=f"epoch_{epoch + 1:04d}")


def epoch_sampler(spec: WorkerSpec, target: np.ndarray, train_ends: np.ndarray | None) -> Any:
    """The `fabray.train.sampling.EpochSampler` of this model's sampled epochs; None: full epochs."""
    from fabray.train.sampling import EVENT_CUT, EpochSampler, epoch_sample_size

    if spec.windows_per_epoch is None and spec.epoch_fraction is None:
        return None
    if train_ends is None:
        raise ValueError("sampled epochs need the training ends (the 4th array ref); the driver passes them")
    size = epoch_sample_size(len(train_ends), spec.windows_per_epoch, spec.epoch_fraction)
    return EpochSampler.for_target(train_ends, target, EVENT_CUT, size, spec.seed)


def report_warm_start(model: Any, spec: WorkerSpec, state: EarlyStoppingState, loss_fn: Any,
                      features: np.ndarray, target: np.ndarray, val_ends: np.ndarray) -> dict[str, Any]:
    """Epoch 0 of a retrain: the parent's weights, scored on the validation windows like any
    epoch and reported with a checkpoint. A fine-tuned epoch must beat them to become the best
    one, so a retrain whose fine-tuning only loses keeps the parent's weights (best epoch 0)
    instead of its least bad epoch. Returns the report's metrics."""
    started = time.perf_counter()
    val = evaluate_validation(model, loss_fn, spec, features, target, val_ends)
    state.best_epoch, state.best_score, state.wait = -1, val[SCORE], 0
    metrics = clean_metrics({
        "model": spec.model, "epoch": 0, "epochs": spec.epochs, "warm_start": True, **val,
        "best_epoch": 0, "best_val_score": state.best_score, "improved": True,
        "stopped_early": False, "stopped_by_budget": False, "precision": state.precision,
        "epoch_seconds": time.perf_counter() - started, "peak_rss_mb": _peak_rss_mb(),
    })
    state.history.append(metrics)
    _report_epoch(model, state, metrics, -1)  # checkpoint "epoch_0000"
    return metrics


def _epoch_callback(spec, state, loss_fn, features, target, val_ends, epoch_windows=None):
    import keras

    resumed_from = state.resumed_from[-1] if state.resumed_from else None

    class EpochEnd(keras.callbacks.Callback):
        """Validation, early stopping, the budget and the checkpointed report after each epoch."""

        def on_epoch_begin(self, epoch, logs=None):
            self._started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if spec.deadline_unix is not None and time.time() >= spec.deadline_unix:
                state.stopped_by_budget = True
                self.model.stop_training = True  # Keras ends the epoch; on_epoch_end still runs

        def on_epoch_end(self, epoch, logs=None):
            nonlocal resumed_from
            logs = logs or {}
            fit_seconds = time.perf_counter() - self._started  # the training steps alone
            val = evaluate_validation(self.model, loss_fn, spec, features, target, val_ends)
            improved = state.update(epoch, val[SCORE], spec.patience)
            epoch_seconds = time.perf_counter() - self._started
            if not state.stopped_early and epoch + 1 < spec.epochs and not budget_allows_next_epoch(
                time.time(), spec.deadline_unix, epoch_seconds
            ):
                state.stopped_by_budget = True
            metrics = clean_metrics({
                "model": spec.model,
                "epoch": epoch + 1,  # 1-based in everything a person reads
                "epochs": spec.epochs,
                "epoch_windows": epoch_windows,  # the sample's size; None: every training window
                "loss": float(logs.get("loss", math.nan)),
                **val,
                "best_epoch": state.best_epoch + 1,
                "best_val_score": state.best_score,
                "improved": improved,
                "stopped_early": state.stopped_early,
                "stopped_by_budget": state.stopped_by_budget,
                "precision": state.precision,
                "epoch_seconds": epoch_seconds,
                "fit_seconds": fit_seconds,
                "peak_rss_mb": _peak_rss_mb(),
            })
            if resumed_from is not None:  # the first report after a restart says so
                metrics["resumed_from_epoch"] = resumed_from
                resumed_from = None
            state.history.append(metrics)
            # Keras' later callbacks (TensorBoard) see the validation metrics too.
            logs.update({k: v for k, v in metrics.items()
                         if k.startswith("val_") and isinstance(v, float)})
            if state.stopped_early or state.stopped_by_budget:
                self.model.stop_training = True
            _report_epoch(self.model, state, metrics, epoch)

    return EpochEnd()


def _write_init_model(blob: bytes, directory: str) -> str:
    path = os.path.join(directory, MODEL_FILE)
    with open(path, "wb") as fh:
        fh.write(blob)
    return path


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train entry point. config: {"spec": WorkerSpec.to_dict(), "arrays": [features_ref,
    target_ref, val_ends_ref(, train_ends_ref: sampled epochs)], "init_model": None or [ref of a
    .keras file's bytes]}.
    Returns the final early-stopping state (history included)."""
    import keras
    import ray
    import ray.train

    from fabray.train.precision import apply_precision
    from fabray.train.ray_windows import shard_to_tf_dataset

    spec = WorkerSpec.from_dict(config["spec"])
    # Ray Data's shard has no known length: Keras learns an epoch's end by running out of
    # batches, as intended, and warns about it every epoch.
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    _limit_threads(spec.cpus)
    precision = apply_precision(spec.precision)
    keras.utils.set_random_seed(spec.seed)
    refs = list(config["arrays"])
    features, target, val_ends = ray.get(refs[:3])  # [N, F], [N], [V]
    sampler = epoch_sampler(spec, target, ray.get(refs[3]) if len(refs) > 3 else None)

    checkpoint = ray.train.get_checkpoint()
    init_refs = config.get("init_model")  # the parent's model file, bytes, inside a list
    with tempfile.TemporaryDirectory(prefix="fabray-init-") as tmp:
        init_path = None
        if checkpoint is None and init_refs:
            init_path = _write_init_model(ray.get(init_refs[0]), tmp)
        model, state, loss_fn = _build_or_resume(spec, checkpoint, init_path)
    state.precision = precision
    if checkpoint is None and init_refs:
        report_warm_start(model, spec, state, loss_fn, features, target, val_ends)
    next_epoch = state.epoch + 1
    if state.stopped_early or state.stopped_by_budget or next_epoch >= spec.epochs:
        logger.info("%s: nothing left to train (epoch %d, stopped_early=%s, stopped_by_budget=%s)",
                    spec.model, next_epoch, state.stopped_early, state.stopped_by_budget)
        return state.to_dict()

    shard = ray.train.get_dataset_shard("train")
    if sampler is not None:  # this epoch's sample only, counted from the absolute epoch
        from fabray.train.sampling import SampledShard

        shard = SampledShard(shard, sampler, first_epoch=next_epoch)
    train_ds = shard_to_tf_dataset(
        shard, features, target, spec.lookback, spec.batch_size,
        shuffle_buffer=spec.shuffle_buffer, seed=spec.seed + next_epoch,
    )  # (x [B, L, F], y [B, 1])
    callbacks = [_epoch_callback(spec, state, loss_fn, features, target, val_ends,
                                 None if sampler is None else sampler.size)]
    tensorboard = _tensorboard_callback(spec, ray.train.get_context().get_world_rank())
    if tensorboard is not None:
        callbacks.append(tensorboard)  # after EpochEnd, which adds the val_ metrics to the logs
    model.fit(
        train_ds,
        epochs=spec.epochs,
        initial_epoch=next_epoch,
        shuffle=False,  # the shard is shuffled by Ray Data's local buffer
        callbacks=callbacks,
        verbose=0,
    )
    return state.to_dict()


def _tensorboard_callback(spec: WorkerSpec, rank: int) -> Any:
    """Per-epoch TensorBoard scalars in `spec.tensorboard_dir`, on rank 0 only; None without a
    directory or on other ranks. Layout as Keras': `train/` (loss) and `validation/` (the
    `val_` metrics `EpochEnd` adds to the epoch's logs), tags `epoch_<metric>`.

    Keras' `TensorBoard` callback when the `tensorboard` package is installed (TensorFlow 2.21
    no longer pulls it in); else `_EpochScalars`, the same scalars through TensorFlow's core
    summary ops, so the files exist either way. The directory is a path on the worker's node:
    on one machine (or a shared file system) it is inside the run directory and
    `tensorboard --logdir RUN` shows every model. A restarted worker appends a new events file.
    """
    if spec.tensorboard_dir is None or rank != 0:
        return None
    os.makedirs(spec.tensorboard_dir, exist_ok=True)
    try:
        import tensorboard  # noqa: F401 - tf.summary.scalar needs it

        import keras
    except ImportError:
        return _EpochScalars(spec.tensorboard_dir)
    return keras.callbacks.TensorBoard(
        log_dir=spec.tensorboard_dir, histogram_freq=0, write_graph=False, update_freq="epoch",
        profile_batch=0,
    )


def _EpochScalars(log_dir: str) -> Any:  # noqa: N802 - a class factory (keras imported lazily)
    """A Keras callback writing each epoch's numeric logs as TensorBoard scalars (core TF ops)."""
    import keras
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"  # TensorBoard's scalar dashboard

    class EpochScalars(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self._writers = {
                part: tf.summary.create_file_writer(os.path.join(log_dir, part))
                for part in ("train", "validation")
            }

        def on_epoch_end(self, epoch, logs=None):
            for key, value in (logs or {}).items():
                if not isinstance(value, (int, float, np.floating, np.integer)) or isinstance(value, bool):
                    continue
                part, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
                with self._writers[part].as_default():
                    tf.summary.write(f"epoch_{tag}", tf.constant(float(value)), step=epoch,
                                     metadata=metadata)
            for writer in self._writers.values():
                writer.flush()

        def on_train_end(self, logs=None):
            for writer in self._writers.values():
                writer.close()

    return EpochScalars()
