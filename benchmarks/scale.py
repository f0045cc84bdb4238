"""How cost grows with the data: 100k → 1.5M simulated rows, and the seed's phases projected from it.

    python benchmarks/scale.py [--rows 100000,390000,781163,1000000,1500000] [--json OUT] [--quick]

For each row count, in its own subprocess (so one size's peak RSS does not hide another's):

1. **data preparation**: the simulator (`fabray.data.simulate`, 16 zones, the `poc` preset's
   shape) makes the rows (timed apart: a real site reads them instead), then
   `fabray.data.windows.prepare` (validation-free: the frame is the simulator's) builds the raw
   series, targets and splits, with the site's context columns as `fabray train` does; timed, and
   the process's peak RSS (VmHWM) is read right after it, before Ray starts. Preparation's own
   peak is measured apart from the simulator's: after simulating, the freed heap goes back to the
   OS (`malloc_trim`), the RSS then (baseline + the frame) is `rss_before_prepare_mb`, the peak
   RSS is reset (`/proc/self/clear_refs` 5) and `prepare_peak_rss_mb` is the peak during
   `prepare` alone; its rise over the start, ÷ the series it makes, is what preparing costs
   beyond the input it is given;
2. **windows/s through Ray Data into one training worker**: the machinery `fabray train` uses —
   the series `ray.put` once (`ray_windows.put_series`), the train split's END rows as a Ray
   Data dataset (`window_index_dataset`), a single-worker Ray Train `TensorflowTrainer` whose
   loop reads its shard with `shard_to_tf_dataset` (local shuffle buffer, gather per batch) and
   iterates the tf.data batches without a model: one full pass over every training window, then
   one pass of a sampled epoch (`train.epoch_fraction`, `fabray.train.sampling`). The worker
   reports its own peak RSS.

Then, once (`--no-capacity` skips it): the seed's five models measured here by
`fabray.capacity.measure_zoo` (default sizes, batch 32/64/128) and this machine's FP32 matrix
multiply rate, so that the seed's Phase 1–3 table is projected by `fabray.capacity.project_phases`
with (a) the measured train-windows-per-row ratio instead of the assumed 0.7, (b) the data
preparation time measured at each phase's row count added to a full training and a retrain, and
(c) in place of `fabray capacity`'s ASSUMED 30x H100 speed-up, a figure whose origin is stated:
the H100's epoch = max(compute at the H100's peak FP32 rate, the input pipeline measured here).
The H100 side is still a projection, not a measurement.

Printed: a table per size and the growth (time per row, RSS beyond the series, and whether
preparation's memory beyond the series is bounded), and JSON.
Not part of `make test`. Run it alone: `flock /tmp/fabray-heavy.lock .venv/bin/python benchmarks/scale.py`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

logger = logging.getLogger("benchmarks.scale")

ROWS = (100_000, 390_000, 781_163, 1_000_000, 1_500_000)
ZONES = 16  # the poc / 1m / 1.5m presets' zone count
#: NVIDIA H100 SXM5 80GB, dense FP32 (CUDA cores, not Tensor Cores): 67 TFLOPS, from NVIDIA's
#: "H100 Tensor Core GPU" datasheet (the PCIe card: 51). TF32/FP16 Tensor Cores go higher, but
#: recurrent layers at these sizes are not Tensor-Core bound, so FP32 is the ratio used.
H100_FP32_TFLOPS = 67.0
H100_SOURCE = "NVIDIA H100 Tensor Core GPU datasheet: H100 SXM5 FP32 67 TFLOPS (dense, non-Tensor-Core)"
SAMPLED_FRACTION = 0.1


# ---------------------------------------------------------------------------- memory


def _vm(field: str) -> float:
    """A /proc/self/status field in MiB (VmHWM: peak RSS; VmRSS: now)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _release_free_heap() -> bool:
    """Give memory freed by Python/numpy back to the OS (glibc `malloc_trim`), so that the RSS
    that follows counts what is live, not an earlier step's freed heap. False where unavailable."""
    import ctypes
    import gc

    gc.collect()
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def _reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux >= 4.0); False where refused."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------- one size (child)


