"""Reading and writing zone-minute tables: the one place that touches data files.

Parquet or CSV, chosen by the file's extension. Reading never repairs anything: a CSV is read
with pandas' type inference, but a column that holds any text stays text (nothing is coerced to
NaN), only an empty cell is read as missing, and id columns (the zone) stay exactly as written
(`007` stays `007`). The validator (`fabray.data.validate`) then reports every bad cell by row.
Writing is atomic: a temporary file in the same directory, then `os.replace`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from fabray import schema
from fabray.errors import BadInputError

logger = logging.getLogger(__name__)

PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq")
CSV_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz")
SUPPORTED = ", ".join(PARQUET_SUFFIXES + CSV_SUFFIXES)


def table_format(path: str | os.PathLike[str]) -> str:
    """'parquet' or 'csv' from the file name; anything else → BadInputError."""
    name = Path(path).name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    raise BadInputError(
        f"{path}: unknown file type; expected one of {SUPPORTED}. "
        f"Received: {Path(path).suffix or '(no extension)'}"
    )


def read_table(
    path: str | os.PathLike[str], *, text_columns: Sequence[str] = (schema.ZONE,)
) -> pd.DataFrame:
    """Read a Parquet or CSV table as it is in the file.

    `text_columns` are read from a CSV as text, exactly as written (zone ids). Missing file,
    unknown extension, empty (0-byte) or unreadable file → BadInputError naming the file. A file
    with a header but no rows is returned as an empty frame: the validator reports it.
    """
    path = Path(path)
    fmt = table_format(path)
    if not path.exists():
        raise BadInputError(f"{path}: file not found")
    if not path.is_file():
        raise BadInputError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise BadInputError(f"{path}: the file is empty (0 bytes)")
    try:
        if fmt == "parquet":
            df = pd.read_parquet(path)
            if not _is_default_index(df.index):
                df = df.reset_index()  # a saved index holds data (e.g. timestamps): keep it
        else:
            df = pd.read_csv(
                path,
                keep_default_na=False,  # 'NA', 'null', 'None' stay text: the validator judges them
                na_values=[""],  # only an empty cell is missing
                dtype={name: str for name in text_columns},
                low_memory=False,  # one dtype per column, not per chunk
            )
    except pd.errors.EmptyDataError as err:
        raise BadInputError(f"{path}: the file is empty (no header line)") from err
    except UnicodeDecodeError as err:
        raise BadInputError(f"{path}: not UTF-8 text; save the CSV as UTF-8. ({err})") from err
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as err:  # pyarrow, parser and OS errors all mean: cannot read this file
        raise BadInputError(
            f"{path}: cannot read as {fmt.upper()} ({type(err).__name__}: {err})"
        ) from err
    logger.debug("read %s: %d rows × %d columns", path, len(df), df.shape[1])
    return df


def write_table(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write `df` (without its index) to Parquet or CSV by extension, atomically.

    Readers never see a half-written file: the table goes to a temporary file in the same
    directory, which then replaces `path` in one step. Returns the path written.
    """
    path = Path(path)
    fmt = table_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".csv.gz" if path.name.lower().endswith(".csv.gz") else path.suffix
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes 0600; a data file is shared
        if fmt == "parquet":
            df.to_parquet(tmp_name, index=False)
        else:
            df.to_csv(tmp_name, index=False)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    logger.debug("wrote %s: %d rows", path, len(df))
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _is_default_index(index: pd.Index) -> bool:
    return isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1 and index.name is None
