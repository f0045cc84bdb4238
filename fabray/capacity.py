"""`fabray capacity`: measure the model zoo here, then project the seed's growth table (DESIGN §7).

The seed (a GPU request) states memory needs by hand — 24 / 32 / 48 GB for its three stages —
and its arithmetic does not add up. This module replaces the hand arithmetic with two steps that
are kept apart on purpose:

1. **Measured** (`measure_zoo`): for every model and batch size, on synthetic windows
   `[B, lookback, n_features]`: parameters, training and inference throughput (windows/s), and
   the peak memory of training — the GPU allocator's peak when TensorFlow sees a GPU, otherwise
   the process's peak RSS above its baseline (plus TensorFlow's CPU allocator statistics where
   it keeps them), labelled as CPU figures.
2. **Projected** (`project_phases`, pure arithmetic): the seed's stages (data 781,163 → 1M → 1.5M
   rows, model 1.67M → 2.5M → 4M parameters, batch 32 → 64 → 128) turned into time per epoch,
   time per full training and per daily retrain, memory per GPU, and the number of H100s needed
   for real-time + batch + retraining at once, under `Assumptions` that are printed with the
   result (an H100-to-this-machine speed ratio among them: an assumption, not a measurement,
   unless the measurement itself ran on the GPU).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fabray.errors import BadInputError

logger = logging.getLogger(__name__)

GB = 1e9
MB = 1e6
DEFAULT_BATCH_SIZES = (32, 64, 128)
#: The seed's five models (its 1.67M "ensemble total" is their sum); PatchTST comes at 1M rows.
SEED_MODELS = ("lstm", "gru", "cnn_lstm", "spike", "rule")


# ---------------------------------------------------------------------------- the seed's table


@dataclass(frozen=True)
class SeedPhase:
    """One column of the seed's growth table (sections 3 and 7 of the GPU request)."""

    phase: int
    stage: str
    data_rows: int
    model_params: int  # the seed's claimed total of the ensemble's models
    batch_size: int
    seed_memory_gb: float  # the seed's claimed "memory needed"
    seed_h100: int  # H100s the seed plans for the phase
    seed_plan: str


SEED_PHASES: tuple[SeedPhase, ...] = (
    SeedPhase(1, "now (POC), development", 781_163, 1_670_000, 32, 24.0, 1,
              "one H100 trains the 5 models"),
    SeedPhase(2, "+3 months, production", 1_000_000, 2_500_000, 64, 32.0, 2,
              "one H100 for development + one for production"),
    SeedPhase(3, "+6 months, production + expansion", 1_500_000, 4_000_000, 128, 48.0, 2,
              "two production H100s: real-time + batch + retraining at once"),
)


def seed_phase(phase: int) -> SeedPhase:
    for p in SEED_PHASES:
        if p.phase == phase:
            return p
    raise BadInputError(f"phase must be one of {[p.phase for p in SEED_PHASES]}. Received: phase={phase}")


# ---------------------------------------------------------------------------- measurement


@dataclass(frozen=True)
class Measurement:
    """One model at one batch size, measured on this machine."""

    model: str
    batch_size: int
    params: int
    train_windows_per_s: float
    infer_windows_per_s: float
    peak_train_bytes: int | None  # peak memory of training above the baseline (see memory_source)
    memory_source: str  # "gpu_allocator_peak" | "cpu_rss_peak_delta" | "unavailable"
    tf_allocator_peak_bytes: int | None  # TF's own allocator peak for the device, where kept
    device: str  # "gpu" | "cpu"
    steps: int  # timed steps (after one warm-up step that traces the function)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _gpu_present() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


