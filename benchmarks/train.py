"""Training on Ray vs its baselines: throughput, concurrency, and one `poc` epoch's time and memory.

    python benchmarks/train.py [--quick] [--json OUT] [--only throughput,concurrency,poc]

Three measurements, each with its baseline measured in the same invocation (so the figures are
ratios that survive a noisy machine):

1. **throughput**: windows/s of one model trained through Ray Train (`fabray.train.driver`:
   a single-worker `TensorflowTrainer` fed by Ray Data shards of window end rows) vs the same
   model in a plain `model.fit` on the same windows in one process (`fabray.data.tf_windows`,
   the local tf.data path), with the same batch size and the same number of TensorFlow threads
   (the worker's CPUs). Timed: the training steps of every epoch after the first (tracing and
   warm-up excluded), from Keras callbacks on both sides. Goal: ratio >= 0.9.
2. **concurrency**: the six models (tiny sizes) trained concurrently, one trainer each, vs one
   after another with the same per-model resources; wall time of the whole `train_models`
   call each way. ratio = sequential / concurrent (> 1: concurrency pays).
3. **poc**: every model at its default (seed) size on the `poc` preset (781,163 rows, the whole
   series in Ray's object store): a fixed number of steps per model, one model at a time on one
   CPU; each worker's peak RSS (ru_maxrss, reported by the worker itself) and the driver's. The
   full-epoch time is an EXTRAPOLATION from the timed steps (second epoch of `--poc-steps`
   steps, after a first that includes tracing) to the train split's windows: labelled as such.
   Goal: every process <= 3 GB.

`--quick`: a smoke run on the `tiny` preset with tiny models, and two models (lstm, rule) instead
of six in sections 2 and 3 (a few minutes here); its numbers are not the benchmark's.
The plain baseline runs in a subprocess: TensorFlow's thread count is fixed at its start, and
its peak RSS must not mix with the driver's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

logger = logging.getLogger("benchmarks.train")

SECTIONS = ("throughput", "concurrency", "poc")
POC_ROWS = 781_163
RSS_GOAL_MB = 3 * 1024
RATIO_GOAL = 0.9
TINY = {
    "lstm": {"lstm_units": [8], "head_units": [8]},
    "gru": {"gru_units": [8], "head_units": [8]},
    "cnn_lstm": {"conv_filters": 4, "lstm_units": [8], "head_units": [8]},
    "spike": {"conv_filters": 8, "num_heads": 2, "key_dim": 4, "bilstm_units": 4, "head_units": [8]},
    "rule": {"lstm_units": 4, "head_units": [4]},
    "patchtst": {"d_model": 8, "num_heads": 2, "d_ff": 16, "num_layers": 1},
}
SMALL = {  # the throughput model in a full run: big enough that compute, not overhead, dominates
    "lstm": {"lstm_units": [64, 32], "head_units": [32]},
}


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# ---------------------------------------------------------------------------- data and jobs


def _data(preset: str, seed: int, work: Path) -> Path:
    from fabray.data.io import write_table
    from fabray.data.simulate import simulate_preset

    path = work / f"{preset}.parquet"
    started = time.perf_counter()
    write_table(simulate_preset(preset, seed=seed), path)
    logger.info("simulated %s in %.1f s", preset, time.perf_counter() - started)
    return path


def _job(data: Path, out: Path, train: dict[str, Any], n_train: int, n_val: int, seed: int):
    """A `PreparedRun` whose trainers see `n_train` training windows drawn at random from the
    data's train split and the first `n_val` validation windows."""
    from fabray.config import FabrayConfig
    from fabray.train.prepare import prepare_run
    from fabray.train.replay import TrainSeries

    job = prepare_run(data, out, FabrayConfig.model_validate({"train": train}))
    series = TrainSeries.of(job.prepared)
    rng = np.random.default_rng(seed)
    n_train = min(n_train, len(series.train_ends))
    train_ends = np.sort(rng.choice(series.train_ends, size=n_train, replace=False))
    return dataclasses.replace(job, series=dataclasses.replace(
        series, train_ends=train_ends, val_ends=series.val_ends[:n_val]))


def _history(summary: Any, name: str) -> list[dict[str, Any]]:
    entry = summary.manifest["models"][name]
    if entry["status"] != "ok":
        raise RuntimeError(f"{name} did not train: {entry.get('error')}")
    return json.loads((summary.run_dir / entry["history"]).read_text())["epochs"]


