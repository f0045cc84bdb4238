"""Windows at scale, by index (DESIGN §1–2): the series stays one [N, F] array, windows are rows.

A sample is the window of `lookback` minutes of one zone ending at minute t; its target comes
from minutes t+1 … t+horizon. Nothing here materializes all windows (for the `poc` data that
would be 3.75 GB): `prepare` returns the raw series as ONE contiguous float32 array, all zones
concatenated in (zone, time) order, and each sample is addressed by the row of its END minute.
`gather_windows` builds a batch of windows from their end rows on the fly.

Segments. Rows of one zone whose timestamps follow each other minute by minute form a segment;
a zone boundary or a gap (missing minutes) starts a new one. A window (its input and, when it
needs a label, its target horizon) never crosses a segment boundary.

Splits (by time only). Within each zone, the zone's minutes from its first to its last timestamp
are cut into train [0, a), val [a, b), test [b, T) with a = ⌊T·train_fraction⌋ and
b = ⌊T·(train_fraction + val_fraction)⌋. A window belongs to a split when all its minutes, input
and target, lie in that split's span. So consecutive splits' window ends are at least
lookback + horizon minutes apart (the last train window's target ends before the first val
window's input starts): that gap is exactly what keeps any minute out of two splits.

Raw units. The series is not scaled here: the scaler's statistics are fitted here and travel
inside every model (its first layer, `fabray.models.layers.scaling.FeatureScaling`), so windows are raw
at every boundary.

Fitting. The scaler and each zone's nominal transport time are fitted on the train span's rows
(the rows, not only the window ends). `prepare(df, task, split=None, scaler=..., ...)` is the
scoring mode for a stored model: one split "all" with every end that has a full input window;
its targets may be NaN (at a segment's tail, or where the horizon has no observed minute).

Transport time as an input: an empty (NaN) minute is carried forward from the zone's last value,
or the zone's nominal at its start. As a target its NaN minutes are skipped (`future_mean`).

Why one file of ~500 lines: `prepare` is one pipeline (sort, fill, context columns, labels,
splits, scaler and nominal fit) whose private helpers serve only it, beside the few index
functions (`gather_windows`, `valid_window_ends`, ...) that every consumer of windows shares.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fabray import schema
from fabray.config import SplitConfig, TaskConfig
from fabray.data.context import ContextSpec, iter_context_columns
from fabray.data.scaler import Scaler, stack_columns
from fabray.data.targets import delay_events, delay_targets
from fabray.errors import BadInputError

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
ALL = "all"  # the one split of the scoring mode (`split=None`)
MINUTE_NS = 60 * 1_000_000_000


@dataclass(frozen=True, eq=False)
class PreparedData:
    """The raw series, its targets and its splits, addressed by window END row."""

    features: np.ndarray  # [N, F] float32, RAW units (the models scale), (zone, time) order, NaN-free
    target: np.ndarray  # [N] float32: delay_event 0/1 (task "event"); NaN = undefined
    delay_s: np.ndarray  # [N] float32 mean future delay of the window ending at row i; NaN = undefined
    zone_codes: np.ndarray  # [N] int32 index into `zones`
    zones: tuple[str, ...]
    timestamps: np.ndarray  # [N] datetime64[ns]
    splits: dict[str, np.ndarray]  # split name → int64 sorted window END rows (all valid)
    scaler: Scaler
    nominal_s: dict[str, float]
    lookback: int
    horizon: int
    minute_delay_s: np.ndarray | None = None  # [N] float32 this minute's transport time (carried) − nominal
    cause: np.ndarray | None = None  # [N] object: the data's diagnostic `cause` ("" none), None without it
    train_target: np.ndarray | None = None  # [N] float32 what models are fitted on (early-warning label)
    context: ContextSpec | None = None  # the context columns after schema.FEATURES (None: none)

    @property
    def n_rows(self) -> int:
        return int(self.features.shape[0])

    @property
    def input_columns(self) -> tuple[str, ...]:
        """The names of `features`' columns: schema.FEATURES, then the context columns."""
        return tuple(self.scaler.features)

    @property
    def fit_target(self) -> np.ndarray:
        """The target models are trained on (`train_target`, else `target`)."""
        return self.target if self.train_target is None else self.train_target


