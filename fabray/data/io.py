"""Reading and writing zone-minute tables: the one place that touches data files and databases.

Parquet or CSV, chosen by the file's extension; or a SQL table or query (`SqlSource`: a
SQLAlchemy URL with `--table` or `--query`), read with pandas through SQLAlchemy. Reading never repairs anything: a CSV is read
with pandas' type inference, but a column that holds any text stays text (nothing is coerced to
NaN), only an empty cell is read as missing, and id columns (the zone) stay exactly as written
(`007` stays `007`). The validator (`fabray.data.validate`) then reports every bad cell by row.
Writing is atomic: a temporary file in the same directory, then `os.replace`.

A SQL source is read as the database returns it (SQLite hands back timestamps as text, the
validator parses them) and then validated by the same contract. Commands whose later steps
re-read the data by fingerprint (`fabray train`: ensemble and evaluate find the run's data again)
keep a validated Parquet snapshot of what was read (`fabray.data.snapshot`); the source itself
(password hidden) is recorded beside it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fabray import schema
from fabray.errors import BadInputError

logger = logging.getLogger(__name__)

PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq")
CSV_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz")
SUPPORTED = ", ".join(PARQUET_SUFFIXES + CSV_SUFFIXES)


@dataclass(frozen=True)
class SqlSource:
    """A zone-minute table in a database: a SQLAlchemy URL and a table name or a query.

    `url` like `sqlite:///fab.db` or `postgresql+psycopg://reader@db.fab/mes` (the driver package
    must be installed; keep passwords out of the URL: libpq reads PGPASSWORD or ~/.pgpass).
    Exactly one of `table` (read whole, by name: no SQL is built from it) or `query` (run as
    given; use a read-only database user).
    """

    url: str
    table: str | None = None
    query: str | None = None

    def __post_init__(self) -> None:
        if (self.table is None) == (self.query is None):
            raise BadInputError(
                f"a SQL source needs exactly one of --table or --query. Received: {self.redacted()}"
                + (f" with --table {self.table!r} and --query {self.query!r}" if self.table else "")
            )
        if not (self.table or self.query or "").strip():
            raise BadInputError(f"{self.redacted()}: --table/--query is empty")

    def redacted(self) -> str:
        """The URL with its password hidden (for messages, manifests, trackers)."""
        try:
            import sqlalchemy as sa

            return sa.make_url(self.url).render_as_string(hide_password=True)
        except Exception:  # noqa: BLE001 - unparsable: keep only the scheme
            return self.url.split("://", 1)[0] + "://…"

    def __str__(self) -> str:
        what = f"table {self.table}" if self.table is not None else f"query {_short(self.query or '')}"
        return f"{self.redacted()} ({what})"

    def to_dict(self) -> dict[str, str]:
        """JSON for a manifest: URL without password, and the table or query."""
        out = {"url": self.redacted()}
        out.update({"table": self.table} if self.table is not None else {"query": self.query or ""})
        return out


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def is_sql_url(text: str | os.PathLike[str]) -> bool:
    """True for a URL (`scheme://…`); a file path never holds '://'."""
    return isinstance(text, str) and "://" in text


def data_source(
    data: str | os.PathLike[str] | SqlSource, *, table: str | None = None, query: str | None = None
) -> Path | SqlSource:
    """The `--data` argument with `--table` / `--query`: a file path, or a `SqlSource`.

    A URL needs a table or a query; a file path takes neither (BadInputError either way)."""
    if isinstance(data, SqlSource):
        return data
    if is_sql_url(data):
        _check_dialect(str(data))
        return SqlSource(str(data), table=table, query=query)
    if table is not None or query is not None:
        raise BadInputError(
            f"--table/--query read from a database: --data must then be a SQLAlchemy URL "
            f"(e.g. sqlite:///fab.db). Received: --data {data}"
        )
    return Path(data)


def _check_dialect(url: str) -> None:
    import sqlalchemy as sa

    try:
        sa.make_url(url).get_dialect()
    except (sa.exc.NoSuchModuleError, ImportError) as err:  # NoSuchModuleError is an ArgumentError
        scheme = url.split("://", 1)[0]
        raise BadInputError(
            f"--data {scheme}://…: no SQLAlchemy dialect or driver {scheme!r} is installed here "
            f"({err}). Files are read from local paths (.parquet, .csv); databases through "
            "SQLAlchemy URLs such as sqlite:///fab.db or postgresql+psycopg://user@host/db"
        ) from err
    except sa.exc.ArgumentError as err:
        raise BadInputError(f"--data looks like a URL but is not a SQLAlchemy URL ({err}). Received: {url}") from err


def read_sql(source: SqlSource, *, text_columns: Sequence[str] = (schema.ZONE,)) -> pd.DataFrame:
    """Read `source` with pandas as the database returns it; `text_columns` present are cast to
    text (zone ids stored as numbers stay their digits). Unreachable database, missing table,
    failing query → BadInputError naming the source (password hidden)."""
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(source.url)
    except Exception as err:  # noqa: BLE001 - bad URL or missing driver
        raise BadInputError(f"{source}: cannot open ({type(err).__name__}: {err})") from err
    try:
        with engine.connect() as conn:
            if source.table is not None:
                if not sa.inspect(conn).has_table(source.table):
                    tables = sa.inspect(conn).get_table_names()
                    raise BadInputError(f"{source}: no table {source.table!r}; tables here: {tables}")
                df = pd.read_sql_table(source.table, conn)
            else:
                df = pd.read_sql_query(sa.text(source.query or ""), conn)
    except BadInputError:
        raise
    except (sa.exc.SQLAlchemyError, pd.errors.DatabaseError) as err:
        cause = err.__cause__ if isinstance(err, pd.errors.DatabaseError) and err.__cause__ else err
        message = str(getattr(cause, "orig", None) or cause).splitlines()[0]
        raise BadInputError(f"{source}: cannot read ({type(cause).__name__}: {message})") from err
    finally:
        engine.dispose()
    for name in text_columns:
        if name in df.columns:
            df[name] = df[name].map(lambda v: v if v is None or isinstance(v, str) else str(v))
    logger.debug("read %s: %d rows × %d columns", source, len(df), df.shape[1])
    return df


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
    path: str | os.PathLike[str] | SqlSource, *, text_columns: Sequence[str] = (schema.ZONE,)
) -> pd.DataFrame:
    """Read a Parquet or CSV table as it is in the file.

    `text_columns` are read from a CSV as text, exactly as written (zone ids). Missing file,
    unknown extension, empty (0-byte) or unreadable file → BadInputError naming the file. A file
    with a header but no rows is returned as an empty frame: the validator reports it. A
    `SqlSource` is read by `read_sql`.
    """
    if isinstance(path, SqlSource):
        return read_sql(path, text_columns=text_columns)
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
    from fabray.files import atomic_path

    path = Path(path)
    fmt = table_format(path)
    suffix = ".csv.gz" if path.name.lower().endswith(".csv.gz") else path.suffix
    with atomic_path(path, suffix) as tmp:  # pandas picks the compression by the suffix
        if fmt == "parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)
    logger.debug("wrote %s: %d rows", path, len(df))
    return path


def _is_default_index(index: pd.Index) -> bool:
    return isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1 and index.name is None