def _train_config(models: Sequence[str], overrides: dict, epochs: int, batch: int, cpus: float,
                  shuffle: int, max_concurrent: int | None = None) -> dict[str, Any]:
    return {"models": list(models), "epochs": epochs, "batch_size": batch, "early_stopping_patience": epochs,
            "resources": {"cpus": cpus}, "shuffle_buffer": shuffle, "max_concurrent": max_concurrent,
            "model_overrides": {m: overrides[m] for m in models if m in overrides}, "seed": 0}


# ---------------------------------------------------------------------------- 1. throughput


def _plain_fit(spec_path: Path) -> dict[str, Any]:
    """The baseline, in its own process: model.fit on the same windows, same threads."""
    spec = json.loads(spec_path.read_text())
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(spec["threads"])
    tf.config.threading.set_inter_op_parallelism_threads(spec["threads"])
    import keras

    from fabray.data.tf_windows import window_dataset
    from fabray.models import build_model, model_loss

    arrays = np.load(spec["arrays"])
    features, target, ends = arrays["features"], arrays["target"], arrays["ends"]
    keras.utils.set_random_seed(0)
    model = build_model(spec["model"], spec["lookback"], features.shape[1], spec["overrides"])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.get(model_loss(spec["model"], "event", spec["overrides"])))
    dataset = window_dataset(features, target, ends, spec["lookback"], spec["batch_size"], shuffle=True)

    class Timer(keras.callbacks.Callback):
        seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            Timer.seconds.append(time.perf_counter() - self._t)

    model.fit(dataset, epochs=spec["epochs"], verbose=0, callbacks=[Timer()])
    return {"fit_seconds": Timer.seconds, "peak_rss_mb": _peak_rss_mb()}


def throughput(data: Path, work: Path, *, model: str, overrides: dict, windows: int, epochs: int,
               batch: int, cpus: float) -> dict[str, Any]:
    from fabray.train.driver import train_models

    job = _job(data, work / "tp-ray", _train_config([model], overrides, epochs, batch, cpus, 10_000),
               windows, 512, seed=1)
    series = job.train_series()
    n = len(series.train_ends)
    started = time.perf_counter()
    summary = train_models(job)
    wall_ray = time.perf_counter() - started
    ray_fit = [h["fit_seconds"] for h in _history(summary, model)]

    arrays = work / "tp-arrays.npz"
    np.savez(arrays, features=series.features, target=series.target, ends=series.train_ends)
    spec = work / "tp-plain.json"
    spec.write_text(json.dumps({"arrays": str(arrays), "model": model, "overrides": overrides.get(model, {}),
                                "lookback": job.config.task.lookback, "batch_size": batch,
                                "epochs": epochs, "threads": max(1, math.ceil(cpus))}))
    started = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--_plain", str(spec)], capture_output=True, text=True)
    wall_plain = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"plain fit failed:\n{out.stderr[-3000:]}")
    plain = json.loads(out.stdout.strip().splitlines()[-1])

    def wps(seconds: list[float]) -> float:
        timed = seconds[1:] or seconds  # the first epoch traces the graph
        return n / float(np.median(timed))

    ray_wps, plain_wps = wps(ray_fit), wps(plain["fit_seconds"])
    return {
        "model": model, "overrides": overrides.get(model, {}), "params": summary.manifest["models"][model]["params"],
        "windows_per_epoch": n, "epochs": epochs, "batch_size": batch, "tf_threads": max(1, math.ceil(cpus)),
        "ray_train": {"windows_per_s": round(ray_wps, 1), "fit_seconds": _r(ray_fit), "wall_s": round(wall_ray, 1),
                      "worker_peak_rss_mb": max(h["peak_rss_mb"] for h in _history(summary, model))},
        "plain_fit": {"windows_per_s": round(plain_wps, 1), "fit_seconds": _r(plain["fit_seconds"]),
                      "wall_s": round(wall_plain, 1), "peak_rss_mb": plain["peak_rss_mb"]},
        "ratio": round(ray_wps / plain_wps, 3),
        "goal": f">= {RATIO_GOAL}",
        "meets_goal": ray_wps / plain_wps >= RATIO_GOAL,
        "note": "training steps only, epochs after the first; wall_s includes start-up (Ray: "
                "trainer and worker start, Ray Data; plain: process and TensorFlow import)",
    }