def _pipeline_loop(config: dict[str, Any]) -> None:
    """Ray Train worker: one full pass and one sampled pass of the shard, no model."""
    import ray
    import ray.train

    from fabray.train.ray_windows import shard_to_tf_dataset
    from fabray.train.sampling import EpochSampler, SampledShard, epoch_sample_size

    rss_start = _vm("VmRSS")
    features, target, ends = ray.get(list(config["arrays"]))
    shard = ray.train.get_dataset_shard("train")
    out: dict[str, Any] = {"worker_rss_start_mb": round(rss_start, 1)}

    def one_pass(source: Any, label: str) -> None:
        ds = shard_to_tf_dataset(source, features, target, config["lookback"], config["batch_size"],
                                 shuffle_buffer=config["shuffle_buffer"], seed=0)
        started, n, check = time.perf_counter(), 0, 0.0
        for x, y in ds:  # x [B, L, F], y [B, 1]
            n += int(x.shape[0])
            check += float(y.numpy().sum())
        seconds = time.perf_counter() - started
        out[label] = {"windows": n, "seconds": round(seconds, 2), "windows_per_s": round(n / seconds, 1),
                      "events": check}

    one_pass(shard, "full_pass")
    size = epoch_sample_size(len(ends), epoch_fraction=SAMPLED_FRACTION)
    sampler = EpochSampler.for_target(ends, target, 0.5, size, seed=0)
    one_pass(SampledShard(shard, sampler, first_epoch=0), "sampled_pass")
    out["sampled_pass"]["fraction"] = SAMPLED_FRACTION
    out["worker_peak_rss_mb"] = round(_vm("VmHWM"), 1)
    Path(config["out"]).write_text(json.dumps(out))