class _PeakRSS:
    """Peak resident memory of this process during a `with` block, above its value at entry.

    Linux: resets the kernel's high-water mark (`/proc/self/clear_refs` ← 5) and reads VmHWM at
    exit, so nothing is missed between samples. Elsewhere (or if the reset is refused): a thread
    samples RSS every 2 ms.
    """

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self._sampler: threading.Thread | None = None
        self._stop = threading.Event()
        self.baseline = 0
        self.peak = 0

    @staticmethod
    def _hwm_bytes() -> int | None:
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def _reset_hwm(self) -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            return False
        hwm = self._hwm_bytes()
        return hwm is not None and hwm <= self._process.memory_info().rss * 1.05

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> _PeakRSS:
        gc.collect()
        self.baseline = self._process.memory_info().rss
        self.peak = self.baseline
        if not self._reset_hwm():
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._sampler is not None:
            self._stop.set()
            self._sampler.join()
        else:
            self.peak = max(self.peak, self._hwm_bytes() or 0)
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def delta(self) -> int:
        return max(0, self.peak - self.baseline)


def _release_memory() -> None:
    """Drop Keras' graph state and hand freed heap back to the OS (glibc's malloc_trim), so the
    next RSS baseline is live memory and the next case's allocations show up as growth."""
    import ctypes
    import ctypes.util

    import keras

    keras.backend.clear_session()
    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the peaks are then lower bounds
        pass


def _tf_allocator_peak(device: str) -> int | None:
    import tensorflow as tf

    try:
        return int(tf.config.experimental.get_memory_info(device)["peak"])
    except (ValueError, RuntimeError, KeyError):  # not kept for this device
        return None


def _reset_tf_allocator(device: str) -> None:
    import tensorflow as tf

    try:
        tf.config.experimental.reset_memory_stats(device)
    except (ValueError, RuntimeError):
        pass


def measure_one(model: Any, name: str, batch_size: int, *, steps: int, seed: int = 0) -> Measurement:
    """Throughput and peak training memory of a compiled (optimizer + loss) `model` at `batch_size`.

    One warm-up step (tracing) then `steps` timed `train_on_batch` calls; then one warm-up and
    `steps` timed `predict_on_batch` calls. The memory peak covers the warm-up and timed training
    steps (optimizer slots are created in the first one).
    """
    if steps < 1 or batch_size < 1:
        raise BadInputError(f"steps and batch_size must be >= 1. Received: steps={steps}, batch_size={batch_size}")
    rng = np.random.default_rng(seed)
    lookback, n_features = model.input_shape[1:]
    x = rng.standard_normal((batch_size, lookback, n_features)).astype("float32")  # [B, L, F]
    y = (rng.random((batch_size, 1)) < 0.2).astype("float32")  # [B, 1]
    gpu = _gpu_present()
    device = "GPU:0" if gpu else "CPU:0"
    _reset_tf_allocator(device)
    with _PeakRSS() as rss:
        model.train_on_batch(x, y)  # warm-up: traces the train function, creates Adam's slots
        start = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(x, y)
        train_s = time.perf_counter() - start
    tf_peak = _tf_allocator_peak(device)
    model.predict_on_batch(x)  # warm-up: traces the predict function
    start = time.perf_counter()
    for _ in range(steps):
        model.predict_on_batch(x)
    infer_s = time.perf_counter() - start
    if gpu:
        peak, source = tf_peak, "gpu_allocator_peak" if tf_peak is not None else "unavailable"
    else:
        peak, source = rss.delta, "cpu_rss_peak_delta"
    return Measurement(
        model=name,
        batch_size=batch_size,
        params=int(model.count_params()),
        train_windows_per_s=batch_size * steps / max(train_s, 1e-9),
        infer_windows_per_s=batch_size * steps / max(infer_s, 1e-9),
        peak_train_bytes=peak,
        memory_source=source,
        tf_allocator_peak_bytes=tf_peak,
        device="gpu" if gpu else "cpu",
        steps=steps,
    )


