"""The run directory (DESIGN §4): per-model files and a manifest written atomically.

Layout of `--out RUN`:

    RUN/manifest.json               every model: status, files, metrics; data fingerprint; code version
    RUN/config.json                 the effective configuration of the run
    RUN/models/<name>/model.keras   the best epoch's model
    RUN/models/<name>/history.json  per-epoch metrics
    RUN/models/<name>/preprocessing.json   scaler, nominal transport times, lookback, horizon, features
    RUN/models/<name>/config.json   the model's name, overrides, task and training settings
    RUN/ray/<name>/...              Ray Train's checkpoints (storage_path)

This module holds the directory's layout and provenance helpers; the manifest (its typed model,
the one writer and reader) is `fabray.run.manifest`, the opened run `fabray.run.Run`.
No Ray, no TensorFlow here.
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from fabray._version import __version__
from fabray.errors import BadInputError

logger = logging.getLogger(__name__)


def check_run_dir_free(path: str | Path) -> Path:
    """The absolute run path, if nothing is there yet (or an empty directory); else BadInputError.

    Nothing of an earlier run is ever overwritten: a non-empty directory (or a file) at `path`
    is bad input.
    """
    text = str(path)
    if "://" in text:
        raise BadInputError(f"--out must be a local directory. Received: {text}")
    run = Path(path).expanduser().resolve()
    if run.exists() and (not run.is_dir() or any(run.iterdir())):
        raise BadInputError(
            f"run directory {run} already exists and is not empty; choose a new --out "
            "(a run is never overwritten)"
        )
    existing = next((p for p in run.parents if p.exists()), None)  # where the new directories start
    if existing is not None and not existing.is_dir():
        raise BadInputError(f"--out {run}: {existing} is a file, so no run directory can be made under it")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise BadInputError(f"--out {run}: {existing} is not writable")
    return run


def create_run_dir(path: str | Path) -> Path:
    """Make a new, empty run directory (see `check_run_dir_free`); returns its absolute path."""
    run = check_run_dir_free(path)
    run.mkdir(parents=True, exist_ok=True)
    (run / "models").mkdir(exist_ok=True)
    return run


def model_dir(run: Path, name: str) -> Path:
    return run / "models" / name


# ---------------------------------------------------------------------------- provenance


def code_version() -> dict[str, Any]:
    """fabray's version and, when the package sits in a git work tree, its commit."""
    info: dict[str, Any] = {"fabray": __version__, "git_commit": None, "git_dirty": None}
    root = Path(__file__).resolve().parents[2]  # above the fabray package
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        info["git_commit"], info["git_dirty"] = commit or None, bool(dirty)
    except (OSError, subprocess.SubprocessError):
        logger.debug("no git commit for %s", root)
    return info


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("tensorflow", "keras", "ray", "numpy", "pandas"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def until_text(until: Any) -> str:
    """A manifest's `until` (a data entry's cut, see `rows_before`) as ISO text, exact to the ns."""
    import pandas as pd

    return pd.Timestamp(until).isoformat()


def rows_before(df: Any, until: Any) -> Any:
    """The rows of a validated data frame strictly before `until` (None: all), re-indexed.

    A manifest's `data` entry (and a retrain's replay `history` entries) may hold `until`: the
    run learned from that file's rows before it only (serving's retrain holds the newest rows
    out, and names the file it was given rather than writing the rest to a new one). Every reader
    of a run's data applies it, so the splits are the ones training saw."""
    if until is None:
        return df
    import pandas as pd

    from fabray import schema

    return df[df[schema.TIMESTAMP] < pd.Timestamp(until)].reset_index(drop=True)