def run_size(rows: int, num_cpus: int, batch_size: int, shuffle_buffer: int, seed: int, skip_ray: bool) -> dict[str, Any]:
    import pandas  # noqa: F401 - in the baseline, as for any reader of the data

    from fabray.config import FabrayConfig, SimulationConfig
    from fabray.data.context import ContextSpec
    from fabray.data.simulate import SimulationSize, simulate
    from fabray.data.windows import prepare

    baseline = _vm("VmRSS")
    size = SimulationSize(zones=ZONES, minutes=math.ceil(rows / ZONES), rows=rows)
    started = time.perf_counter()
    df = simulate(size, SimulationConfig(), seed=seed)
    simulate_s = time.perf_counter() - started
    frame_mb = df.memory_usage(deep=True).sum() / 2**20
    after_simulate = _vm("VmHWM")
    _release_free_heap()
    rss_before_prepare = _vm("VmRSS")  # baseline + the frame (+ what the heap could not return)
    reset = _reset_peak_rss()

    config = FabrayConfig()
    started = time.perf_counter()
    context = ContextSpec.from_site(config.site, config.task.horizon, list(df.columns))
    prepared = prepare(df, config.task, config.split, context=context)
    prepare_s = time.perf_counter() - started
    peak_prepare_only = _vm("VmHWM")  # since the reset: preparation's own peak
    peak_prep = max(after_simulate, peak_prepare_only) if reset else peak_prepare_only  # the process's
    series_mb = (prepared.features.nbytes + prepared.target.nbytes + prepared.delay_s.nbytes) / 2**20
    train_ends = prepared.splits["train"]
    result: dict[str, Any] = {
        "rows": rows, "zones": ZONES, "minutes_per_zone": size.minutes,
        "features": int(prepared.features.shape[1]), "train_windows": int(len(train_ends)),
        "val_windows": int(len(prepared.splits["val"])),
        "event_rate_train": round(float(np.mean(prepared.fit_target[train_ends] > 0.5)), 4),
        "simulate_s": round(simulate_s, 2), "prepare_s": round(prepare_s, 2),
        "baseline_rss_mb": round(baseline, 1), "frame_mb": round(frame_mb, 1),
        "series_mb": round(series_mb, 1),
        "peak_rss_after_simulate_mb": round(after_simulate, 1),
        "peak_rss_after_prepare_mb": round(peak_prep, 1),
        "rss_before_prepare_mb": round(rss_before_prepare, 1),
        # None: the peak could not be reset, so the simulator's peak may hide preparation's
        "prepare_peak_rss_mb": round(peak_prepare_only, 1) if reset else None,
    }
    del df
    if skip_ray:
        return result

    import ray

    from fabray.train.ray_windows import put_series, window_index_dataset

    store = int(max(300, 4 * prepared.features.nbytes / 2**20)) * 2**20
    ray.init(address="local", num_cpus=num_cpus, object_store_memory=store, include_dashboard=False,
             log_to_driver=False)
    try:
        from ray.train import RunConfig, ScalingConfig
        from ray.train.tensorflow import TensorflowTrainer

        ray.data.DataContext.get_current().enable_progress_bars = False
        with tempfile.TemporaryDirectory(prefix="fabray-scale-") as tmp:
            out = Path(tmp) / "worker.json"
            arrays = [*put_series(prepared.features, prepared.fit_target), ray.put(train_ends)]
            trainer = TensorflowTrainer(
                _pipeline_loop,
                train_loop_config={"arrays": arrays, "lookback": config.task.lookback, "batch_size": batch_size,
                                   "shuffle_buffer": shuffle_buffer, "out": str(out)},
                scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
                run_config=RunConfig(name="scale", storage_path=str(Path(tmp) / "ray")),
                datasets={"train": window_index_dataset(train_ends, seed=seed)},
            )
            started = time.perf_counter()
            trainer.fit()
            result["ray_wall_s"] = round(time.perf_counter() - started, 1)
            result["pipeline"] = json.loads(out.read_text())
    finally:
        ray.shutdown()
    result["driver_peak_rss_mb"] = round(max(_vm("VmHWM"), peak_prep), 1)  # the process's, incl. simulate
    return result


# ---------------------------------------------------------------------------- capacity (child)


def run_capacity(steps: int) -> dict[str, Any]:
    """The seed's five models measured here, and this machine's FP32 matmul rate."""
    from fabray import capacity as cap

    measurements = cap.measure_zoo(cap.SEED_MODELS, cap.DEFAULT_BATCH_SIZES, steps=steps)
    n = 2048
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    a @ a  # warm-up
    seconds = []
    for _ in range(5):
        started = time.perf_counter()
        a @ a
        seconds.append(time.perf_counter() - started)
    flops = 2 * n**3 / float(np.median(seconds))
    return {"measurements": [m.to_dict() for m in measurements], "matmul_fp32_gflops": round(flops / 1e9, 2),
            "matmul": f"numpy float32 {n}x{n} @ {n}x{n}, median of 5, all cores ({os.cpu_count()})",
            "step_overhead_s": step_overhead(cap.DEFAULT_BATCH_SIZES),
            "host": cap.host_info()}