def measure_zoo(
    models: Sequence[str] = SEED_MODELS,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    *,
    lookback: int = 100,
    n_features: int = 12,
    steps: int = 5,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    on_measured: Callable[[Measurement], None] | None = None,
) -> list[Measurement]:
    """Measure every model at every batch size.

    Each case builds the model afresh with its default hyper-parameters (the seed's sizes) unless
    `overrides` says otherwise, compiled with Adam and its training loss for the "event" task.
    """
    import keras

    from fabray.models import get_spec

    if not models:
        raise BadInputError("no model to measure. Received: models=[]")
    for name in models:
        get_spec(name)  # unknown names are bad input before anything is built
    sizes = sorted({int(b) for b in batch_sizes})
    if not sizes or sizes[0] < 1:
        raise BadInputError(f"batch sizes must be >= 1. Received: {list(batch_sizes)}")
    overrides = overrides or {}
    tf_logger = logging.getLogger("tensorflow")
    tf_level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)  # a fresh model per case retraces by design: no warnings
    try:
        out = _measure_cases(models, sizes, lookback, n_features, steps, overrides, on_measured)
    finally:
        tf_logger.setLevel(tf_level)
        keras.backend.clear_session()
    return out


def _measure_cases(
    models: Sequence[str], sizes: Sequence[int], lookback: int, n_features: int, steps: int,
    overrides: Mapping[str, Mapping[str, Any]], on_measured: Callable[[Measurement], None] | None,
) -> list[Measurement]:
    import keras

    from fabray.models import build_model, model_loss

    out = []
    for name in models:
        for batch_size in sizes:
            # A fresh model per case: every peak then holds the same fixed costs (tracing, Adam's
            # slots), so the growth across batch sizes is the activations' share.
            _release_memory()
            keras.utils.set_random_seed(0)
            model = build_model(name, lookback, n_features, overrides.get(name))
            model.compile(optimizer=keras.optimizers.Adam(1e-3),
                          loss=model_loss(name, "event", overrides.get(name)))
            m = measure_one(model, name, batch_size, steps=steps)
            del model
            logger.debug("measured %s", m)
            out.append(m)
            if on_measured is not None:
                on_measured(m)
    return out


# ---------------------------------------------------------------------------- projection (pure)


