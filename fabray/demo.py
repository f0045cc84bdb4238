"""`fabray demo`: the whole chain on a small simulated fab, each stage a library call.

simulate → validate → windows → (train → ensemble → evaluate → serve, as those stages land).
Every file it makes goes under `workdir`, so a person can open them afterwards.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from fabray.config import FabrayConfig
from fabray.data import io
from fabray.data.simulate import simulate_preset, summarize
from fabray.data.validate import load_validated
from fabray.data.windows import PreparedData, prepare

logger = logging.getLogger(__name__)


def window_summary(prepared: PreparedData) -> str:
    """A few lines on the windows: per split, count, event share and time span."""
    lines = [f"windows: lookback {prepared.lookback} min, horizon {prepared.horizon} min, "
             f"{len(prepared.zones)} zones, {prepared.n_rows:,} rows"]
    for name, ends in prepared.splits.items():
        if len(ends) == 0:
            lines.append(f"  {name:<5} 0 windows")
            continue
        target = prepared.target[ends]
        stamps = prepared.timestamps[ends]
        lines.append(
            f"  {name:<5} {len(ends):>9,} windows  events {np.nanmean(target):6.1%}  "
            f"{np.datetime_as_string(stamps.min(), unit='m')} → "
            f"{np.datetime_as_string(stamps.max(), unit='m')}"
        )
    return "\n".join(lines)


def run_demo(workdir: str | Path, config: FabrayConfig | None = None, seed: int = 7) -> Path:
    """Run the chain into `workdir`; return the path of the data file it simulated."""
    config = config or FabrayConfig()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    data_path = workdir / "fab.parquet"

    print(f"[1/3] simulating a small fab (preset tiny, seed {seed}) → {data_path}")
    frame = simulate_preset("tiny", seed=seed, config=config.simulation)
    io.write_table(frame, data_path)
    print(f"      {summarize(frame, config.task).line()}")

    print(f"[2/3] validating {data_path} against the data contract")
    frame = load_validated(data_path)
    print(f"      OK: {len(frame):,} rows, {frame['zone'].nunique()} zones")

    print("[3/3] windows (index-based, split by time with a leak-free gap)")
    prepared = prepare(frame, config.task, config.split)
    print("      " + window_summary(prepared).replace("\n", "\n      "))
    return data_path