# ---------------------------------------------------------------------------- 2. concurrency


def concurrency(data: Path, work: Path, *, models: Sequence[str], num_cpus: float, reserve: float,
                windows: int, batch: int) -> dict[str, Any]:
    from fabray.train.driver import train_models

    models = list(models)
    cpus = math.floor((num_cpus - reserve) / len(models) * 1e4) / 1e4  # all fit at once
    out: dict[str, Any] = {"models": models, "overrides": "tiny sizes (see TINY)", "windows": windows,
                           "epochs": 1, "cpus_per_model": cpus}
    for mode, max_concurrent in (("sequential", 1), ("concurrent", None)):
        job = _job(data, work / f"cc-{mode}", _train_config(models, TINY, 1, batch, cpus, 2000, max_concurrent),
                   windows, 256, seed=2)
        started = time.perf_counter()
        summary = train_models(job)
        wall = time.perf_counter() - started
        if not summary.ok:
            raise RuntimeError(f"{mode}: {summary.failed} failed")
        out[mode] = {"wall_s": round(wall, 1), "concurrent_trainers": summary.manifest["cluster"]["concurrent_trainers"],
                     "train_seconds": {m: e.get("train_seconds") for m, e in summary.manifest["models"].items()}}
    out["ratio"] = round(out["sequential"]["wall_s"] / out["concurrent"]["wall_s"], 3)
    out["note"] = ("ratio = sequential / concurrent wall time (> 1: concurrency pays); on a machine "
                   "with C cores the compute part cannot gain more than about C-fold, the per-trainer "
                   "start-up (actors, TensorFlow import, Ray Data) overlaps")
    return out


# ---------------------------------------------------------------------------- 3. poc epoch


def poc_epoch(data: Path, work: Path, *, models: Sequence[str], steps: int, batch: int, cpus: float,
              overrides: dict, label: str) -> dict[str, Any]:
    from fabray.train.driver import train_models

    models = list(models)
    job = _job(data, work / "poc", _train_config(models, overrides, 2, batch, cpus, 2000, max_concurrent=1),
               steps * batch, 1024, seed=3)
    n_rows, n_train = job.prepared.n_rows, len(job.prepared.splits["train"])
    steps_per_epoch = math.ceil(n_train / batch)
    started = time.perf_counter()
    summary = train_models(job)
    wall = time.perf_counter() - started
    rows = {}
    for name in models:
        history = _history(summary, name)
        timed = history[-1]["fit_seconds"]  # the second epoch: no tracing
        s_per_step = timed / steps
        rows[name] = {
            "params": summary.manifest["models"][name]["params"],
            "s_per_step": round(s_per_step, 4),
            "projected_epoch_min": round(s_per_step * steps_per_epoch / 60, 1),
            "worker_peak_rss_mb": max(h["peak_rss_mb"] for h in history),
        }
    worst_rss = max(r["worker_peak_rss_mb"] for r in rows.values())
    return {
        "data": label, "rows": n_rows, "train_windows": n_train, "batch_size": batch,
        "steps_per_epoch": steps_per_epoch, "timed_steps": steps, "cpus_per_model": cpus,
        "models": rows,
        "projected_epoch_all_models_one_after_another_min": round(sum(r["projected_epoch_min"] for r in rows.values()), 1),
        "worker_peak_rss_mb_max": worst_rss,
        "driver_peak_rss_mb": _peak_rss_mb(),
        "rss_goal_mb": RSS_GOAL_MB,
        "meets_rss_goal": worst_rss <= RSS_GOAL_MB and _peak_rss_mb() <= RSS_GOAL_MB,
        "wall_s": round(wall, 1),
        "note": f"EXTRAPOLATED: s/step timed over {steps} steps (the second epoch) on this machine's "
                f"CPU with {max(1, math.ceil(cpus))} TensorFlow thread(s) per model, times "
                f"{steps_per_epoch} steps per epoch; not a measured full epoch and not an H100 figure",
    }


# ---------------------------------------------------------------------------- main


def _r(values: Sequence[float]) -> list[float]:
    return [round(float(v), 3) for v in values]