# ---------------------------------------------------------------------------- windows


def gather_windows(features: np.ndarray, ends: np.ndarray, lookback: int) -> np.ndarray:
    """Windows [B, L, F] of `features` [N, F] ending at rows `ends` [B] (inclusive), oldest first."""
    ends = np.asarray(ends)
    if ends.ndim != 1 or not (ends.size == 0 or np.issubdtype(ends.dtype, np.integer)):
        raise ValueError(f"ends must be a 1-D integer array. Received: shape={ends.shape}, dtype={ends.dtype}")
    if lookback < 1:
        raise ValueError(f"lookback must be >= 1. Received: lookback={lookback}")
    if ends.size and (ends.min() < lookback - 1 or ends.max() >= len(features)):
        raise ValueError(
            f"window ends must lie in [{lookback - 1}, {len(features) - 1}] for lookback={lookback} "
            f"and {len(features)} rows. Received: min={ends.min()}, max={ends.max()}"
        )
    rows = ends.astype(np.int64)[:, None] + np.arange(1 - lookback, 1, dtype=np.int64)  # [B, L]
    return features[rows]  # [B, L, F]


def segment_positions(
    zone_codes: np.ndarray, timestamps: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(before, after) [N] int64: rows of the same segment before / after each row.

    Rows must be sorted by (zone, time). A segment ends at a zone change or where the next
    timestamp is not exactly one minute later (a gap).
    """
    zone_codes = np.asarray(zone_codes)
    ts = np.asarray(timestamps).astype("datetime64[ns]").astype(np.int64)  # [N]
    n = len(ts)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.ones(n, dtype=bool)  # row i starts a segment
    starts[1:] = (zone_codes[1:] != zone_codes[:-1]) | (np.diff(ts) != MINUTE_NS)
    start_rows = np.flatnonzero(starts)  # [S]
    stop_rows = np.append(start_rows[1:], n)  # [S] exclusive
    seg = np.cumsum(starts) - 1  # [N] segment id
    rows = np.arange(n, dtype=np.int64)
    return rows - start_rows[seg], stop_rows[seg] - 1 - rows


def valid_window_ends(
    zone_codes: np.ndarray, timestamps: np.ndarray, lookback: int, horizon: int = 0
) -> np.ndarray:
    """int64 rows that end a full `lookback` window with `horizon` more minutes in its segment.

    horizon=0: every end with a complete input (for scoring); horizon=H: also a complete target.
    """
    before, after = segment_positions(zone_codes, timestamps)
    return np.flatnonzero((before >= lookback - 1) & (after >= horizon)).astype(np.int64)


def latest_window_ends(prepared: PreparedData) -> dict[str, int]:
    """Each zone's last row that ends a full input window (zones with none are left out)."""
    ends = valid_window_ends(prepared.zone_codes, prepared.timestamps, prepared.lookback)
    codes = prepared.zone_codes[ends]
    # ends are sorted and zones are contiguous: the last end of each zone code
    last = np.flatnonzero(np.append(codes[1:] != codes[:-1], True)) if len(ends) else []
    return {prepared.zones[int(codes[i])]: int(ends[i]) for i in last}


def ends_with_target(prepared: PreparedData, ends: np.ndarray) -> np.ndarray:
    """The subset of `ends` whose target is defined (e.g. to evaluate the "all" split)."""
    ends = np.asarray(ends, dtype=np.int64)
    return ends[~np.isnan(prepared.target[ends])]


# ---------------------------------------------------------------------------- prepare


def prepare(
    df: pd.DataFrame,
    task: TaskConfig,
    split: SplitConfig | None,
    *,
    scaler: Scaler | None = None,
    nominal_s: Mapping[str, float] | None = None,
    context: ContextSpec | None = None,
) -> PreparedData:
    """Sort, segment, fill, fit the scaler on, label and split a validated zone-minute frame.

    `split`: a SplitConfig → splits "train"/"val"/"test" (ends with a defined target, windows
    inside their split's span); None → scoring mode: one split "all" of every end with a full
    input window, and `scaler` is required (a stored model's).
    `scaler` / `nominal_s` given → reused (a stored model's), else fitted on the train span.
    Nominal per zone: `nominal_s`, then `task.nominal_transport_time_s`, then the median
    transport_time_s over the zone's train-span rows.
    `context`: the context columns appended after the 12 features (`fabray.data.context`); a
    given scaler must have been fitted on exactly these input columns.
    `train_target` is the early-warning label (`task.early_warning_min`) of an "event" task.
    """
    lookback, horizon = task.lookback, task.horizon
    if split is None and scaler is None:
        raise ValueError(
            "prepare(split=None) scores with a fitted model: pass its scaler= (and nominal_s=)"
        )
    if split is not None and split.train_fraction + split.val_fraction >= 1:
        raise BadInputError(
            "split: train_fraction + val_fraction must be < 1 to leave a test split. Received: "
            f"train_fraction={split.train_fraction}, val_fraction={split.val_fraction}"
        )
    columns = (*schema.FEATURES, *(context.column_names() if context is not None else ()))
    if scaler is not None and tuple(scaler.features) != columns:
        raise BadInputError(
            f"the scaler was fitted on input columns {list(scaler.features)}, expected "
            f"{list(columns)}"
        )

    # Memory: the raw series never exists as an [N, F] float64 block; each raw column ([N]
    # float64, read from the frame in (zone, time) order) is copied into the float32 output and
    # dropped, so the peak beyond the frame is the output plus a few [N] vectors.
    zone_codes, zones, timestamps, order = _sorted_index(df)  # [N], (Z), [N], [N]
    _check_features(df)
    n = len(timestamps)
    transport = _sorted_column(df, schema.TRANSPORT_TIME, order)  # [N] with NaN where no completions

    # rows the scaler and the nominal transport times are fitted on
    if split is not None:
        span = _split_span(zone_codes, timestamps, split)  # [N] 0 train, 1 val, 2 test
        fit_rows = span == 0
    else:
        span = None
        fit_rows = None

    nominal = _resolve_nominal(zones, zone_codes, transport, fit_rows, task, nominal_s)
    nominal_per_row = np.asarray([nominal[z] for z in zones], dtype=np.float64)[zone_codes]  # [N]

    # input: carry an empty transport time forward within the zone, the nominal at its start
    filled = _ffill_within(transport, zone_codes)
    filled = np.where(np.isnan(filled), nominal_per_row, filled)

    plan = _plan_columns(df, context, order) if context is not None and not context.empty else None

    def observed(name: str) -> np.ndarray:  # [N] float64, transport time carried forward
        return filled if name == schema.TRANSPORT_TIME else _sorted_column(df, name, order)

    def raw_columns() -> Iterator[np.ndarray]:  # the [N] raw inputs in `columns` order
        yield from (observed(name) for name in schema.FEATURES)
        if context is not None and not context.empty:
            yield from iter_context_columns(context, zone_codes, zones, timestamps, observed,
                                            nominal_per_row, plan)

    features, scaler = stack_columns(raw_columns(), n, columns, fit_rows=fit_rows, scaler=scaler)

    # targets: the horizon after row i; NaN where it leaves the segment (zone change or gap).
    # future_mean over the concatenated series equals it per segment wherever after >= horizon
    # (those rows' horizons lie inside their segment); the rest are set to NaN.
    before, after = segment_positions(zone_codes, timestamps)
    delay, event = horizon_labels(zone_codes, timestamps, transport, nominal_per_row, horizon,
                                  task.sla_delay_s)
    target = event.astype(np.float32)
    train_target = (
        early_warning_target(target, after, task.early_warning_min) if task.early_warning_min > 0 else target
    )
    input_ok = before >= lookback - 1

    if split is None:
        splits = {ALL: np.flatnonzero(input_ok).astype(np.int64)}
    else:
        labelled = input_ok & (after >= horizon) & ~np.isnan(target)
        ends = np.flatnonzero(labelled)
        first, last = span[ends - (lookback - 1)], span[ends + horizon]
        splits = {
            name: ends[(first == k) & (last == k)].astype(np.int64) for k, name in enumerate(SPLITS)
        }
    logger.info(
        "prepared %d rows, %d zones, lookback=%d, horizon=%d: %s windows",
        n, len(zones), lookback, horizon, {name: len(e) for name, e in splits.items()},
    )
    return PreparedData(
        features=features,
        target=target,
        delay_s=delay.astype(np.float32),
        zone_codes=zone_codes,
        zones=zones,
        timestamps=timestamps,
        splits=splits,
        scaler=scaler,
        nominal_s=nominal,
        lookback=lookback,
        horizon=horizon,
        minute_delay_s=(filled - nominal_per_row).astype(np.float32),
        cause=_cause_array(df, order),
        train_target=train_target,
        context=context if context is not None and not context.empty else None,
    )


def horizon_labels(
    zone_codes: np.ndarray, timestamps: np.ndarray, transport_time_s: np.ndarray,
    nominal_per_row: np.ndarray, horizon: int, sla_delay_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(delay_s, delay_event) [N] float64 of the window ending at each row: the mean delay over
    the next `horizon` minutes of the same segment (empty transport times skipped) and whether
    it exceeds the SLA; NaN where the horizon leaves the segment (a zone change or a gap). Rows
    sorted by (zone, time). The one label definition: training (`prepare`) and the live feed's
    outcomes (`fabray.serve.feed`) both call it."""
    _, after = segment_positions(zone_codes, timestamps)
    delay = delay_targets(np.asarray(transport_time_s, dtype=np.float64), 0.0, horizon) - nominal_per_row
    delay[after < horizon] = np.nan
    return delay, delay_events(delay, sla_delay_s)


def early_warning_target(target: np.ndarray, after: np.ndarray, minutes: int) -> np.ndarray:
    """[N] float32: 1 where the event holds at row t or at any of the next `minutes` rows of the
    same segment (`after[t]` rows follow t in it); NaN where `target` is; else 0.

    An alarm raised up to `minutes` before an episode's start is then a hit in training, which
    teaches the models to warn before the delay instead of echoing one already under way."""
    event = np.nan_to_num(target.astype(np.float64), nan=0.0) == 1  # [N]
    out = event.copy()
    n = len(event)
    for j in range(1, minutes + 1):
        shifted = np.zeros(n, dtype=bool)
        shifted[:-j] = event[j:]
        out |= shifted & (after >= j)
    return np.where(np.isnan(target), np.nan, out.astype(np.float32)).astype(np.float32)


def _plan_columns(
    df: pd.DataFrame, context: ContextSpec, order: np.ndarray
) -> Callable[[str], np.ndarray] | None:
    """plan column → its [N] float64 values in sorted order, after checking every plan column
    (present, numeric, finite) one at a time; None when the context has no plan columns."""
    if not context.plan_columns:
        return None
    missing = [c for c in context.plan_columns if c not in df.columns]
    if missing:
        raise BadInputError(
            f"the model was trained with the plan columns {list(context.plan_columns)}; the data "
            f"lacks {missing}"
        )
    for column in context.plan_columns:
        try:
            values = df[column].to_numpy(dtype=np.float64)  # [N], a view of a float64 column
        except (ValueError, TypeError) as err:
            raise BadInputError(f"plan columns must be numeric ({err})") from err
        if not np.isfinite(values).all():
            raise BadInputError(
                f"NaN/inf in plan columns {list(context.plan_columns)} (run `fabray validate` for rows)"
            )
    return lambda column: df[column].to_numpy(dtype=np.float64)[order]


def _cause_array(df: pd.DataFrame, order: np.ndarray) -> np.ndarray | None:
    """[N] object: each sorted row's `cause` as str, "" for none. Rows share one str object per
    distinct cause (a few), not one per row."""
    if schema.CAUSE not in df.columns:
        return None
    codes, uniques = pd.factorize(df[schema.CAUSE], use_na_sentinel=False)  # [N], [U]
    names = [("" if (v is None or (isinstance(v, float) and np.isnan(v))) else str(v))
             for v in pd.Series(uniques).astype(object)]
    return np.asarray(names, dtype=object)[codes[order]]


def _sorted_index(df: pd.DataFrame) -> tuple[np.ndarray, tuple[str, ...], np.ndarray, np.ndarray]:
    """(zone_codes [N] int32, zones, timestamps [N] datetime64[ns], order [N]: the frame's row of
    each sorted row), sorted by (zone, time); zones by name. Checks the columns, the
    timestamps and that no (zone, timestamp) repeats; not the feature values (`_check_features`)."""
    missing = [c for c in (schema.TIMESTAMP, schema.ZONE, *schema.FEATURES) if c not in df.columns]
    if missing:
        raise BadInputError(f"missing columns: {missing}. Received columns: {list(df.columns)}")
    if len(df) == 0:
        raise BadInputError("the table has no rows")
    try:
        ts = pd.to_datetime(df[schema.TIMESTAMP])
    except (ValueError, TypeError) as err:
        raise BadInputError(f"column {schema.TIMESTAMP!r}: not timestamps ({err})") from err
    if ts.dt.tz is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    if ts.isna().any():
        raise BadInputError(f"column {schema.TIMESTAMP!r}: empty at rows {_rows(ts.isna())}")
    ts_ns = ts.to_numpy().astype("datetime64[ns]")  # [N]
    del ts
    codes, zones = _zone_codes(df[schema.ZONE])
    order = np.lexsort((ts_ns.astype(np.int64), codes))  # by zone, then time (stable)
    codes, ts_ns = codes[order], ts_ns[order]

    dup = (codes[1:] == codes[:-1]) & (ts_ns[1:] == ts_ns[:-1])
    if dup.any():
        i = np.flatnonzero(dup)[:5] + 1
        pairs = [(str(zones[codes[k]]), str(ts_ns[k])) for k in i]
        raise BadInputError(f"duplicate (zone, timestamp) rows: {int(dup.sum())}, e.g. {pairs}")
    return codes, zones, ts_ns, order


def _zone_codes(zone: pd.Series) -> tuple[np.ndarray, tuple[str, ...]]:
    """([N] int32 code, zone names sorted): the zone as text (`astype(str)`), coded by name
    order as `np.unique` would, without a per-row string array (factorized first)."""
    codes, uniques = pd.factorize(zone, use_na_sentinel=False)  # [N], [U]
    text = pd.Series(uniques).astype(str).to_numpy()  # [U]
    names, inverse = np.unique(text, return_inverse=True)  # two values may read alike ("1", 1)
    return inverse.reshape(-1).astype(np.int32)[codes], tuple(str(z) for z in names)


def _column_float64(df: pd.DataFrame, name: str) -> np.ndarray:
    """The frame's column as [N] float64 in frame order (a view for a float64 column)."""
    try:
        return df[name].to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as err:
        raise BadInputError(f"feature columns must be numeric ({err})") from err


def _check_features(df: pd.DataFrame) -> None:
    """Every feature column numeric, NaN only where allowed (`schema.NULLABLE_FEATURES`), inf
    never; one column at a time."""
    bad: list[str] = []
    for name in schema.FEATURES:
        values = _column_float64(df, name)
        finite = np.isfinite(values)
        if not finite.all() and (name not in schema.NULLABLE_FEATURES or np.isinf(values).any()):
            bad.append(name)
    if bad:
        raise BadInputError(f"NaN/inf in feature columns {bad} (run `fabray validate` for rows)")


def _sorted_column(df: pd.DataFrame, name: str, order: np.ndarray) -> np.ndarray:
    """Feature `name` as [N] float64 in (zone, time) order (a fresh array)."""
    return _column_float64(df, name)[order]


def _ffill_within(values: np.ndarray, zone_codes: np.ndarray) -> np.ndarray:
    """[N] float64: NaN replaced by the last non-NaN value earlier in the same zone (rows sorted
    by zone); NaN where the zone has none yet. As `groupby(zone).ffill()`, without pandas."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    rows = np.arange(n, dtype=np.int64)
    last = np.where(np.isnan(values), -1, rows)  # [N] own row where observed
    np.maximum.accumulate(last, out=last)  # [N] the last observed row so far
    zone_start = np.flatnonzero(np.append(True, zone_codes[1:] != zone_codes[:-1]))  # [Z]
    first_row = np.repeat(zone_start, np.diff(np.append(zone_start, n)))  # [N] the zone's first row
    out = values[np.maximum(last, 0)]
    out[last < first_row] = np.nan  # nothing observed yet in this zone
    return out


def _split_span(zone_codes: np.ndarray, timestamps: np.ndarray, split: SplitConfig) -> np.ndarray:
    """[N] int8: 0 train, 1 val, 2 test, from each row's minute within its zone's time span."""
    minutes = timestamps.astype(np.int64) // MINUTE_NS  # [N]
    is_first = np.append(True, zone_codes[1:] != zone_codes[:-1])  # [N] a zone's first row
    starts = np.flatnonzero(is_first)  # [Z]
    stops = np.append(starts[1:], len(zone_codes))  # [Z] exclusive
    zone_of_row = np.cumsum(is_first) - 1  # [N] position of the row's zone in `starts`
    offset = minutes - minutes[starts][zone_of_row]  # [N] minutes since the zone's first row
    total = (minutes[stops - 1] - minutes[starts] + 1)[zone_of_row]  # [N] the zone's span, minutes
    a = np.floor(total * split.train_fraction)
    b = np.floor(total * (split.train_fraction + split.val_fraction))
    return np.where(offset < a, 0, np.where(offset < b, 1, 2)).astype(np.int8)


def _resolve_nominal(
    zones: tuple[str, ...],
    zone_codes: np.ndarray,
    transport: np.ndarray,
    fit_rows: np.ndarray | None,
    task: TaskConfig,
    given: Mapping[str, float] | None,
) -> dict[str, float]:
    configured = task.nominal_transport_time_s or {}
    given = given or {}
    nominal: dict[str, float] = {}
    unknown: list[str] = []
    no_data: list[str] = []
    for code, zone in enumerate(zones):
        if zone in given:
            nominal[zone] = float(given[zone])
        elif zone in configured:
            nominal[zone] = float(configured[zone])
        elif fit_rows is None:
            unknown.append(zone)
        else:
            values = transport[(zone_codes == code) & fit_rows]
            values = values[~np.isnan(values)]
            if len(values) == 0:
                no_data.append(zone)
            else:
                nominal[zone] = float(np.median(values))
    if unknown:
        raise BadInputError(
            f"no nominal transport time for zone(s) {unknown}: the model was not trained on them "
            f"and the config does not name them. Known: {sorted(given)}"
        )
    if no_data:
        raise BadInputError(
            f"zone(s) {no_data}: no transport_time_s in the training split to take a nominal "
            "transport time from; set task.nominal_transport_time_s for them"
        )
    return nominal


def zone_nominal_s(
    df: pd.DataFrame,
    task: TaskConfig | None = None,
    split: SplitConfig | None = None,
    given: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Each zone's nominal transport time exactly as `prepare` fits it for training: `given`, then
    `task.nominal_transport_time_s`, then the median transport_time_s over the zone's train-span
    rows of `split` (default `SplitConfig()`). `fabray simulate`'s printed event rate and plot use
    it, so they count the events training labels."""
    task, split = task or TaskConfig(), split or SplitConfig()
    zone_codes, zones, timestamps, order = _sorted_index(df)
    _check_features(df)
    transport = _sorted_column(df, schema.TRANSPORT_TIME, order)
    fit_rows = _split_span(zone_codes, timestamps, split) == 0
    return _resolve_nominal(zones, zone_codes, transport, fit_rows, task, given)


def _rows(mask: pd.Series, limit: int = 10) -> list[int]:
    return [int(i) for i in np.flatnonzero(mask.to_numpy())[:limit]]