@dataclass(frozen=True)
class Assumptions:
    """What the projection assumes; every field is printed beside the result."""

    #: H100 windows/s ÷ this machine's, training and inference: an ASSUMPTION. benchmarks/scale.py
    #: replaces it by a bound whose origin it states (the H100 datasheet's FP32 rate ÷ a matmul
    #: rate measured here, and the input pipeline measured here): benchmarks/results/scale.json.
    gpu_speedup: float = 30.0
    train_fraction: float = 0.7  # share of the rows whose windows train (the split's default)
    full_train_epochs: int = 20  # epochs of a full training (train.epochs' default)
    retrain_epochs: int = 3  # epochs of the daily incremental retrain
    retrain_data_fraction: float = 0.3  # newest data + replay sample, as a share of all rows
    retrain_budget_h: float = 2.0  # the seed: one incremental training a day within 2 hours
    gpu_memory_gb: float = 80.0  # H100 80 GB
    usable_memory_fraction: float = 0.9  # headroom for fragmentation
    process_overhead_gb: float = 0.6  # CUDA context + TF runtime, per GPU process
    bytes_per_param_train: float = 16.0  # fp32 weights + gradients + Adam m and v
    bytes_per_param_serve: float = 4.0  # fp32 weights of one serving replica
    serving_replicas: int = 2  # real-time + batch replicas holding every model
    realtime_windows_per_s: float = 20.0  # real-time requests (the seed gives none)
    batch_windows_per_10min: float = 1000.0  # the seed: every 10 minutes, 1,000 windows
    params_scale_compute: bool = True  # time per window grows with parameters (linear)
    activations_scale_with_params: bool = True  # activation memory grows linearly too (upper bound)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                continue
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise BadInputError(f"assumption {f.name} must be a finite number >= 0. Received: {value!r}")
        for name in ("gpu_speedup", "train_fraction", "gpu_memory_gb", "usable_memory_fraction",
                     "retrain_budget_h"):
            if getattr(self, name) <= 0:
                raise BadInputError(f"assumption {name} must be > 0. Received: {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _by_model(measurements: Sequence[Measurement]) -> dict[str, list[Measurement]]:
    groups: dict[str, list[Measurement]] = {}
    for m in measurements:
        groups.setdefault(m.model, []).append(m)
    for rows in groups.values():
        rows.sort(key=lambda m: m.batch_size)
    return groups


def _at_batch(rows: Sequence[Measurement], batch_size: int) -> Measurement:
    """The row measured at `batch_size`, else the nearest measured batch size (larger on ties)."""
    return min(rows, key=lambda m: (abs(m.batch_size - batch_size), -m.batch_size))


def activation_bytes_per_window(rows: Sequence[Measurement]) -> float:
    """Training memory that grows with the batch, per window: the least-squares slope of the peak
    over the measured batch sizes (clamped at >= 0); with one batch size, peak / batch (an upper
    bound, since the peak also holds fixed costs)."""
    points = [(m.batch_size, m.peak_train_bytes) for m in rows if m.peak_train_bytes is not None]
    if not points:
        return 0.0
    if len({b for b, _ in points}) == 1:
        return max(0.0, max(p for _, p in points) / points[0][0])
    b = np.array([p[0] for p in points], dtype=np.float64)
    y = np.array([p[1] for p in points], dtype=np.float64)
    slope = float(np.polyfit(b, y, 1)[0])
    return max(0.0, slope)


def project_phase(
    phase: SeedPhase, measurements: Sequence[Measurement], assumptions: Assumptions
) -> dict[str, Any]:
    """The seed's phase projected from the measurements (pure arithmetic, no measuring).

    - scale s = the phase's parameters ÷ the measured models' total (the zoo grown uniformly);
    - seconds per training window on this machine = Σ_models 1 / (train windows/s at the phase's
      batch, or the nearest measured one), × s when compute scales with parameters; ÷
      `gpu_speedup` on an H100 (1 when the measurements ran on a GPU);
    - an epoch = data_rows × train_fraction windows; a full training = full_train_epochs epochs;
      the daily retrain = retrain_epochs epochs over retrain_data_fraction of the rows;
    - training memory = bytes_per_param_train × params + Σ activation bytes/window × batch (× s)
      + one process overhead per model (each model trains in its own worker process);
    - serving memory = serving_replicas × (bytes_per_param_serve × params + process overhead);
    - GPU share of the serving load = (real-time + batch windows/s) × Σ 1 / inference windows/s;
    - H100s needed = max(by memory, by compute), where compute = the retrain's GPU hours ÷ its
      budget + the serving share, both at once.
    """
    groups = _by_model(measurements)
    if not groups:
        raise BadInputError("no measurement to project from. Received: measurements=[]")
    a = assumptions
    on_gpu = all(m.device == "gpu" for m in measurements)
    speedup = 1.0 if on_gpu else a.gpu_speedup
    measured_params = sum(rows[0].params for rows in groups.values())
    scale = phase.model_params / measured_params
    compute_scale = scale if a.params_scale_compute else 1.0
    act_scale = scale if a.activations_scale_with_params else 1.0

    train_s_per_window = sum(1.0 / _at_batch(rows, phase.batch_size).train_windows_per_s
                             for rows in groups.values()) * compute_scale  # this machine
    infer_s_per_window = sum(1.0 / _at_batch(rows, phase.batch_size).infer_windows_per_s
                             for rows in groups.values()) * compute_scale
    epoch_windows = phase.data_rows * a.train_fraction
    epoch_s_here = epoch_windows * train_s_per_window
    epoch_s_gpu = epoch_s_here / speedup
    full_train_h = epoch_s_gpu * a.full_train_epochs / 3600
    retrain_h = epoch_s_gpu * a.retrain_epochs * a.retrain_data_fraction / a.train_fraction / 3600

    activations = sum(activation_bytes_per_window(rows) for rows in groups.values())
    n_models = len(groups)
    train_bytes = (a.bytes_per_param_train * phase.model_params
                   + activations * phase.batch_size * act_scale
                   + n_models * a.process_overhead_gb * GB)
    serve_bytes = a.serving_replicas * (a.bytes_per_param_serve * phase.model_params
                                        + a.process_overhead_gb * GB)
    total_bytes = train_bytes + serve_bytes
    usable = a.gpu_memory_gb * GB * a.usable_memory_fraction
    serving_rate = a.realtime_windows_per_s + a.batch_windows_per_10min / 600.0
    serving_share = serving_rate * infer_s_per_window / speedup
    retrain_share = retrain_h / a.retrain_budget_h
    by_memory = max(1, math.ceil(total_bytes / usable))
    by_compute = max(1, math.ceil(retrain_share + serving_share - 1e-12))
    return {
        "phase": phase.phase,
        "stage": phase.stage,
        "data_rows": phase.data_rows,
        "model_params": phase.model_params,
        "batch_size": phase.batch_size,
        "params_scale": scale,
        "epoch_windows": epoch_windows,
        "epoch_s_here": epoch_s_here,
        "epoch_s_h100": epoch_s_gpu,
        "full_train_h_h100": full_train_h,
        "daily_retrain_h_h100": retrain_h,
        "retrain_within_budget": retrain_h <= a.retrain_budget_h,
        "train_memory_gb": train_bytes / GB,
        "serve_memory_gb": serve_bytes / GB,
        "memory_per_gpu_gb": total_bytes / GB / max(by_memory, by_compute),
        "total_memory_gb": total_bytes / GB,
        "seed_memory_gb": phase.seed_memory_gb,
        "serving_gpu_share": serving_share,
        "retrain_gpu_share": retrain_share,
        "h100_needed_by_memory": by_memory,
        "h100_needed_by_compute": by_compute,
        "h100_needed": max(by_memory, by_compute),
        "seed_h100": phase.seed_h100,
        "seed_plan": phase.seed_plan,
    }


def project_phases(
    measurements: Sequence[Measurement],
    assumptions: Assumptions = Assumptions(),
    phases: Sequence[SeedPhase] = SEED_PHASES,
) -> list[dict[str, Any]]:
    """`project_phase` for each phase."""
    return [project_phase(p, measurements, assumptions) for p in phases]


# ---------------------------------------------------------------------------- the report


def host_info() -> dict[str, Any]:
    import platform

    import psutil
    import tensorflow as tf

    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / GB, 1),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "tensorflow": tf.__version__,
        "platform": platform.platform(),
    }