def step_overhead(batch_sizes: Sequence[int], lookback: int = 100, n_features: int = 33, steps: int = 300) -> dict[str, float]:
    """Seconds per training step of Keras' fit loop with a trivial model (mean over time + one
    Dense) on [B, lookback, F] batches from tf.data: the host-side cost of a step (dispatch, the
    iterator, the batch's copy) that a faster accelerator does not remove. Timed: the second
    epoch of `steps` steps."""
    import keras
    import tensorflow as tf

    out = {}
    for batch in batch_sizes:
        x = np.random.default_rng(0).standard_normal((batch * 8, lookback, n_features), dtype=np.float32)
        y = np.zeros((batch * 8, 1), np.float32)
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).repeat().take(steps).prefetch(2)
        model = keras.Sequential([keras.Input((lookback, n_features)), keras.layers.GlobalAveragePooling1D(),
                                  keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
        times: list[float] = []

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                times.append(time.perf_counter() - self.t)

        model.fit(ds, epochs=2, verbose=0, callbacks=[Timer()])
        out[str(batch)] = round(times[-1] / steps, 6)
    return out


# ---------------------------------------------------------------------------- growth and projection (pure)


def growth(sizes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Time per row and memory beyond the series, per size, against the smallest; and the fits."""
    rows = np.array([s["rows"] for s in sizes], dtype=np.float64)
    prep = np.array([s["prepare_s"] for s in sizes])
    out: dict[str, Any] = {"per_size": []}
    for s in sizes:
        entry = {
            "rows": s["rows"],
            "prepare_us_per_row": round(1e6 * s["prepare_s"] / s["rows"], 2),
            "simulate_us_per_row": round(1e6 * s["simulate_s"] / s["rows"], 2),
            # what preparing holds beyond the baseline, the input frame and the series it makes
            "prepare_rss_beyond_series_mb": round(s["peak_rss_after_prepare_mb"] - s["baseline_rss_mb"]
                                                  - s["frame_mb"] - s["series_mb"], 1),
            "prepare_peak_over_series": round((s["peak_rss_after_prepare_mb"] - s["baseline_rss_mb"])
                                              / max(s["series_mb"], 1e-9), 2),
        }
        if s.get("prepare_peak_rss_mb") is not None:
            # preparation alone: its peak over the RSS it started from (which holds the frame)
            rise = s["prepare_peak_rss_mb"] - s["rss_before_prepare_mb"]
            entry["prepare_rise_mb"] = round(rise, 1)
            entry["prepare_rise_over_series"] = round(rise / max(s["series_mb"], 1e-9), 2)
            entry["prepare_rise_beyond_series_mb"] = round(rise - s["series_mb"], 1)
        p = s.get("pipeline")
        if p:
            full = p["full_pass"]
            entry.update({
                "pipeline_windows_per_s": full["windows_per_s"],
                "pipeline_us_per_window": round(1e6 / full["windows_per_s"], 2),
                "sampled_pass_windows_per_s": p["sampled_pass"]["windows_per_s"],
                "sampled_pass_s_over_full": round(p["sampled_pass"]["seconds"] / full["seconds"], 3),
                "worker_peak_rss_mb": p["worker_peak_rss_mb"],
                "worker_rss_beyond_series_mb": round(p["worker_peak_rss_mb"] - p["worker_rss_start_mb"]
                                                     - s["series_mb"], 1),
                "driver_peak_rss_mb": s.get("driver_peak_rss_mb"),
            })
        out["per_size"].append(entry)
    slope, intercept = np.polyfit(rows, prep, 1)
    fitted = slope * rows + intercept
    out["prepare_linear_fit"] = {
        "s_per_million_rows": round(float(slope) * 1e6, 3), "intercept_s": round(float(intercept), 3),
        "max_relative_residual": round(float(np.max(np.abs(prep - fitted) / np.maximum(prep, 1e-9))), 3),
        "r2": round(float(1 - np.sum((prep - fitted) ** 2) / max(np.sum((prep - prep.mean()) ** 2), 1e-12)), 4),
    }
    per_row = [e["prepare_us_per_row"] for e in out["per_size"]]
    out["prepare_us_per_row_largest_over_smallest"] = round(per_row[-1] / per_row[0], 3)
    out["prepare_memory"] = prepare_memory(sizes, out["per_size"])
    if all("pipeline_windows_per_s" in e for e in out["per_size"]):
        wps = [e["pipeline_windows_per_s"] for e in out["per_size"]]
        out["pipeline_windows_per_s_largest_over_smallest"] = round(wps[-1] / wps[0], 3)
        beyond = [e["worker_rss_beyond_series_mb"] for e in out["per_size"]]
        out["worker_rss_beyond_series_mb_range"] = [min(beyond), max(beyond)]
    return out


#: beyond the series, preparation's peak is called flat when it grows, over the sizes run, by less
#: than this share of the largest size's series (a constant plus per-row vectors of a few bytes)
FLAT_SHARE_OF_SERIES = 0.1


def prepare_memory(sizes: Sequence[dict[str, Any]], per_size: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Is preparation's memory beyond the series bounded? Its peak rise over the RSS it started
    from (which holds the frame) ÷ the series, per size: bounded by a multiple of the series when
    that ratio does not grow with size; and the rise beyond the series fitted against rows: flat
    when it grows by less than `FLAT_SHARE_OF_SERIES` of the largest series over the sizes run."""
    ratios = [e.get("prepare_rise_over_series") for e in per_size]
    if any(r is None for r in ratios):
        return {"verdict": "not measured (no prepare_peak_rss_mb: an older report, or the peak RSS could not be reset)"}
    rows = np.array([s["rows"] for s in sizes], dtype=np.float64)
    beyond = np.array([e["prepare_rise_beyond_series_mb"] for e in per_size])
    slope = float(np.polyfit(rows, beyond, 1)[0]) if len(rows) >= 2 else 0.0  # MB per row
    series_per_million = float(np.median([s["series_mb"] / s["rows"] * 1e6 for s in sizes]))
    grows_mb = slope * float(rows.max() - rows.min())
    proportional = max(ratios) <= 1.1 * ratios[int(np.argmin(rows))]
    flat = grows_mb < FLAT_SHARE_OF_SERIES * sizes[int(np.argmax(rows))]["series_mb"]
    return {
        "rise_over_series": ratios,
        "rise_over_series_range": [min(ratios), max(ratios)],
        "rise_beyond_series_mb": [float(b) for b in beyond],
        "rise_beyond_series_mb_per_million_rows": round(slope * 1e6, 1),
        "series_mb_per_million_rows": round(series_per_million, 1),
        "bounded_by_a_multiple_of_the_series": bool(proportional),
        "flat_beyond_series": bool(flat),
        "verdict": (
            f"preparing peaks at {min(ratios):.2f}-{max(ratios):.2f}x the series above the RSS it starts "
            f"from (which holds the frame): "
            + ("a multiple of the series that does not grow with size" if proportional
               else "a multiple of the series that GROWS with size")
            + f"; beyond the series it adds {slope * 1e6:.0f} MB per million rows "
            f"({slope * 1e6 / max(series_per_million, 1e-9):.2f}x the series' own growth), so it is "
            + ("flat" if flat else "NOT flat in MB")),
    }


def project(sizes: Sequence[dict[str, Any]], capacity: dict[str, Any]) -> dict[str, Any]:
    """The seed's phases from the measurements (see the module docstring)."""
    from fabray import capacity as cap

    by_rows = {s["rows"]: s for s in sizes}
    measurements = [cap.Measurement(**m) for m in capacity["measurements"]]
    ratio = H100_FP32_TFLOPS * 1e3 / capacity["matmul_fp32_gflops"]
    train_fraction = float(np.median([s["train_windows"] / s["rows"] for s in sizes]))
    base = cap.Assumptions(gpu_speedup=1.0, train_fraction=train_fraction)
    phases = []
    for phase, here in zip(cap.SEED_PHASES, cap.project_phases(measurements, base)):
        measured = by_rows.get(phase.data_rows)
        if measured is None or "pipeline" not in measured:
            continue
        epoch_windows = here["epoch_windows"]
        pipeline_s = epoch_windows / measured["pipeline"]["full_pass"]["windows_per_s"]
        compute_s = here["epoch_s_here"] / ratio
        # Every model's worker runs its own fit loop on its own host core: the slowest floor counts.
        overhead = capacity.get("step_overhead_s", {}).get(str(phase.batch_size))
        step_s = math.ceil(epoch_windows / phase.batch_size) * overhead if overhead else 0.0
        epoch_h100 = max(compute_s, pipeline_s, step_s)
        speedup = here["epoch_s_here"] / epoch_h100
        h100 = cap.project_phase(phase, measurements, cap.Assumptions(gpu_speedup=speedup, train_fraction=train_fraction))
        at_30x = cap.project_phase(phase, measurements, cap.Assumptions(train_fraction=train_fraction))
        prep_h = measured["prepare_s"] / 3600
        phases.append({
            "phase": phase.phase, "stage": phase.stage, "rows": phase.data_rows,
            "model_params": phase.model_params, "batch_size": phase.batch_size,
            "measured_prepare_s": measured["prepare_s"],
            "measured_pipeline_windows_per_s": measured["pipeline"]["full_pass"]["windows_per_s"],
            "measured_peak_rss_mb": {"prepare": measured["peak_rss_after_prepare_mb"],
                                     "worker": measured["pipeline"]["worker_peak_rss_mb"],
                                     "driver": measured.get("driver_peak_rss_mb")},
            "epoch_windows": round(epoch_windows),
            "epoch_h_here_cpu": here["epoch_s_here"] / 3600,
            "epoch_s_h100_compute_bound": compute_s,
            "epoch_s_h100_pipeline_bound": pipeline_s,
            "epoch_s_h100_step_overhead_bound": step_s if overhead else None,  # None: not measured
            "bound": max((("compute", compute_s), ("pipeline", pipeline_s), ("step_overhead", step_s)),
                         key=lambda kv: kv[1])[0],
            "effective_h100_speedup": speedup,
            "full_train_h_h100_incl_prepare": h100["full_train_h_h100"] + prep_h,
            "daily_retrain_h_h100_incl_prepare": h100["daily_retrain_h_h100"] + prep_h,
            "retrain_within_2h": h100["daily_retrain_h_h100"] + prep_h <= base.retrain_budget_h,
            "full_train_h_here_cpu": here["full_train_h_h100"] + prep_h,  # speed-up 1: this machine
            "daily_retrain_h_here_cpu": here["daily_retrain_h_h100"] + prep_h,
            "at_assumed_30x": {"full_train_h_h100_incl_prepare": at_30x["full_train_h_h100"] + prep_h,
                               "daily_retrain_h_h100_incl_prepare": at_30x["daily_retrain_h_h100"] + prep_h,
                               "h100_needed": at_30x["h100_needed"]},
            "total_memory_gb": h100["total_memory_gb"], "seed_memory_gb": phase.seed_memory_gb,
            "h100_needed": h100["h100_needed"], "seed_h100": phase.seed_h100,
        })
    return {
        "replaces": "fabray capacity's ASSUMED gpu_speedup=30",
        "speedup_origin": (
            f"per phase: effective = epoch here ÷ max(epoch here ÷ peak ratio, epoch windows ÷ pipeline "
            f"windows/s measured here at that row count, steps per epoch × the host-side seconds per Keras "
            f"training step measured here with a trivial model at the phase's batch). Peak ratio = {H100_FP32_TFLOPS} TFLOPS ({H100_SOURCE}) "
            f"÷ {capacity['matmul_fp32_gflops']} GFLOPS measured here ({capacity['matmul']}) = {ratio:.0f}x: an "
            "upper bound (small recurrent layers do not reach peak on a GPU). The pipeline bound assumes each "
            "model's worker keeps one host core for its input pipeline and fit loop, as here. All three are bounds, so the H100 "
            "times are LOWER BOUNDS (optimistic); `at_assumed_30x` gives the old assumption's figures beside them."),
        "peak_fp32_ratio": round(ratio, 1),
        "train_windows_per_row": round(train_fraction, 4),
        "note": "epoch here = the seed's five models one after another on this machine's CPU (measure_zoo, "
                "all cores, default sizes grown to the phase's parameters); H100 figures are PROJECTED",
        "phases": phases,
    }


# ---------------------------------------------------------------------------- main


def _child(args: list[str], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def print_report(report: dict[str, Any]) -> None:
    nan = float("nan")
    lines = [f"{'rows':>10} {'prep s':>7} {'us/row':>7} {'pipe w/s':>9} {'us/win':>7} {'sampled/full':>12} "
             f"{'prep peak MB':>12} {'(pk-base)/ser':>13} {'prep rise MB':>12} {'rise/ser':>8} "
             f"{'worker MB':>9} {'w beyond':>8}"]
    for s, g in zip(report["sizes"], report["growth"]["per_size"]):
        lines.append(f"{s['rows']:>10,} {s['prepare_s']:>7.1f} {g['prepare_us_per_row']:>7.2f} "
                     f"{g.get('pipeline_windows_per_s', nan):>9,.0f} {g.get('pipeline_us_per_window', nan):>7.1f} "
                     f"{g.get('sampled_pass_s_over_full', nan):>12.3f} {s['peak_rss_after_prepare_mb']:>12,.0f} "
                     f"{g['prepare_peak_over_series']:>13.2f} {g.get('prepare_rise_mb', nan):>12,.0f} "
                     f"{g.get('prepare_rise_over_series', nan):>8.2f} {g.get('worker_peak_rss_mb', nan):>9,.0f} "
                     f"{g.get('worker_rss_beyond_series_mb', nan):>8,.0f}")
    lines.append("prep peak MB: the process's peak RSS after preparing (incl. the simulator's); (pk-base)/ser: its "
                 "rise over the baseline ÷ the series; prep rise: preparation's own peak over its start (frame held)")
    fit = report["growth"]["prepare_linear_fit"]
    lines.append(f"prepare: {fit['s_per_million_rows']} s per million rows + {fit['intercept_s']} s (r2 {fit['r2']}); "
                 f"us/row largest/smallest {report['growth']['prepare_us_per_row_largest_over_smallest']}")
    if "prepare_memory" in report["growth"]:
        lines.append(f"prepare memory: {report['growth']['prepare_memory']['verdict']}")
    if "pipeline_windows_per_s_largest_over_smallest" in report["growth"]:
        lines.append(f"pipeline windows/s largest/smallest {report['growth']['pipeline_windows_per_s_largest_over_smallest']}; "
                     f"worker RSS beyond the series {report['growth']['worker_rss_beyond_series_mb_range']} MB")
    proj = report.get("projection")
    if proj:
        lines.append(f"\nPROJECTED phases ({proj['replaces']} replaced; {proj['speedup_origin']})")
        lines.append(f"{'phase':>5} {'rows':>10} {'epoch CPU h':>11} {'H100 epoch s':>12} {'bound':>13} {'speedup':>8} "
                     f"{'full train H100 h':>17} {'retrain H100 min':>16} {'(at 30x)':>9} {'H100s':>5} {'seed':>4}")
        for p in proj["phases"]:
            epoch = max(p['epoch_s_h100_compute_bound'], p['epoch_s_h100_pipeline_bound'],
                        p.get('epoch_s_h100_step_overhead_bound') or 0.0)
            lines.append(f"{p['phase']:>5} {p['rows']:>10,} {p['epoch_h_here_cpu']:>11.2f} {epoch:>12.1f} "
                         f"{p['bound']:>13} {p['effective_h100_speedup']:>8.1f} {p['full_train_h_h100_incl_prepare']:>17.2f} "
                         f"{60 * p['daily_retrain_h_h100_incl_prepare']:>16.1f} "
                         f"{60 * p['at_assumed_30x']['daily_retrain_h_h100_incl_prepare']:>9.1f} {p['h100_needed']:>5} {p['seed_h100']:>4}")
    for note in report.get("not_run", []):
        lines.append(f"NOT RUN: {note}")
    print("\n".join(lines), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default=",".join(str(r) for r in ROWS), help="comma-separated row counts")
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs of each size's embedded Ray")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--shuffle-buffer", type=int, default=10_000)
    p.add_argument("--capacity-steps", type=int, default=3, help="timed steps per model and batch size")
    p.add_argument("--no-capacity", action="store_true", help="skip the model measurement and projection")
    p.add_argument("--no-ray", action="store_true", help="data preparation only")
    p.add_argument("--timeout-min", type=float, default=20.0, help="per size; a size that exceeds it is recorded as not run")
    p.add_argument("--quick", action="store_true", help="smoke run: 30k and 60k rows, no capacity")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    p.add_argument("--_size", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--from-json", type=Path, default=None,
                   help="recompute growth and projection from a saved report (no measuring)")
    p.add_argument("--remeasure-capacity", action="store_true",
                   help="with --from-json: measure the models (and step overhead) again, keep the sizes")
    p.add_argument("--_capacity", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.from_json:
        report = json.loads(args.from_json.read_text())
        if args.remeasure_capacity:
            report["capacity"] = _child(["--_capacity", "--capacity-steps", str(args.capacity_steps)], timeout=1800)
            report["capacity_load_average"] = [round(v, 2) for v in os.getloadavg()]
        report["growth"] = growth(report["sizes"])
        if "capacity" in report:
            report["projection"] = project(report["sizes"], report["capacity"])
        print_report(report)
        text = json.dumps(report, indent=2)
        (args.json or args.from_json).write_text(text + "\n")
        return 0
    if args._size:
        print(json.dumps(run_size(args._size, args.num_cpus, args.batch_size, args.shuffle_buffer, args.seed, args.no_ray)))
        return 0
    if args._capacity:
        print(json.dumps(run_capacity(args.capacity_steps)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    rows = [30_000, 60_000] if args.quick else [int(r) for r in args.rows.split(",") if r.strip()]
    report: dict[str, Any] = {
        "benchmark": "scale", "cpus": os.cpu_count(), "num_cpus_ray": args.num_cpus,
        "batch_size": args.batch_size, "shuffle_buffer": args.shuffle_buffer,
        "load_average_start": [round(v, 2) for v in os.getloadavg()], "sizes": [], "not_run": [],
    }
    started = time.perf_counter()
    for n in rows:
        t0 = time.perf_counter()
        try:
            flags = ["--_size", str(n), "--num-cpus", str(args.num_cpus), "--batch-size", str(args.batch_size),
                     "--shuffle-buffer", str(args.shuffle_buffer), "--seed", str(args.seed)]
            result = _child(flags + (["--no-ray"] if args.no_ray else []), timeout=60 * args.timeout_min)
        except (RuntimeError, subprocess.TimeoutExpired) as err:
            report["not_run"].append(f"{n:,} rows: {str(err)[-600:]}")
            logger.error("%s rows not run: %s", n, err)
            continue
        result["load_average_1m"] = round(os.getloadavg()[0], 2)
        result["child_wall_s"] = round(time.perf_counter() - t0, 1)
        report["sizes"].append(result)
        if args.json:  # a partial report survives a later failure
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2) + "\n")
        logger.info("%s rows: %s", f"{n:,}", {k: v for k, v in result.items() if k != "pipeline"} | {
            "pipeline": (result.get("pipeline") or {}).get("full_pass")})
    if len(report["sizes"]) >= 2:
        report["growth"] = growth(report["sizes"])
    if not (args.no_capacity or args.quick or args.no_ray) and report["sizes"]:
        try:
            report["capacity"] = _child(["--_capacity", "--capacity-steps", str(args.capacity_steps)], timeout=1800)
            report["projection"] = project(report["sizes"], report["capacity"])
        except (RuntimeError, subprocess.TimeoutExpired) as err:
            report["not_run"].append(f"capacity: {str(err)[-600:]}")
    report["wall_s"] = round(time.perf_counter() - started, 1)
    report["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    if "growth" in report:
        print_report(report)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
