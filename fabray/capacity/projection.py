"""Step 2 of `fabray capacity`, pure arithmetic (`project_phases`): the seed's phases turned into
time per epoch, per training and per retrain, memory per GPU and H100s needed, under printed
`Assumptions`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fabray.capacity.measure import Measurement
from fabray.capacity.seed import SEED_PHASES, SeedPhase
from fabray.errors import BadInputError


GB = 1e9


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
