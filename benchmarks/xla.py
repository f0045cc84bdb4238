"""XLA (`jit_compile`) and input-pipeline settings per model, on CPU, in one process.

    flock /tmp/fabray-heavy.lock .venv/bin/python benchmarks/xla.py [--out benchmarks/results/xla.json]
        [--models lstm,gru,...] [--steps 10] [--rounds 3] [--threads N] [--rows 40000]

What it measures, for each of the six models at default size (lookback and batch size from the
default `FabrayConfig`, the simulator's 16 zones, features as `fabray train` prepares them, the
overrides from `fabray.train.prepare.effective_overrides`, every model's scaling layer from the
fitted scaler), all in the same
run so that every figure has its baseline next to it:

- **settings**, each a Keras `fit` of `--steps` timed steps (after one untimed step per call, in
  which the iterator starts) on the model compiled as `fabray.train.loop._compiled` does (Adam at
  `train.learning_rate`, the model's loss), measured `--rounds` times, the settings interleaved
  in each round (rotated order), windows/s = steps × batch / seconds:
  - `current`: `jit_compile=False` (what training runs on CPU: Keras' default `"auto"` resolves to
    False on a CPU-only TensorFlow, see `keras.src.trainers.trainer._resolve_auto_jit_compile`),
    fed by `fabray.train.ray_windows.shard_to_tf_dataset` over a Ray Data dataset of training end
    rows (`window_index_dataset`, local shuffle buffer `train.shuffle_buffer`): the training input;
  - `xla`: the same with `jit_compile=True` (same initial weights);
  - `prefetch_autotune`: `current` with the generator's tf.data `prefetch(AUTOTUNE)` instead of
    `prefetch(2)` and Ray Data's `prefetch_batches=2` instead of 1;
  - `parallel_gather`: Ray Data yields only each batch's end rows; the windows are gathered in a
    tf.data `map(num_parallel_calls=AUTOTUNE, deterministic=False)` (`tf.gather` as
    `fabray.data.tf_windows`), then `prefetch(AUTOTUNE)`;
  - `memory` (a reference, not a candidate): the same windows pre-gathered in memory, no input
    cost at all — how much any input setting could gain at most.
- per model: whether XLA compiled (the effective `model.jit_compile` after compile, or the error),
  the first step's seconds with and without XLA (tracing, plus XLA's compilation), and the
  numerical sanity: both models start from the same weights and take the same `--sanity-steps`
  steps on the same in-memory batches; the loss on fixed held-out training windows before and
  after, each model's, and their relative difference.
- once: each input pipeline alone (no model), windows/s over 40 batches.

TensorFlow's threads are limited as a training worker limits them (`fabray.train.loop._limit_threads`
with `train.resources.cpus`, 1 by default; `--threads` overrides). Printed: JSON with the load
average at start and end, CPUs, versions, per model the windows/s per setting (median, each
round's figure, spread = (max − min) / median) and the ratio to `current` (median over rounds of
the ratio within the round). A setting "helps" a model when its median ratio is > 1.15 and its
worst round's ratio > 1. Not part of `make test`; no test asserts on its timings.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

logger = logging.getLogger("benchmarks.xla")

ZONES = 16
SETTINGS = ("current", "xla", "prefetch_autotune", "parallel_gather", "memory")
CANDIDATES = ("xla", "prefetch_autotune", "parallel_gather")  # `memory` is a reference only
HELPS_RATIO = 1.15
PIPELINE_BATCHES = 40
EVAL_BATCHES = 4


# ---------------------------------------------------------------------------- data and inputs


def prepare_data(rows: int, seed: int) -> tuple[Any, Any, dict[str, Any]]:
    """(FabrayConfig, PreparedData, facts): simulated rows prepared as `fabray train` does."""
    from fabray.config import FabrayConfig, SimulationConfig
    from fabray.data.context import ContextSpec
    from fabray.data.simulate import SimulationSize, simulate
    from fabray.data.windows import prepare

    config = FabrayConfig()
    df = simulate(SimulationSize(zones=ZONES, minutes=math.ceil(rows / ZONES), rows=rows),
                  SimulationConfig(), seed=seed)
    context = ContextSpec.from_site(config.site, config.task.horizon, list(df.columns))
    prepared = prepare(df, config.task, config.split, context=context)
    facts = {"rows": rows, "zones": ZONES, "n_features": int(prepared.features.shape[1]),
             "lookback": config.task.lookback, "task": config.task.task,
             "train_windows": int(len(prepared.splits["train"]))}
    return config, prepared, facts


def _ray_generator_dataset(index_ds: Any, features: np.ndarray, target: np.ndarray, lookback: int,
                           batch_size: int, shuffle_buffer: int, seed: int, *, gather_in_map: bool,
                           ray_prefetch: int) -> Any:
    """The Ray Data → tf.data input of `shard_to_tf_dataset` with other settings: Ray Data's
    `prefetch_batches`, tf.data's `prefetch(AUTOTUNE)`, and optionally the gather moved into a
    parallel, non-deterministic tf.data map. (x [B, L, F], y [B, 1]) float32."""
    import tensorflow as tf

    from fabray.data.windows import gather_windows
    from fabray.train.ray_windows import END

    n_features = features.shape[1]

    def batches():
        for batch in index_ds.iter_batches(batch_size=batch_size, batch_format="numpy",
                                           prefetch_batches=ray_prefetch,
                                           local_shuffle_buffer_size=shuffle_buffer,
                                           local_shuffle_seed=seed):
            ends = batch[END].astype(np.int64)  # [B]
            if gather_in_map:
                yield ends
            else:
                yield gather_windows(features, ends, lookback), target[ends][:, None]

    if not gather_in_map:
        signature = (tf.TensorSpec((None, lookback, n_features), tf.float32),
                     tf.TensorSpec((None, 1), tf.float32))
        return tf.data.Dataset.from_generator(batches, output_signature=signature).prefetch(tf.data.AUTOTUNE)
    series, labels = tf.constant(features), tf.constant(target)  # [N, F], [N]
    offsets = tf.range(1 - lookback, 1, dtype=tf.int64)  # [L]

    def to_windows(ends):
        x = tf.gather(series, ends[:, None] + offsets[None, :])  # [B, L, F]
        return x, tf.gather(labels, ends)[:, None]  # [B, 1]

    ds = tf.data.Dataset.from_generator(batches, output_signature=tf.TensorSpec((None,), tf.int64))
    ds = ds.map(to_windows, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    return ds.prefetch(tf.data.AUTOTUNE)


def memory_batches(features: np.ndarray, target: np.ndarray, ends: np.ndarray, lookback: int,
                   batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """x [W, L, F], y [W, 1]: the windows ending at `ends`, gathered once."""
    from fabray.data.windows import gather_windows

    return gather_windows(features, ends, lookback), target[ends][:, None].astype(np.float32)


def pipelines(config: Any, prepared: Any, seed: int, memory_windows: int) -> dict[str, Any]:
    """name → tf.data.Dataset of (x, y) batches, re-iterable (each `fit` starts it afresh)."""
    import tensorflow as tf

    from fabray.train.ray_windows import shard_to_tf_dataset, window_index_dataset

    train = config.train
    lookback = config.task.lookback
    features = np.ascontiguousarray(prepared.features, dtype=np.float32)  # [N, F]
    target = np.ascontiguousarray(prepared.fit_target, dtype=np.float32)  # [N]
    ends = prepared.splits["train"]
    index_ds = window_index_dataset(ends, seed=seed)
    common = dict(index_ds=index_ds, features=features, target=target, lookback=lookback,
                  batch_size=train.batch_size, shuffle_buffer=train.shuffle_buffer, seed=seed)
    x, y = memory_batches(features, target, np.random.default_rng(seed).permutation(ends)[:memory_windows],
                          lookback, train.batch_size)
    return {
        "current": shard_to_tf_dataset(index_ds, features, target, lookback, train.batch_size,
                                       shuffle_buffer=train.shuffle_buffer, seed=seed),
        "prefetch_autotune": _ray_generator_dataset(**common, gather_in_map=False, ray_prefetch=2),
        "parallel_gather": _ray_generator_dataset(**common, gather_in_map=True, ray_prefetch=2),
        "memory": tf.data.Dataset.from_tensor_slices((x, y)).batch(train.batch_size).repeat(),
    }


def pipeline_rate(ds: Any, batches: int) -> float:
    """Windows/s of a dataset alone (no model), over `batches` batches after the first."""
    it = iter(ds)
    next(it)
    started, n = time.perf_counter(), 0
    for _ in range(batches):
        x, _y = next(it)
        n += int(x.shape[0])
    return n / (time.perf_counter() - started)


# ---------------------------------------------------------------------------- models


def _step_times() -> Any:
    import keras

    class StepTimes(keras.callbacks.Callback):
        """Wall-clock time at the start of fit and at the end of every step."""

        def on_train_begin(self, logs=None):
            self.begin, self.ends = time.perf_counter(), []

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())

    return StepTimes()


def compiled(name: str, config: Any, overrides: dict, n_features: int, weights: list | None,
             jit: bool, scaler: Any = None) -> Any:
    """The model compiled as `fabray.train.loop._compiled` does, with `jit_compile=jit`."""
    import keras

    from fabray.models import build_model, model_loss

    model = build_model(name, config.task.lookback, n_features, overrides, scaler)
    if weights is not None:
        model.set_weights(weights)
    loss = keras.losses.get(model_loss(name, config.task.task, overrides))
    model.compile(optimizer=keras.optimizers.Adam(config.train.learning_rate), loss=loss, jit_compile=jit)
    return model


def timed_fit(model: Any, ds: Any, steps: int, batch_size: int) -> float:
    """Windows/s over `steps` steps of one `fit` call, after its first (untimed) step."""
    timer = _step_times()
    model.fit(ds, steps_per_epoch=steps + 1, epochs=1, verbose=0, shuffle=False, callbacks=[timer])
    return steps * batch_size / (timer.ends[-1] - timer.ends[0])


def bench_model(name: str, config: Any, overrides: dict, n_features: int, inputs: dict[str, Any],
                sanity: tuple[Any, Any], steps: int, rounds: int, sanity_steps: int,
                scaler: Any = None) -> dict[str, Any]:
    """One model: XLA compiles?, first-step seconds, numerical sanity, and the settings' rates."""
    import keras

    from fabray.models import build_model

    keras.utils.set_random_seed(config.train.seed)
    weights = build_model(name, config.task.lookback, n_features, overrides, scaler).get_weights()
    (train_x, train_y), (eval_x, eval_y) = sanity
    out: dict[str, Any] = {"params": int(sum(np.prod(w.shape) for w in weights))}
    models: dict[bool, Any] = {}
    losses: dict[str, float] = {}
    for jit in (False, True):
        key = "xla" if jit else "no_xla"
        try:
            model = compiled(name, config, overrides, n_features, weights, jit, scaler)
            out[f"jit_compile_effective_{key}"] = bool(model.jit_compile)
            if "initial_loss" not in out:
                out["initial_loss"] = float(model.evaluate(eval_x, eval_y, batch_size=len(eval_x), verbose=0))
            timer = _step_times()
            model.fit(train_x, train_y, batch_size=config.train.batch_size, epochs=1, shuffle=False,
                      verbose=0, callbacks=[timer])  # the same sanity_steps batches for both
            out[f"first_step_s_{key}"] = round(timer.ends[0] - timer.begin, 3)
            losses[key] = float(model.evaluate(eval_x, eval_y, batch_size=len(eval_x), verbose=0))
            models[jit] = model
        except Exception as err:  # noqa: BLE001 - an XLA failure is a finding, not a crash
            logger.warning("%s jit_compile=%s failed: %s", name, jit, err)
            out[f"error_{key}"] = f"{type(err).__name__}: {str(err)[:600]}"
            if not jit:
                raise
    out["xla_compiles"] = True in models and out.get("jit_compile_effective_xla", False)
    out["sanity_steps"] = sanity_steps
    out["loss_after"] = {k: round(v, 6) for k, v in losses.items()}
    if "xla" in losses:
        out["loss_after_rel_diff"] = round(abs(losses["xla"] - losses["no_xla"]) / max(abs(losses["no_xla"]), 1e-12), 6)
        out["xla_compile_s_est"] = round(out["first_step_s_xla"] - out["first_step_s_no_xla"], 3)

    runs: dict[str, list[float]] = {s: [] for s in SETTINGS if s != "xla" or True in models}
    order = list(runs)
    for r in range(rounds):
        for setting in order[r % len(order):] + order[:r % len(order)]:  # rotated each round
            model = models[setting == "xla"]
            ds = inputs["current" if setting == "xla" else setting]
            runs[setting].append(timed_fit(model, ds, steps, config.train.batch_size))
    base = runs["current"]
    settings = {}
    for setting, rates in runs.items():
        ratios = [rate / b for rate, b in zip(rates, base)]  # paired within each round
        med = statistics.median(rates)
        settings[setting] = {
            "windows_per_s": round(med, 1), "rounds": [round(v, 1) for v in rates],
            "spread": round((max(rates) - min(rates)) / med, 3),
            "ratio_vs_current": round(statistics.median(ratios), 3),
            "ratio_rounds": [round(v, 3) for v in ratios],
        }
        if setting in CANDIDATES:
            settings[setting]["helps"] = statistics.median(ratios) > HELPS_RATIO and min(ratios) > 1.0
    out["settings"] = settings
    models.clear()
    keras.backend.clear_session()
    return out


