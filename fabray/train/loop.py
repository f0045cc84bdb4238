"""The per-worker train function: one model, one Ray Train worker (DESIGN §4, §10).

`train_loop_per_worker(config)` runs inside the `TensorflowTrainer`'s single worker:

1. limits TensorFlow's threads to the worker's CPUs and sets the precision policy (here, not in
   the driver: the driver's global policy does not reach worker processes);
2. builds the model, or on a restart (`FailureConfig(max_failures)`) loads it, optimizer state
   included, from `ray.train.get_checkpoint()` and continues at the next epoch;
3. fits on the window END rows that Ray Data shards to it (`get_dataset_shard("train")`),
   gathering each batch's windows from the series arrays (`ray.put` once by the driver);
4. after every epoch, scores the validation windows (gathered here from the same arrays, chunk by
   chunk) with `fabray.metrics`, updates early stopping, and reports the metrics WITH a checkpoint
   (`model.keras` + `state.json`): Train V2 keeps `result.metrics` only for reports that carry one.

The best epoch's model is the best checkpoint Ray keeps (`CheckpointConfig` scores on
`val_score`), so early stopping "restores best" by the driver taking that checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
STATE_FILE = "state.json"
#: The key every report carries and checkpoints are ranked by (higher is better).
SCORE = "val_score"
VAL_CHUNK = 4096  # validation windows gathered and scored at once: [4096, L, F]


@dataclass(frozen=True)
class WorkerSpec:
    """Everything one model's worker needs besides the arrays (plain values: pickles anywhere)."""

    model: str
    overrides: dict[str, Any]
    task: str  # "event" | "delay"
    lookback: int
    n_features: int
    epochs: int
    batch_size: int
    learning_rate: float
    patience: int
    precision: str
    shuffle_buffer: int
    event_threshold: float
    seed: int
    cpus: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerSpec:
        return cls(**data)


@dataclass
class EarlyStoppingState:
    """What survives a restart: where training is and the best score so far."""

    epoch: int = -1  # last finished epoch (0-based); -1 before the first
    best_epoch: int = -1
    best_score: float = -math.inf
    wait: int = 0  # epochs since the best one
    stopped_early: bool = False
    precision: str = "float32"
    history: list[dict[str, Any]] = field(default_factory=list)

    def update(self, epoch: int, score: float, patience: int) -> bool:
        """Record epoch `epoch`'s score; True when it is the best so far."""
        self.epoch = epoch
        improved = score > self.best_score
        if improved:
            self.best_epoch, self.best_score, self.wait = epoch, score, 0
        else:
            self.wait += 1
        self.stopped_early = self.wait >= patience
        return improved

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["best_score"] = _finite_or_none(self.best_score)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EarlyStoppingState:
        data = dict(data)
        if data.get("best_score") is None:
            data["best_score"] = -math.inf
        return cls(**data)


def validation_score(task: str, metrics: dict[str, float], val_loss: float) -> float:
    """One number to rank epochs by, higher is better.

    task "event": validation PR-AUC (F1 and PR-AUC decide, DESIGN §1; PR-AUC needs no threshold);
    when it is undefined (validation holds one class only) −val_loss, for every epoch alike since
    the validation set does not change. task "delay": −MAE.
    """
    if task == "event":
        value = metrics.get("pr_auc", math.nan)
        return float(value) if math.isfinite(value) else -float(val_loss)
    return -float(metrics["mae"])


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _clean(metrics: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe metrics: NaN/inf → None, numpy → Python."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, (float, np.floating)):
            out[key] = _finite_or_none(float(value))
        elif isinstance(value, np.integer):
            out[key] = int(value)
        else:
            out[key] = value
    return out


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


def _sigmoid(logit: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(logit.astype(np.float64), -60.0, 60.0)))).astype(np.float32)


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
    if spec.task == "event":
        values = fm.event_metrics(y_true, _sigmoid(output), spec.event_threshold)
    else:
        values = fm.delay_metrics(y_true, output)
    result = {"val_loss": loss, **{f"val_{k}": v for k, v in values.items()}}
    result[SCORE] = validation_score(spec.task, values, loss)
    return result


def _build_or_resume(spec: WorkerSpec, checkpoint: Any) -> tuple[Any, EarlyStoppingState, Any]:
    """(compiled model, state, loss) — fresh, or from the last checkpoint after a restart."""
    import keras

    from fabray.models import build_model, model_loss

    loss = keras.losses.get(model_loss(spec.model, spec.task, spec.overrides))
    if checkpoint is None:
        model = build_model(spec.model, spec.lookback, spec.n_features, spec.overrides)
        model.compile(optimizer=keras.optimizers.Adam(spec.learning_rate), loss=loss)
        return model, EarlyStoppingState(), loss
    with checkpoint.as_directory() as ckpt_dir:
        with open(os.path.join(ckpt_dir, STATE_FILE)) as fh:
            state = EarlyStoppingState.from_dict(json.load(fh)["state"])
        model = keras.saving.load_model(os.path.join(ckpt_dir, MODEL_FILE), compile=True)
    if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", True):
        model.compile(optimizer=keras.optimizers.Adam(spec.learning_rate), loss=loss)
    logger.info("%s: resumed after epoch %d (best %d)", spec.model, state.epoch + 1, state.best_epoch + 1)
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


def _epoch_callback(spec, state, loss_fn, features, target, val_ends):
    import keras

    class EpochEnd(keras.callbacks.Callback):
        """Validation, early stopping and the checkpointed report after each epoch."""

        def on_epoch_begin(self, epoch, logs=None):
            self._started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            val = evaluate_validation(self.model, loss_fn, spec, features, target, val_ends)
            improved = state.update(epoch, val[SCORE], spec.patience)
            metrics = _clean({
                "model": spec.model,
                "epoch": epoch + 1,  # 1-based in everything a person reads
                "epochs": spec.epochs,
                "loss": float(logs.get("loss", math.nan)),
                **val,
                "best_epoch": state.best_epoch + 1,
                "best_val_score": state.best_score,
                "improved": improved,
                "stopped_early": state.stopped_early,
                "precision": state.precision,
                "epoch_seconds": time.perf_counter() - self._started,
            })
            state.history.append(metrics)
            if state.stopped_early:
                self.model.stop_training = True
            _report_epoch(self.model, state, metrics, epoch)

    return EpochEnd()


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train entry point. config: {"spec": WorkerSpec.to_dict(), "arrays": [features_ref,
    target_ref, val_ends_ref]}. Returns the final early-stopping state (history included)."""
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
    features, target, val_ends = ray.get(list(config["arrays"]))  # [N, F], [N], [V]

    model, state, loss_fn = _build_or_resume(spec, ray.train.get_checkpoint())
    state.precision = precision
    next_epoch = state.epoch + 1
    if state.stopped_early or next_epoch >= spec.epochs:
        logger.info("%s: nothing left to train (epoch %d, stopped_early=%s)", spec.model, next_epoch, state.stopped_early)
        return state.to_dict()

    train_ds = shard_to_tf_dataset(
        ray.train.get_dataset_shard("train"), features, target, spec.lookback, spec.batch_size,
        shuffle_buffer=spec.shuffle_buffer, seed=spec.seed + next_epoch,
    )  # (x [B, L, F], y [B, 1])
    model.fit(
        train_ds,
        epochs=spec.epochs,
        initial_epoch=next_epoch,
        shuffle=False,  # the shard is shuffled by Ray Data's local buffer
        callbacks=[_epoch_callback(spec, state, loss_fn, features, target, val_ends)],
        verbose=0,
    )
    return state.to_dict()
