"""The file helpers every wing shares: a file's sha256, atomic writes, UTC timestamps.

Runs (`fabray.train.run_dir`), the serving store (`fabray.serve.store`), evaluation and the
ensemble fit all record files by `sha256_file` and write their JSON through `atomic_write_json`,
so a reader sees the old file or the whole new one, never half of one. Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def sha256_file(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """'sha256:<hex>' of a file's bytes (the form manifests and the store record)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_bytes), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def utc_now(unix: float | None = None) -> str:
    """ISO 8601 UTC time of `unix` (default: now), to the millisecond: '2025-01-06T08:00:00.123+00:00'."""
    when = datetime.now(timezone.utc) if unix is None else datetime.fromtimestamp(unix, timezone.utc)
    return when.isoformat(timespec="milliseconds")


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temp file in the same directory, fsync and os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """`obj` as indented JSON (numpy scalars and arrays, Paths as their values), written atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def atomic_copy(src: Path, dst: Path) -> None:
    """Copy a file so that `dst` either is absent/old or is the whole new file."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars (an array's .item() fails past one value)
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


__all__ = ["atomic_copy", "atomic_write_json", "atomic_write_text", "sha256_file", "utc_now"]
