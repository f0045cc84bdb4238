"""What the session's tiny run is made of (the fixtures are in conftest.py): its config, its
models, the tuple the `tiny_run` fixture returns, and `copy_run` for tests that change a run."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import NamedTuple

TINY_MODELS = ("lstm", "rule")
TINY_EPOCHS = 2
TINY_CONFIG = {
    "train": {
        "epochs": TINY_EPOCHS,
        "batch_size": 256,
        "models": list(TINY_MODELS),
        "resources": {"cpus": 0.5},  # two trainers at once on 2 CPUs, one CPU left for Ray Data
        "shuffle_buffer": 2000,
        "model_overrides": {
            "lstm": {"lstm_units": [8], "head_units": [8]},
            "rule": {"lstm_units": 4, "head_units": [4]},
        },
    }
}


class TinyRun(NamedTuple):
    code: int  # what `fabray train` returned (0 when every model landed)
    run: Path  # the run directory (named r1)
    data: Path  # the Parquet file it was trained on
    config: Path  # the YAML config it was trained with


def copy_run(run: Path, dst: Path, run_id: str | None = None, *, ray_results: bool = True) -> Path:
    """A copy of a run (without its Ray results if `ray_results` is false); with `run_id`, the
    copy's manifest names it (so a model store sees different content)."""
    shutil.copytree(run, dst, ignore=None if ray_results else shutil.ignore_patterns("ray"))
    if run_id is not None:
        from fabray.run.manifest import read_manifest, write_manifest

        write_manifest(dst, {**read_manifest(dst), "run_id": run_id})
    return dst
