"""The file helpers every wing shares: a file's sha256, atomic writes, UTC timestamps.

Runs (`fabray.run`), the serving store (`fabray.serve.store`), evaluation and the
ensemble fit all record files by `sha256_file` and write their JSON through `atomic_write_json`,
so a reader sees the old file or the whole new one, never half of one. Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """A temporary path beside `path` to write the new file to; when the block succeeds it
    replaces `path` in one step (os.replace), when it fails it is removed. So a reader sees the
    old file or the whole new one, never half of one. `suffix` ends the temporary name (a
    writer that picks its format by extension needs it). The file gets the mode a plain `open`
    would give (0666 less the umask), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{suffix}")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `path` atomically (`atomic_path`), flushed to disk before the replace."""
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """`obj` as indented JSON (numpy scalars and arrays, Paths as their values), written atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def strict_json(obj: Any) -> Any:
    """`obj` made strict JSON (RFC 8259 has no NaN): NaN and ±inf → None, numpy scalars and arrays
    → Python values and lists, mappings (keys as str), lists and tuples recursively."""
    if isinstance(obj, Mapping):
        return {str(k): strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy, without importing it
        value = obj.tolist()
        return strict_json(value) if isinstance(value, list) else _finite_or_none(value)
    return _finite_or_none(obj)


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def atomic_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Copy a file so that `dst` either is absent/old or is the whole new file."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask sets it, and a
    moment with umask 0 would race with other threads creating files)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars (an array's .item() fails past one value)
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


__all__ = ["atomic_copy", "atomic_path", "atomic_write_json", "atomic_write_text", "sha256_file", "strict_json",
           "utc_now"]
