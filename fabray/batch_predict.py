"""Offline batch scoring of a run on Ray Data: `fabray predict` (DESIGN §8) and jobs/batch_score.py.

    fabray predict --run runs/r1 --data data.parquet --out scores.parquet [--latest]

The result is `Forecaster.predict`'s frame, computed by the same code: the data file is validated
and prepared in the driver (`Forecaster.predict` → `RunPredictor.prepare`), and the ensemble is
replayed over the windows there (`Forecaster._combine`); only the expensive step, every model's
forward pass over every window, runs on Ray Data (`RayDataScorer`). As in training
(`fabray.train.ray_windows`) and the serving batch jobs (`fabray.serve.batch`), the windows are
never materialized in the driver: the raw series goes into the object store once, Ray Data
shards the window END rows, and each scoring actor (`WindowScorer`: the run's models loaded once
per actor, warm) gathers its batch's windows by index and scores them. Columns of the Parquet
file: zone, end_time, score_<model>..., probability, threshold, decision.

Ray starts (or is joined: `--address`, RAY_ADDRESS under `ray job submit`) only for the scoring,
after the run, the output path and the data have been checked, so bad input exits 2 at once.
The run directory must be readable at the same path on every node (the cluster's shared file
system), as for `fabray serve`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fabray.errors import BadInputError

logger = logging.getLogger(__name__)

os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # the scoring actors load the run's Keras models

#: Windows per Ray Data batch (one model call per model per batch), as `RunPredictor.score_prepared`.
DEFAULT_BATCH_SIZE = 4096
END = "end"  # the dataset's column of window END rows (`fabray.train.ray_windows.window_index_dataset`)


class WindowScorer:
    """Ray Data UDF (one per actor): the run's models, loaded once, score batches of windows.

    `series` is a one-element list holding the object ref of the raw features [N, F] (Ray
    Data does not resolve refs in constructor args, so it is fetched here, zero-copy)."""

    def __init__(self, run_dir: str, lookback: int, series: list) -> None:
        import ray

        from fabray.predictor import RunPredictor

        self.predictor = RunPredictor.load(run_dir)
        self.features = ray.get(series[0])  # [N, F] float32, raw
        self.lookback = int(lookback)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        from fabray.data.windows import gather_windows

        ends = np.asarray(batch[END], dtype=np.int64)  # [B]
        x = gather_windows(self.features, ends, self.lookback)  # [B, L, F] raw
        scores = self.predictor.score(x)  # {model: [B]}
        return {END: ends, **{f"score_{name}": s for name, s in scores.items()}}


class WindowSlots:
    """Where each window of a Ray Data batch goes in the output: batches arrive in any order
    (Ray Data does not preserve it by default), each window identified by its END row."""

    def __init__(self, ends: np.ndarray) -> None:
        self._order = np.argsort(np.asarray(ends, dtype=np.int64), kind="stable")  # [W]
        self._sorted = np.asarray(ends, dtype=np.int64)[self._order]  # [W]

    def of(self, got: np.ndarray) -> np.ndarray:
        """Positions [B] in `ends` of the END rows `got` [B]; KeyError for a row not asked for."""
        got = np.asarray(got, dtype=np.int64)
        at = np.minimum(np.searchsorted(self._sorted, got), len(self._sorted) - 1)
        if len(got) and (len(self._sorted) == 0 or not np.array_equal(self._sorted[at], got)):
            raise KeyError(f"Ray Data returned windows not asked for: {got[self._sorted[at] != got][:5].tolist()}")
        return self._order[at]


@dataclass(frozen=True)
class RayDataScorer:
    """`f(prepared, ends) -> {model: [W] float64}` for `Forecaster.predict(scorer=...)`: the
    models' scores of the windows of `prepared` ending at rows `ends`, computed by `workers`
    Ray Data actors of `cpus_per_worker` CPUs each, `batch_size` windows per model call.

    Ray: the one already initialized in this process, else `address` / RAY_ADDRESS, else an
    embedded local Ray with `num_cpus` CPUs, for the call only (`fabray.ray_session`)."""

    run_dir: str
    address: str | None = None
    num_cpus: int | None = None
    workers: int = 1
    cpus_per_worker: float = 1.0
    batch_size: int = DEFAULT_BATCH_SIZE
    progress: bool | None = None  # a tqdm bar on stderr; None: when stderr is a terminal

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise BadInputError(f"--workers must be >= 1. Received: {self.workers}")
        if self.batch_size < 1:
            raise BadInputError(f"--batch-size must be >= 1. Received: {self.batch_size}")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise BadInputError(f"--num-cpus must be >= 1. Received: {self.num_cpus}")
        if not self.cpus_per_worker > 0:
            raise BadInputError(f"cpus_per_worker must be > 0. Received: {self.cpus_per_worker}")

    def __call__(self, prepared: Any, ends: np.ndarray) -> dict[str, np.ndarray]:
        from fabray.ray_session import ray_session

        ends = np.asarray(ends, dtype=np.int64)  # [W]
        with ray_session(self.address, num_cpus=self.num_cpus):
            return self._score(prepared, ends)

    def _score(self, prepared: Any, ends: np.ndarray) -> dict[str, np.ndarray]:
        import ray
        from ray.data import DataContext
        from tqdm.auto import tqdm

        from fabray.console import quiet_ray_logger
        from fabray.predictor import PROGRESS_MIN_BATCHES
        from fabray.train.ray_windows import window_index_dataset

        quiet_ray_logger()  # Ray Data's console handler (added on import) → the log file, as Ray's
        started = time.monotonic()
        series = [ray.put(np.ascontiguousarray(prepared.features, dtype=np.float32))]
        ds = window_index_dataset(ends).map_batches(
            WindowScorer,
            fn_constructor_args=(self.run_dir, prepared.lookback, series),
            batch_size=self.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=self.workers),
            num_cpus=self.cpus_per_worker,
        )
        slots = WindowSlots(ends)
        out: dict[str, np.ndarray] = {}  # model name → scores [W], in the order of `ends`
        done = np.zeros(len(ends), dtype=bool)
        context = DataContext.get_current()
        ray_bars, context.enable_progress_bars = context.enable_progress_bars, False  # ours below
        disable = None if self.progress is None else not self.progress  # None: off unless a terminal
        n_blocks = 0
        step = max(len(ends) // 10, 1) if len(ends) >= PROGRESS_MIN_BATCHES * self.batch_size else len(ends) + 1
        next_line = step
        try:
            with tqdm(total=len(ends), desc="scoring windows", unit="window", disable=disable, leave=False) as bar:
                for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                    got = np.asarray(batch[END], dtype=np.int64)
                    pos = slots.of(got)  # where each window goes
                    for key in batch:
                        if key.startswith("score_"):
                            out.setdefault(key.removeprefix("score_"), np.full(len(ends), np.nan))[pos] = batch[key]
                    done[pos] = True
                    n_blocks += 1
                    bar.update(len(got))
                    n_done = int(done.sum())
                    if bar.disable and n_done >= next_line:  # no bar (not a terminal): a line per tenth
                        logger.info("scored %d/%d windows (%.0f%%)", n_done, len(ends), 100 * n_done / len(ends))
                        next_line = n_done + step
        finally:
            context.enable_progress_bars = ray_bars
        if not done.all():  # never expected: Ray Data returns every row it was given
            raise RuntimeError(f"Ray Data returned {int(done.sum())} of {len(ends)} windows")
        seconds = time.monotonic() - started
        logger.info("scored %d windows with %d models on Ray Data in %.1f s (%d blocks, %d worker%s)",
                    len(ends), len(out), seconds, n_blocks, self.workers,
                    "" if self.workers == 1 else "s")
        return out


def check_output(out: str | Path, data: Any) -> Path:
    """The `--out` path: a .parquet (or .csv) file, not a directory and not the input data file
    (which must exist); an existing file is replaced atomically (as `fabray simulate --out`)."""
    from fabray.data.io import SqlSource, table_format

    path = Path(out)
    table_format(path)  # .parquet / .csv, else BadInputError
    if path.is_dir():
        raise BadInputError(f"--out must be a file, not a directory. Received: {out}")
    if not isinstance(data, SqlSource):
        table_format(data)
        if not Path(data).is_file():
            raise BadInputError(f"{data}: file not found")
        if path.resolve() == Path(data).resolve():
            raise BadInputError(f"--out would overwrite the input data file. Received: --out {out}")
    return path


def predict_to_file(
    run: str | Path,
    data: Any,
    out: str | Path,
    *,
    latest: bool = False,
    ensemble: str = "dynamic",
    address: str | None = None,
    num_cpus: int | None = None,
    workers: int = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> tuple[Any, Path]:
    """Score `data` (a file path or `fabray.data.io.SqlSource`) with the run at `run` on Ray Data
    and write `Forecaster.predict`'s frame to `out` atomically: (the frame, the path written)."""
    from fabray.api import Forecaster
    from fabray.data.io import write_table
    from fabray.data.snapshot import local_file

    path = check_output(out, data)
    scorer = RayDataScorer(str(Path(run).expanduser().resolve()), address=address, num_cpus=num_cpus,
                           workers=workers, batch_size=batch_size)  # bad counts: BadInputError here
    fc = Forecaster.load(run)  # a missing or damaged run: BadInputError naming the file
    with local_file(data) as source:  # a SQL source: validated into a temporary Parquet file
        frame = fc.predict(source, latest=latest, ensemble=ensemble, scorer=scorer)
    return frame, write_table(frame, path)


def summary_line(frame: Any, path: Path) -> str:
    """'scores.parquet: 1,234 windows of 4 zones, 2026-01-01 01:39 .. 2026-01-02 23:59; 17 decisions'."""
    if frame.empty:
        return f"{path}: no window"
    line = (f"{path}: {len(frame):,} windows of {frame['zone'].nunique()} zones, "
            f"{frame['end_time'].min():%Y-%m-%d %H:%M} .. {frame['end_time'].max():%Y-%m-%d %H:%M}")
    if "decision" in frame:
        line += f"; {int(frame['decision'].sum()):,} alarms (probability >= {float(frame['threshold'].iloc[0]):.3f})"
    return line


__all__ = ["DEFAULT_BATCH_SIZE", "RayDataScorer", "WindowScorer", "WindowSlots", "check_output", "predict_to_file", "summary_line"]