def capacity_report(
    measurements: Sequence[Measurement],
    assumptions: Assumptions,
    phases: Sequence[SeedPhase] = SEED_PHASES,
    host: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON document `fabray capacity --json` writes."""
    device = "gpu" if measurements and all(m.device == "gpu" for m in measurements) else "cpu"
    return {
        "host": dict(host or {}),
        "measured": {
            "device": device,
            "note": ("measured on this machine's GPU" if device == "gpu" else
                     "measured on this machine's CPU: memory is the process's peak RSS above its "
                     "baseline (CPU figures, not GPU memory); throughput is CPU throughput"),
            "rows": [m.to_dict() for m in measurements],
        },
        "assumptions": assumptions.to_dict(),
        "projected": {
            "note": "projected from the measurements with the assumptions above, for the seed's "
                    "stages; not measured on an H100",
            "phases": project_phases(measurements, assumptions, phases),
        },
    }


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  ".join(str(c).rjust(w) if i else str(c).ljust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    return "\n".join([fmt(header), *[fmt(r) for r in rows]])


def _hours(h: float) -> str:
    return f"{h * 60:.1f} min" if h < 1 else f"{h:.2f} h"


def format_report(report: Mapping[str, Any]) -> str:
    """The measured table, the assumptions, and the projected table, as plain text."""
    measured = report["measured"]
    mem_label = "peak GPU MB" if measured["device"] == "gpu" else "peak RSS MB (CPU)"
    rows = []
    for r in measured["rows"]:
        peak = r["peak_train_bytes"]
        rows.append([r["model"], str(r["batch_size"]), f"{r['params']:,}",
                     f"{r['train_windows_per_s']:,.0f}", f"{r['infer_windows_per_s']:,.0f}",
                     "—" if peak is None else f"{peak / MB:,.0f}"])
    lines = [f"MEASURED here ({measured['device'].upper()}): {measured['note']}"]
    host = report.get("host") or {}
    if host:
        lines.append(f"host: {host.get('cpus')} CPUs, {host.get('memory_gb')} GB, GPUs: "
                     f"{host.get('gpus') or 'none'}, TensorFlow {host.get('tensorflow')}")
    lines.append(_table(["model", "batch", "params", "train win/s", "infer win/s", mem_label], rows))
    a = report["assumptions"]
    lines += ["", "ASSUMED (fabray.capacity.Assumptions; --gpu-speedup sets the speed ratio):",
              f"  H100 speed = {a['gpu_speedup']:g}x this machine (train and inference; 1x when "
              f"measured on a GPU); the zoo grows uniformly to the stage's parameters, compute "
              f"{'linear in' if a['params_scale_compute'] else 'independent of'} parameters, "
              f"activation memory {'linear in' if a['activations_scale_with_params'] else 'independent of'} them",
              f"  epoch = rows x {a['train_fraction']:g} windows; full training {a['full_train_epochs']} "
              f"epochs; daily retrain {a['retrain_epochs']} epochs over {a['retrain_data_fraction']:g} "
              f"of the rows, budget {a['retrain_budget_h']:g} h",
              f"  memory: {a['bytes_per_param_train']:g} B/param training, {a['bytes_per_param_serve']:g} "
              f"B/param per serving replica x {a['serving_replicas']}, {a['process_overhead_gb']:g} GB "
              f"per GPU process; H100 {a['gpu_memory_gb']:g} GB x {a['usable_memory_fraction']:g} usable",
              f"  load: {a['realtime_windows_per_s']:g} real-time windows/s + "
              f"{a['batch_windows_per_10min']:g} batch windows per 10 min, retraining at the same time"]
    prow = []
    for p in report["projected"]["phases"]:
        prow.append([
            f"{p['phase']}", f"{p['data_rows']:,}", f"{p['model_params'] / 1e6:.2f}M",
            str(p["batch_size"]), _hours(p["epoch_s_here"] / 3600), _hours(p["epoch_s_h100"] / 3600),
            _hours(p["full_train_h_h100"]),
            _hours(p["daily_retrain_h_h100"]) + ("" if p["retrain_within_budget"] else " (!)"),
            f"{p['train_memory_gb']:.1f}", f"{p['serve_memory_gb']:.1f}",
            f"{p['total_memory_gb']:.1f}", f"{p['memory_per_gpu_gb']:.1f}", f"{p['seed_memory_gb']:g}",
            f"{p['h100_needed']} ({p['h100_needed_by_memory']}m/{p['h100_needed_by_compute']}c)",
            str(p["seed_h100"]),
        ])
    lines += ["", "PROJECTED for the seed's stages (not measured on an H100):",
              _table(["phase", "rows", "params", "batch", "epoch here", "epoch H100",
                      "full train H100", "daily retrain H100", "train GB", "serve GB",
                      "total GB", "GB/GPU", "seed GB", "H100 needed", "seed H100"], prow),
              "H100 needed = max(by memory 'm', by compute 'c') for real-time + batch + "
              "retraining at once; the seed's plan adds a development GPU in phase 2."]
    return "\n".join(lines)