def _table(result: dict[str, Any]) -> str:
    lines = []
    tp = result.get("throughput")
    if tp:
        lines.append(f"throughput  {tp['model']} ({tp['params']:,} params, {tp['windows_per_epoch']:,} windows/epoch): "
                     f"Ray Train {tp['ray_train']['windows_per_s']:,.0f} w/s vs plain fit "
                     f"{tp['plain_fit']['windows_per_s']:,.0f} w/s -> ratio {tp['ratio']:.3f} (goal {tp['goal']})")
    cc = result.get("concurrency")
    if cc:
        lines.append(f"concurrency {len(cc['models'])} models: sequential {cc['sequential']['wall_s']} s, concurrent "
                     f"{cc['concurrent']['wall_s']} s ({cc['concurrent']['concurrent_trainers']} at once) "
                     f"-> ratio {cc['ratio']:.3f}")
    poc = result.get("poc")
    if poc:
        lines.append(f"poc epoch   ({poc['data']}, {poc['train_windows']:,} train windows, batch {poc['batch_size']}; "
                     "EXTRAPOLATED from timed steps):")
        for name, row in poc["models"].items():
            lines.append(f"  {name:<9} {row['params']:>9,} params  {row['s_per_step']:.3f} s/step  "
                         f"~{row['projected_epoch_min']:>7.1f} min/epoch  peak RSS {row['worker_peak_rss_mb']:,.0f} MB")
        lines.append(f"  all {len(poc['models'])} one after another ~{poc['projected_epoch_all_models_one_after_another_min']} min; "
                     f"max worker RSS {poc['worker_peak_rss_mb_max']:,.0f} MB, driver {poc['driver_peak_rss_mb']:,.0f} MB "
                     f"(goal <= {RSS_GOAL_MB} MB each)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny data, tiny models")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the JSON here")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"sections to run, of {','.join(SECTIONS)}")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the embedded Ray")
    parser.add_argument("--model", default="lstm", help="the throughput model")
    parser.add_argument("--windows", type=int, default=None, help="throughput windows per epoch")
    parser.add_argument("--epochs", type=int, default=None, help="throughput epochs (the first is not timed)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--poc-steps", type=int, default=None, help="timed steps per model on poc")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--_plain", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._plain:
        print(json.dumps(_plain_fit(Path(args._plain))))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; known: {SECTIONS}")
    quick = args.quick
    windows = args.windows or (2_000 if quick else 12_000)
    epochs = args.epochs or (2 if quick else 3)
    poc_steps = args.poc_steps or (3 if quick else 8)

    import ray

    from fabray.models import MODELS

    models = ["lstm", "rule"] if quick else list(MODELS)  # quick: two models, to stay short
    result: dict[str, Any] = {
        "quick": quick, "sections": sections, "num_cpus": args.num_cpus, "cpu_count": os.cpu_count(),
        "load_avg_start": [round(v, 2) for v in os.getloadavg()],
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fabray-bench-train-") as tmp:
        work = Path(tmp)
        small = _data("tiny", args.seed, work)
        big = small if quick else (_data("poc", args.seed, work) if "poc" in sections or "throughput" in sections else small)
        ray.init(address="local", num_cpus=args.num_cpus, object_store_memory=400 * 1024**2,
                 include_dashboard=False, log_to_driver=False)
        try:
            reserve = 1.0
            if "throughput" in sections:
                result["throughput"] = throughput(
                    big, work, model=args.model, overrides=TINY if quick else SMALL, windows=windows,
                    epochs=epochs, batch=args.batch_size, cpus=args.num_cpus - reserve)
            if "concurrency" in sections:
                result["concurrency"] = concurrency(small, work, models=models, num_cpus=args.num_cpus, reserve=reserve,
                                                    windows=1_000 if quick else 3_000, batch=args.batch_size)
            if "poc" in sections:
                result["poc"] = poc_epoch(
                    big, work, models=models, steps=poc_steps, batch=args.batch_size, cpus=args.num_cpus - reserve,
                    overrides=TINY if quick else {}, label="tiny preset, tiny models (quick)" if quick
                    else f"poc preset ({POC_ROWS:,} rows), default model sizes")
        finally:
            ray.shutdown()
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    print(_table(result), file=sys.stderr)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
