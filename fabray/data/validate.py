"""Check a zone-minute table against the data contract (DESIGN §2) and name every problem.

`validate_frame` looks at a frame as read from a file (text columns and all) and returns a
`ValidationReport`: every kind of error found, each with its column and the rows where it occurs,
plus warnings (gaps in a zone's minutes). `load_validated` is what every command that reads data
calls: read, validate, refuse with all the errors, or return a clean frame.

Rows are numbered as a person sees them in the file: row 1 is the first data row under the
header (so in a CSV, row N is on line N + 1). Everything is vectorized: a 781,163-row file is
checked in about a second or two.

Optional columns (`schema.OPTIONAL_COLUMNS`) are not "extra": the plan columns (`lots_planned`,
`pm_planned`) are checked like counts (numbers, never empty, finite, >= 0) and `cause` must be text
whose non-empty values are among `schema.CAUSES` (empty or null means "no cause"). A file without
them validates as before; when present, the clean frame keeps them after the features.

Why one file of ~610 lines: one validator makes one pass over the frame in the data contract's
order, every check writing into one report (`_Collector`) and sharing the column mapping and the
cleaned arrays of the checks before it; split apart, that state would travel between modules.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from fabray import schema
from fabray.data import io
from fabray.errors import BadInputError

logger = logging.getLogger(__name__)

ROW_CONVENTION = (
    "Row numbers count data rows from 1 (the header is not counted; in a CSV, row N is on line N+1)."
)
#: Cell texts read as "no value" in numeric columns (compared stripped and lower-cased).
MISSING_TOKENS: frozenset[str] = frozenset({"", "nan", "na", "n/a", "null", "none"})
DEFAULT_MAX_ROWS = 50
_MINUTE_US = 60_000_000  # one minute in microseconds


# ---------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class ColumnSpec:
    """Which column of the file holds each contract column (DESIGN §2: names are configurable).

    `names` maps a contract name (`schema.COLUMNS` or `schema.OPTIONAL_COLUMNS`) to the name used
    in the file; contract names not mentioned are expected under their own name.
    """

    names: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        known = (*schema.COLUMNS, *schema.OPTIONAL_COLUMNS)
        unknown = sorted(set(self.names) - set(known))
        if unknown:
            raise BadInputError(
                f"column mapping names unknown contract columns {unknown}; known: "
                f"{list(known)}. Received: {dict(self.names)}"
            )

    def file_name(self, contract_name: str) -> str:
        """The name of contract column `contract_name` in the file."""
        return self.names.get(contract_name, contract_name)


@dataclass(frozen=True)
class Issue:
    """One kind of problem in one column, with the rows where it occurs.

    `rows` are 1-based data rows (row 1 = first row under the header), at most the validator's
    `max_rows` of them; `count` is how many rows have the problem in all; `details` holds one
    line per listed row ("row 17: 'abc'"), in the same order as `rows`.
    """

    kind: str
    message: str
    column: str | None = None
    rows: list[int] = field(default_factory=list)
    count: int = 0
    details: list[str] = field(default_factory=list)

    def format(self, level: str) -> str:
        """'LEVEL: message [kind]', then the listed rows, then '... and N more' if capped."""
        lines = [f"{level}: {self.message} [{self.kind}]"]
        lines += [f"    {line}" for line in self.details]
        if self.count > len(self.details) and self.details:
            lines.append(f"    ... and {self.count - len(self.details)} more")
        return "\n".join(lines)


@dataclass(frozen=True)
class ValidationReport:
    """What `validate_frame` found: errors (the file breaks the contract) and warnings."""

    errors: list[Issue]
    warnings: list[Issue]
    n_rows: int
    n_zones: int
    first_timestamp: pd.Timestamp | None = None
    last_timestamp: pd.Timestamp | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        """'OK: N rows, Z zones, from .. to ..' (meaningful when `ok`)."""
        return (
            f"OK: {self.n_rows} rows, {self.n_zones} zones, "
            f"from {self.first_timestamp} to {self.last_timestamp}"
        )

    def format(self, source: str = "data") -> str:
        """A report a fab engineer can act on: errors, then warnings, one block per issue."""
        if self.errors:
            head = f"{source}: {len(self.errors)} problem(s) found, listed below. {ROW_CONVENTION}"
        else:
            head = f"{source}: {self.summary()}"
            if self.warnings:
                head += f". {ROW_CONVENTION}"
        blocks = [head]
        blocks += [issue.format("ERROR") for issue in self.errors]
        blocks += [issue.format("WARNING") for issue in self.warnings]
        return "\n".join(blocks)


# ---------------------------------------------------------------------------- entry points


def validate_frame(
    df: pd.DataFrame,
    columns: ColumnSpec | None = None,
    *,
    max_rows: int | None = DEFAULT_MAX_ROWS,
) -> ValidationReport:
    """Check `df` (as read by `fabray.data.io.read_table`) against the data contract.

    Every kind of error is reported, each with the rows where it occurs (at most `max_rows` rows
    listed per issue; None lists all). Gaps in a zone's minutes are warnings, not errors.
    """
    report, _ = _validate(df, columns or ColumnSpec(), max_rows)
    return report


def load_validated(
    path: str | os.PathLike[str],
    columns: ColumnSpec | None = None,
    *,
    max_rows: int | None = DEFAULT_MAX_ROWS,
) -> pd.DataFrame:
    """Read and validate a data file; raise BadInputError listing every error, or return it clean.

    The clean frame has the contract's column names in `schema.COLUMNS` order: `timestamp` as
    datetime64, `zone` as str, the features as float64 (`transport_time_s` NaN only where
    completions == 0), then the optional columns the file has, in `schema.OPTIONAL_COLUMNS`
    order (plan columns float64, `cause` str with "" for none); rows sorted by (zone, timestamp)
    with a fresh RangeIndex. Warnings (gaps) are logged.
    """
    columns = columns or ColumnSpec()
    df = io.read_table(
        path, text_columns=(columns.file_name(schema.ZONE), columns.file_name(schema.CAUSE))
    )
    report, clean = _validate(df, columns, max_rows)
    if not report.ok or clean is None:
        raise BadInputError(report.format(source=str(path)))
    for issue in report.warnings:
        logger.warning("%s: %s", path, issue.format("WARNING"))
    logger.info("%s: %s", path, report.summary())
    return clean


# ---------------------------------------------------------------------------- the checks


@dataclass
class _Collector:
    """Gathers issues; turns 0-based positions into 1-based rows with per-row details."""

    max_rows: int | None
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)

    def add(
        self,
        kind: str,
        message: str,
        column: str | None = None,
        positions: np.ndarray | None = None,
        detail: Callable[[int], str] | None = None,
        *,
        warning: bool = False,
        row_prefix: bool = True,
    ) -> None:
        rows: list[int] = []
        details: list[str] = []
        count = 0
        if positions is not None:
            positions = np.asarray(positions, dtype=np.int64)
            count = len(positions)
            shown = positions if self.max_rows is None else positions[: self.max_rows]
            rows = [int(p) + 1 for p in shown]
            details = [
                (f"row {r}: {detail(int(p))}" if row_prefix else detail(int(p))) if detail else f"row {r}"
                for p, r in zip(shown, rows)
            ]
        issue = Issue(kind=kind, message=message, column=column, rows=rows, count=count, details=details)
        (self.warnings if warning else self.errors).append(issue)


def _validate(
    df: pd.DataFrame, spec: ColumnSpec, max_rows: int | None
) -> tuple[ValidationReport, pd.DataFrame | None]:
    if max_rows is not None and max_rows < 1:
        raise BadInputError(f"max_rows must be at least 1. Received: max_rows={max_rows}")
    out = _Collector(max_rows)
    n = len(df)
    name = {c: spec.file_name(c) for c in (*schema.COLUMNS, *schema.OPTIONAL_COLUMNS)}  # contract → file
    present = {c for c in name if name[c] in df.columns}

    _check_columns(df, name, out)
    if df.columns.duplicated().any():
        df = df.loc[:, ~df.columns.duplicated()]  # reported above; check the first of each
    if n == 0:
        out.add("no_rows", "the file has no data rows (only a header, or nothing at all)")
        return ValidationReport(out.errors, out.warnings, 0, 0), None

    ts = ts_ok = None
    if schema.TIMESTAMP in present:
        ts, ts_ok = _check_timestamps(df[name[schema.TIMESTAMP]], name[schema.TIMESTAMP], out)
    zone = zone_ok = None
    if schema.ZONE in present:
        zone, zone_ok = _check_zones(df[name[schema.ZONE]], name[schema.ZONE], out)

    values: dict[str, np.ndarray] = {}  # contract name → float64 [N]
    missing: dict[str, np.ndarray] = {}  # contract name → bool [N]: empty cell
    for feature in (*schema.FEATURES, *schema.PLAN_COLUMNS):
        if feature in present:
            parsed = _check_numeric(df[name[feature]], name[feature], out)
            if parsed is not None:
                values[feature], missing[feature] = parsed
    _check_values(values, missing, name, out)
    cause = _check_cause(df[name[schema.CAUSE]], name[schema.CAUSE], out) if schema.CAUSE in present else None

    n_zones, first, last = 0, None, None
    if ts is not None and zone is not None:
        keys_ok = ts_ok & zone_ok
        n_zones = _check_keys(ts, zone, keys_ok, name, out)
        if keys_ok.any():
            first, last = ts[keys_ok].min(), ts[keys_ok].max()
    report = ValidationReport(out.errors, out.warnings, n, n_zones, first, last)
    if not report.ok:
        return report, None
    assert ts is not None and zone is not None  # no errors means both columns were present
    return report, _clean_frame(ts, zone, values, cause)


def _check_columns(df: pd.DataFrame, name: dict[str, str], out: _Collector) -> None:
    expected = [name[c] for c in schema.COLUMNS]
    optional = [name[c] for c in schema.OPTIONAL_COLUMNS]
    for contract in schema.COLUMNS:
        if name[contract] not in df.columns:
            out.add(
                "missing_column",
                f"column '{name[contract]}' is missing (the file must have the columns "
                f"{', '.join(expected)})",
                name[contract],
            )
    for column in df.columns:
        if column in expected or column in optional:
            continue
        hint = ""
        if str(column).startswith("Unnamed:") or column == "index":
            hint = "; it looks like a saved row index: write the file without it (pandas: index=False)"
        out.add("extra_column", f"unexpected column '{column}' is not part of the data contract "
                f"(optional columns: {', '.join(optional)}){hint}", str(column))
    duplicated = df.columns[df.columns.duplicated()]
    for column in dict.fromkeys(duplicated):
        out.add("duplicate_column", f"column '{column}' appears more than once", str(column))


def _check_timestamps(
    s: pd.Series, column: str, out: _Collector
) -> tuple[pd.Series | None, np.ndarray]:
    """→ parsed timestamps (datetime64, NaT where bad) and a mask of usable rows."""
    n = len(s)
    if ptypes.is_datetime64_any_dtype(s.dtype):
        parsed = s.reset_index(drop=True)
        empty = parsed.isna().to_numpy(copy=True)
    elif ptypes.is_numeric_dtype(s.dtype) or ptypes.is_timedelta64_dtype(s.dtype):
        out.add(
            "wrong_dtype",
            f"column '{column}' holds {s.dtype} values, not dates and times; write ISO-8601 "
            f"timestamps such as 2024-03-01 06:00:00",
            column,
        )
        return None, np.zeros(n, dtype=bool)
    else:
        text = s.reset_index(drop=True)
        empty = text.isna().to_numpy(copy=True)
        try:
            parsed = pd.to_datetime(text, format="ISO8601", errors="coerce")
        except (ValueError, TypeError):  # mixed UTC offsets (or offsets and none)
            parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
            out.add(
                "mixed_timezones",
                f"column '{column}': timestamps carry different UTC offsets (or some have none); "
                f"all were converted to UTC (those without an offset were taken as UTC)",
                column,
                warning=True,
            )
        blank = ~empty & parsed.isna().to_numpy()
        if blank.any():  # whitespace-only cells are empty, not bad
            blank_pos = np.flatnonzero(blank)
            is_blank = text.iloc[blank_pos].astype(str).str.strip().eq("").to_numpy()
            empty[blank_pos[is_blank]] = True
        bad = ~empty & parsed.isna().to_numpy()
        if bad.any():
            pos = np.flatnonzero(bad)
            out.add(
                "bad_timestamp",
                f"column '{column}': {len(pos)} value(s) are not timestamps "
                f"(expected ISO-8601 such as 2024-03-01 06:00:00)",
                column,
                pos,
                lambda p: repr(str(text.iloc[p])),
            )
    if empty.any():
        pos = np.flatnonzero(empty)
        out.add("missing_value", f"column '{column}': {len(pos)} row(s) have no timestamp",
                column, pos)
    ok = ~parsed.isna().to_numpy()
    off_minute = np.zeros(n, dtype=bool)
    off_minute[ok] = (parsed[ok] != parsed[ok].dt.floor("min")).to_numpy()
    if off_minute.any():
        pos = np.flatnonzero(off_minute)
        out.add(
            "not_minute_resolution",
            f"column '{column}': {len(pos)} timestamp(s) are not on a whole minute (one row per "
            f"zone-minute expected, seconds = 0)",
            column,
            pos,
            lambda p: str(parsed.iloc[p]),
        )
    return parsed, ok


def _check_zones(s: pd.Series, column: str, out: _Collector) -> tuple[pd.Series | None, np.ndarray]:
    """→ zone ids as str (NaN where empty) and a mask of usable rows."""
    n = len(s)
    s = s.reset_index(drop=True)
    if ptypes.is_integer_dtype(s.dtype):
        empty = s.isna().to_numpy(copy=True)
        zone = s.astype("string").astype(str)
    elif ptypes.is_string_dtype(s.dtype) or ptypes.is_object_dtype(s.dtype) or isinstance(
        s.dtype, pd.CategoricalDtype
    ):
        empty = s.isna().to_numpy(copy=True)
        zone = s.astype(str)
        empty |= zone.str.strip().eq("").to_numpy()
    else:
        out.add(
            "wrong_dtype",
            f"column '{column}' holds {s.dtype} values; zone ids must be text (or whole numbers)",
            column,
        )
        return None, np.zeros(n, dtype=bool)
    if empty.any():
        pos = np.flatnonzero(empty)
        out.add("missing_value", f"column '{column}': {len(pos)} row(s) have no zone id", column, pos)
    return zone, ~empty


def _check_numeric(
    s: pd.Series, column: str, out: _Collector
) -> tuple[np.ndarray, np.ndarray] | None:
    """→ (values float64 [N], empty-cell mask [N]); reports wrong dtypes and text cells."""
    s = s.reset_index(drop=True)
    dtype = s.dtype
    if (
        ptypes.is_bool_dtype(dtype)
        or ptypes.is_datetime64_any_dtype(dtype)
        or ptypes.is_timedelta64_dtype(dtype)
        or ptypes.is_complex_dtype(dtype)
    ):
        out.add("wrong_dtype", f"column '{column}' holds {dtype} values; expected numbers", column)
        return None
    if ptypes.is_numeric_dtype(dtype):
        values = s.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)  # [N]
        return values, np.isnan(values)

    if isinstance(dtype, pd.CategoricalDtype):
        s = s.astype(object)
    empty = s.isna().to_numpy(copy=True)
    try:
        values = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):  # odd Python objects: judge them by their text
        values = pd.to_numeric(s.astype(str), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    suspect = np.flatnonzero(np.isnan(values) & ~empty)  # cells that did not parse (few)
    if len(suspect):
        texts = s.iloc[suspect].astype(str).str.strip()
        is_missing = texts.str.lower().isin(MISSING_TOKENS).to_numpy()
        empty[suspect[is_missing]] = True
        bad = suspect[~is_missing]
        if len(bad):
            out.add(
                "text_in_numeric",
                f"column '{column}': {len(bad)} cell(s) hold text where a number is expected",
                column,
                bad,
                lambda p: repr(str(s.iloc[p])),
            )
    return values, empty


def _check_values(
    values: dict[str, np.ndarray], missing: dict[str, np.ndarray], name: dict[str, str], out: _Collector
) -> None:
    """NaN/inf where not allowed, negative counts and measurements, fractions outside [0, 1]."""
    completions = values.get("completions")
    for feature, v in values.items():
        column = name[feature]

        def show(p: int, v: np.ndarray = v) -> str:
            return f"{v[p]:g}"

        empty = missing[feature]
        if feature in schema.NULLABLE_FEATURES:
            allowed = (completions == 0) if completions is not None else np.zeros_like(empty)
            bad_empty = np.flatnonzero(empty & ~allowed)
            if len(bad_empty):
                comp_name = name["completions"]

                def show_completions(p: int) -> str:
                    if completions is None:
                        return f"{column} is empty; column '{comp_name}' is missing"
                    c = completions[p]
                    return f"{column} is empty, {comp_name} = {'(empty)' if np.isnan(c) else f'{c:g}'}"

                out.add(
                    "missing_value",
                    f"column '{column}': {len(bad_empty)} row(s) are empty although transports "
                    f"completed (empty is allowed only where {comp_name} = 0)",
                    column,
                    bad_empty,
                    show_completions,
                )
        elif empty.any():
            pos = np.flatnonzero(empty)
            out.add("missing_value", f"column '{column}': {len(pos)} row(s) are empty (NaN); "
                    f"this column must always have a value", column, pos)
        infinite = np.flatnonzero(np.isinf(v))
        if len(infinite):
            out.add("infinite_value", f"column '{column}': {len(infinite)} value(s) are infinite",
                    column, infinite, show)
        broken = schema.range_violations(feature, v, physical=False)  # the contract's one range rule
        negative = np.flatnonzero(broken["below_zero"])
        if len(negative) and (feature in schema.COUNT_FEATURES or feature in schema.PLAN_COLUMNS):
            out.add("negative_value", f"column '{column}': {len(negative)} negative count(s) "
                    f"(counts must be >= 0)", column, negative, show)
        elif len(negative) and feature in schema.MEASUREMENT_FEATURES:
            out.add("negative_value", f"column '{column}': {len(negative)} negative value(s) "
                    f"(must be >= 0)", column, negative, show)
        if feature in schema.FRACTION_FEATURES:
            outside = np.flatnonzero(broken["below_zero"] | broken["above_one"])
            if len(outside):
                out.add("fraction_out_of_range", f"column '{column}': {len(outside)} value(s) "
                        f"outside [0, 1] (a fraction)", column, outside, show)


def _check_cause(s: pd.Series, column: str, out: _Collector) -> np.ndarray | None:
    """→ the causes as str [N] ("" for none: empty, null or whitespace), or None if unusable.

    Text whose non-empty values are in schema.CAUSES; a column with no value at all (a CSV whose
    causes are all empty reads as numbers) is fine.
    """
    s = s.reset_index(drop=True)
    empty = s.isna().to_numpy(copy=True)
    is_text = ptypes.is_string_dtype(s.dtype) or ptypes.is_object_dtype(s.dtype) or isinstance(
        s.dtype, pd.CategoricalDtype
    )
    if not is_text and not empty.all():
        out.add(
            "wrong_dtype",
            f"column '{column}' holds {s.dtype} values; expected text: one of "
            f"{', '.join(schema.CAUSES)}, or empty for no cause",
            column,
        )
        return None
    text = s.astype(object).where(~empty, "").astype(str).str.strip()
    text = text.where(~text.str.lower().isin(MISSING_TOKENS), "")  # 'null', 'None', 'NaN': no cause
    bad = np.flatnonzero(~text.isin(["", *schema.CAUSES]).to_numpy())
    if len(bad):
        values = sorted(set(text.iloc[bad]))
        shown = ", ".join(repr(v) for v in values[:10]) + (" ..." if len(values) > 10 else "")
        out.add(
            "unknown_cause",
            f"column '{column}': {len(bad)} value(s) are not a known cause ({shown}); expected "
            f"one of {', '.join(schema.CAUSES)}, or empty for no cause",
            column,
            bad,
            lambda p: repr(str(s.iloc[p])),
        )
        return None
    return text.to_numpy(dtype=object)


def _check_keys(
    ts: pd.Series, zone: pd.Series, keys_ok: np.ndarray, name: dict[str, str], out: _Collector
) -> int:
    """Duplicate (zone, timestamp), time going backwards within a zone; gaps as warnings.

    Returns the number of distinct zones among rows with a usable zone and timestamp.
    """
    pos = np.flatnonzero(keys_ok)  # file positions of rows with a usable zone and timestamp
    if len(pos) == 0:
        return 0
    ts_ok = ts.iloc[pos]
    if ts_ok.dt.tz is not None:
        ts_ok = ts_ok.dt.tz_convert("UTC").dt.tz_localize(None)
    t = ts_ok.to_numpy(dtype="datetime64[us]").view(np.int64)  # [M] µs since epoch
    codes, zones = pd.factorize(zone.iloc[pos].to_numpy())  # [M]
    zc, tc = name[schema.ZONE], name[schema.TIMESTAMP]
    if len(pos) < 2:
        return len(zones)

    def when(p: int) -> str:
        return str(ts.iloc[p])

    # Out of order: within each zone, in file order, a timestamp earlier than the zone's previous row.
    order = np.argsort(codes, kind="stable")
    same = codes[order][1:] == codes[order][:-1]
    back = same & (t[order][1:] < t[order][:-1])
    if back.any():
        later, before = _pairs(pos[order[1:][back]], pos[order[:-1][back]], out.max_rows)
        out.add(
            "out_of_order",
            f"'{tc}' goes backwards within a zone in {len(later)} row(s): each zone's rows must "
            f"be in time order (zones may be interleaved)",
            tc,
            later,
            lambda p: f"zone {zone.iloc[p]} at {when(p)} comes after row {before[p] + 1} "
            f"({when(before[p])})",
        )

    # Duplicates and gaps: sort by (zone, time), stable so ties keep file order.
    order = np.lexsort((t, codes))
    t_sorted, c_sorted = t[order], codes[order]
    same = c_sorted[1:] == c_sorted[:-1]
    step = np.diff(t_sorted)  # [M - 1] µs
    dup = same & (step == 0)
    if dup.any():
        later, first = _pairs(pos[order[1:][dup]], pos[order[:-1][dup]], out.max_rows)
        out.add(
            "duplicate_key",
            f"{len(later)} row(s) repeat a ({zc}, {tc}) pair of an earlier row: one row per "
            f"zone-minute expected",
            None,
            later,
            lambda p: f"zone {zone.iloc[p]} at {when(p)} is also row {first[p] + 1}",
        )
    gap = same & (step >= 2 * _MINUTE_US)
    if gap.any():
        before_gap, after_gap = pos[order[:-1][gap]], pos[order[1:][gap]]
        lengths = step[gap] // _MINUTE_US - 1  # missing minutes
        k = len(after_gap) if out.max_rows is None else out.max_rows  # only these are described
        gap_of = {int(a): (int(b), int(m)) for a, b, m in zip(after_gap[:k], before_gap[:k], lengths[:k])}
        n_zones = len(np.unique(c_sorted[1:][gap]))
        minute = pd.Timedelta(minutes=1)

        def describe(p: int) -> str:
            b, m = gap_of[p]
            start, end = ts.iloc[b] + minute, ts.iloc[p] - minute
            span = f"at {start}" if m == 1 else f"from {start} to {end}"
            return f"zone {zone.iloc[p]}: {m} minute(s) missing, {span} (between rows {b + 1} and {p + 1})"

        out.add(
            "gap",
            f"{len(after_gap)} gap(s) in {n_zones} zone(s), {int(lengths.sum())} missing minute(s) "
            f"in all; gaps are allowed (windows stop at them), nothing is filled in",
            None,
            after_gap,
            describe,
            warning=True,
            row_prefix=False,
        )
    return len(zones)


def _pairs(later: np.ndarray, earlier: np.ndarray, limit: int | None) -> tuple[np.ndarray, dict[int, int]]:
    """Sort `later` (file positions) and map the first `limit` of them to their `earlier` partner."""
    order = np.argsort(later, kind="stable")
    later, earlier = later[order], earlier[order]
    k = len(later) if limit is None else limit
    return later, dict(zip(later[:k].tolist(), earlier[:k].tolist()))


def _clean_frame(
    ts: pd.Series, zone: pd.Series, values: dict[str, np.ndarray], cause: np.ndarray | None
) -> pd.DataFrame:
    frame = pd.DataFrame({schema.TIMESTAMP: ts, schema.ZONE: zone.astype(str)})
    for feature in (*schema.FEATURES, *schema.PLAN_COLUMNS):
        if feature in values:  # the plan columns only when the file has them
            frame[feature] = values[feature]  # float64 [N]
    if cause is not None:
        frame[schema.CAUSE] = pd.array(cause, dtype="str")
    return frame.sort_values([schema.ZONE, schema.TIMESTAMP], kind="stable", ignore_index=True)
