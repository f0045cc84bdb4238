"""A SQL source turned into a validated Parquet file, for the steps that find data by fingerprint.

`fabray train` keeps the rows it read from a database as `<out>.data.parquet` beside the run:
`fabray ensemble` and `fabray evaluate` re-read the run's data by path and sha256 fingerprint,
which a live table cannot give (it grows). `fabray evaluate` reads a SQL source into a temporary
file for the duration of the evaluation (`local_file`). Reading stays in `fabray.data.io`,
checking in `fabray.data.validate`; this module only composes them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fabray.data.io import SqlSource, write_table
from fabray.data.validate import load_validated
from fabray.errors import BadInputError


def snapshot(source: SqlSource, path: str | os.PathLike[str]) -> Path:
    """Read and validate `source` (every contract error → BadInputError) and write the clean
    frame to the Parquet file `path` (never over an existing file). Returns the path."""
    path = Path(path)
    if path.exists():
        raise BadInputError(f"{path} already exists (the snapshot of {source} is never written over it)")
    return write_table(load_validated(source), path)


@contextmanager
def local_file(data: Path | SqlSource) -> Iterator[Path]:
    """A file path as it is; a SQL source validated into a temporary Parquet file for the block."""
    if not isinstance(data, SqlSource):
        yield Path(data)
        return
    with tempfile.TemporaryDirectory(prefix="fabray-sql-") as tmp:
        yield snapshot(data, Path(tmp) / "data.parquet")