# ---------------------------------------------------------------------------- main


def summarize(per_model: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per candidate setting: the models it helps, and the median ratio over the models."""
    out = {}
    for setting in CANDIDATES:
        rows = {n: m["settings"][setting] for n, m in per_model.items() if setting in m.get("settings", {})}
        out[setting] = {
            "helps": sorted(n for n, s in rows.items() if s.get("helps")),
            "median_ratio_over_models": round(statistics.median(s["ratio_vs_current"] for s in rows.values()), 3)
            if rows else None,
            "ratio_by_model": {n: s["ratio_vs_current"] for n, s in rows.items()},
        }
    memory = {n: m["settings"]["memory"]["ratio_vs_current"] for n, m in per_model.items() if "settings" in m}
    out["memory_reference"] = {"ratio_by_model": memory,
                               "note": "no input cost at all: the most any input setting could gain"}
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from fabray.models import MODELS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated model names")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per fit call")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions of every setting")
    parser.add_argument("--sanity-steps", type=int, default=5, help="steps of the numerical sanity check")
    parser.add_argument("--threads", type=int, default=None,
                        help="TensorFlow threads (default: as a training worker, ceil(train.resources.cpus))")
    parser.add_argument("--rows", type=int, default=40_000, help="simulated rows (16 zones)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    started = time.time()
    load_start = os.getloadavg()

    config, prepared, facts = prepare_data(args.rows, args.seed)
    threads = args.threads or max(1, math.ceil(config.train.resources.cpus))
    from fabray.train.loop import _limit_threads

    _limit_threads(threads)  # before TensorFlow runs anything, as in a training worker
    import keras
    import ray
    import tensorflow as tf

    from fabray.train.prepare import effective_overrides
    from fabray.train.precision import apply_precision

    precision = apply_precision(config.train.precision)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    overrides = effective_overrides(config, names)
    n_features, batch = facts["n_features"], config.train.batch_size
    lookback = config.task.lookback

    # The sanity batches: the same for both jit settings (training ends, fixed order).
    rng = np.random.default_rng(args.seed + 1)
    picked = rng.permutation(prepared.splits["train"])[: (args.sanity_steps + EVAL_BATCHES) * batch]
    features = np.ascontiguousarray(prepared.features, dtype=np.float32)
    target = np.ascontiguousarray(prepared.fit_target, dtype=np.float32)
    sanity = (memory_batches(features, target, picked[: args.sanity_steps * batch], lookback, batch),
              memory_batches(features, target, picked[args.sanity_steps * batch:], lookback, batch))

    ray.init(address="local", num_cpus=os.cpu_count() or 2, object_store_memory=200 * 2**20,
             include_dashboard=False, log_to_driver=False)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        inputs = pipelines(config, prepared, args.seed, memory_windows=16 * batch)
        pipe = {name: round(pipeline_rate(ds, PIPELINE_BATCHES), 1) for name, ds in inputs.items()
                if name != "memory"}
        logger.info("pipelines alone (windows/s): %s", pipe)
        per_model: dict[str, Any] = {}
        for name in names:
            t0 = time.time()
            try:
                per_model[name] = bench_model(name, config, overrides[name], n_features, inputs, sanity,
                                              args.steps, args.rounds, args.sanity_steps, prepared.scaler)
            except Exception as err:  # noqa: BLE001 - report and go on with the other models
                logger.exception("%s failed", name)
                per_model[name] = {"error": f"{type(err).__name__}: {str(err)[:600]}"}
            per_model[name]["wall_s"] = round(time.time() - t0, 1)
            logger.info("%s: %s", name, json.dumps(per_model[name].get("settings", per_model[name]))[:600])
    finally:
        ray.shutdown()

    result = {
        "benchmark": "xla",
        "what": "training windows/s per model on CPU: jit_compile False (current) vs True, and input "
                "pipeline settings, interleaved rounds in one process; ratios are paired within a round",
        "cpus": os.cpu_count(), "tf_threads": threads, "precision": precision,
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "ray": ray.__version__,
                     "python": platform.python_version()},
        "keras_auto_jit_on_cpu": "off: jit_compile='auto' resolves to False when TensorFlow sees no "
                                 "non-CPU device (keras.src.trainers.trainer._resolve_auto_jit_compile)",
        "data": facts, "batch_size": batch, "shuffle_buffer": config.train.shuffle_buffer,
        "learning_rate": config.train.learning_rate, "steps": args.steps, "rounds": args.rounds,
        "helps_rule": f"median paired ratio > {HELPS_RATIO} and every round's ratio > 1",
        "load_average_start": [round(v, 2) for v in load_start],
        "pipeline_alone_windows_per_s": pipe,
        "models": per_model,
        "summary": summarize(per_model),
        "wall_s": round(time.time() - started, 1),
        "load_average_end": [round(v, 2) for v in os.getloadavg()],
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
