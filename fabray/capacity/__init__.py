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

Modules: `seed` (the seed's table), `measure` (step 1), `projection` (step 2) and `report` (host
facts, the report dict and its text tables); the package re-exports their public names, which
`fabray capacity`, `benchmarks/scale.py` and the tests use as `fabray.capacity.<name>`.
"""

from __future__ import annotations

from fabray.capacity.measure import DEFAULT_BATCH_SIZES, Measurement, measure_one, measure_zoo
from fabray.capacity.projection import (
    GB,
    Assumptions,
    activation_bytes_per_window,
    project_phase,
    project_phases,
)
from fabray.capacity.report import MB, capacity_report, format_report, host_info
from fabray.capacity.seed import SEED_MODELS, SEED_PHASES, SeedPhase, seed_phase

__all__ = [
    "GB", "MB", "DEFAULT_BATCH_SIZES", "SEED_MODELS", "SeedPhase", "SEED_PHASES", "seed_phase",
    "Measurement", "measure_one", "measure_zoo", "Assumptions", "activation_bytes_per_window",
    "project_phase", "project_phases", "host_info", "capacity_report", "format_report",
]
