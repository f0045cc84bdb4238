"""Checking one served window, and deciding when it is `degraded` (DESIGN §6). Pure numpy.

A window is `lookback` rows (oldest minute first) × the features of `fabray.schema.FEATURES`, in
raw units. What happens to each kind of trouble:

- wrong number of rows or values per row, an infinite value, a negative count, a fraction
  outside [0, 1], a value beyond its physical bound (`fabray.schema.range_violations`; 1e308 is finite JSON but
  no fab's queue), a feature missing in every minute → `BadInputError` (HTTP 422), naming the
  row and feature;
- `transport_time_s` missing (null) in a minute: that minute had no completions, which the data
  contract allows; the last value is carried forward (backward for leading minutes). Not degraded;
- any other feature missing in a minute is a *gap*: up to `max_gap_minutes` such minutes are
  filled forward and the window is **degraded**; more are refused;
- a *stuck sensor*: one of `stuck_features` repeating exactly the same value over the last
  `stuck_minutes` minutes → **degraded**.

A degraded window is still answered, but by the rules model alone (the learned models never saw
filled or frozen inputs), and the response says so and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fabray import schema
from fabray.config import DegradedRules
from fabray.errors import BadInputError



@dataclass(frozen=True)
class CheckedWindow:
    """A window ready for the models: finite float32 `[L, F]`, and why it is degraded (if it is)."""

    values: np.ndarray  # [L, F] float32, finite
    degraded_reasons: tuple[str, ...]

    @property
    def degraded(self) -> bool:
        return bool(self.degraded_reasons)


def _fill_forward(column: np.ndarray) -> np.ndarray:
    """Fill NaN in [L] with the last finite value before it (the first one for leading NaN)."""
    missing = np.isnan(column)
    if not missing.any():
        return column
    idx = np.where(~missing, np.arange(column.size), 0)
    np.maximum.accumulate(idx, out=idx)  # [L] index of the last seen value
    filled = column[idx]
    first = np.flatnonzero(~missing)[0]
    filled[:first] = column[first]
    return filled


def _rows_text(rows: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    return f"[{shown}{', ...' if rows.size > limit else ''}]"


def check_window(
    values: Sequence[Sequence[float | None]] | np.ndarray,
    *,
    lookback: int,
    rules: DegradedRules,
    features: Sequence[str] = schema.FEATURES,
    where: str = "window",
) -> CheckedWindow:
    """Check and prepare one window (see the module doc). `where` prefixes every error message.

    Args:
        values: `lookback` rows of `len(features)` numbers, None or NaN for a missing value.
        lookback: the rows the served model version expects.
        rules: when a window is degraded (config `serve.degraded`).
        features: feature names in column order.
        where: how error messages name this window, e.g. "windows[3]".
    """
    features = tuple(features)
    n_features = len(features)
    if isinstance(values, np.ndarray):
        arr = values.astype(np.float64, copy=True)
        problem = schema.window_shape_problem(arr.shape, lookback, n_features, batch=False)
        if problem:
            raise BadInputError(f"{where}: {problem}")
    else:
        if len(values) != lookback:
            raise BadInputError(
                f"{where}: expected {lookback} rows (minutes, oldest first). Received: {len(values)} rows"
            )
        for i, row in enumerate(values):
            if len(row) != n_features:
                raise BadInputError(
                    f"{where}: row {i} must have {n_features} values ({', '.join(features)}). "
                    f"Received: {len(row)} values"
                )
        try:
            arr = np.array(values, dtype=np.float64)  # None → NaN
        except (TypeError, ValueError) as err:
            raise BadInputError(f"{where}: values must be numbers or null. Received: {err}") from None

    if np.isinf(arr).any():
        row, col = np.argwhere(np.isinf(arr))[0]
        raise BadInputError(f"{where}: values must be finite. Received: {arr[row, col]} at row {row}, "
                            f"feature {features[col]!r}")
    missing = np.isnan(arr)  # [L, F]
    empty = [features[j] for j in np.flatnonzero(missing.all(axis=0))]
    if empty:
        raise BadInputError(f"{where}: no value in any minute for feature(s) {empty}")

    _check_ranges(arr, features, where)

    reasons: list[str] = []
    nullable = np.array([name in schema.NULLABLE_FEATURES for name in features])  # [F]
    gap_rows = np.flatnonzero((missing & ~nullable).any(axis=1))  # [G]
    if gap_rows.size > rules.max_gap_minutes:
        raise BadInputError(
            f"{where}: {gap_rows.size} minutes have missing values (rows {_rows_text(gap_rows)}); at "
            f"most {rules.max_gap_minutes} are tolerated (config serve.degraded.max_gap_minutes)"
        )
    if gap_rows.size:
        reasons.append(f"gap: {gap_rows.size} minute(s) with missing values filled forward "
                       f"(rows {_rows_text(gap_rows)})")

    stuck = _stuck_features(arr, features, rules)
    if stuck:
        reasons.append(f"stuck sensor: {', '.join(stuck)} unchanged for the last "
                       f"{rules.stuck_minutes} minutes")

    if missing.any():
        for j in np.flatnonzero(missing.any(axis=0)):
            arr[:, j] = _fill_forward(arr[:, j])
    return CheckedWindow(values=arr.astype(np.float32), degraded_reasons=tuple(reasons))


def _check_ranges(arr: np.ndarray, features: tuple[str, ...], where: str) -> None:
    """The data contract's ranges (`fabray.schema.range_violations`: counts >= 0, fractions in
    [0, 1], every value within its physical bound); the first violation → BadInputError naming
    the row. NaN is ignored here."""
    for j, name in enumerate(features):
        column = arr[:, j]
        broken = schema.range_violations(name, column)
        if name in schema.COUNT_FEATURES:
            rule, bad = "is a count and must be >= 0", np.flatnonzero(broken["below_zero"])
        elif name in schema.FRACTION_FEATURES:
            rule, bad = "is a fraction and must lie in [0, 1]", np.flatnonzero(broken["below_zero"] | broken["above_one"])
        else:
            bad = np.zeros(0, dtype=np.int64)
        if bad.size:
            raise BadInputError(f"{where}: {name!r} {rule}. Received: {column[bad[0]]} at row {bad[0]}")
        bad = np.flatnonzero(broken["below_zero"] | broken["above_bound"])
        if bad.size:
            raise BadInputError(f"{where}: {name!r} must lie in [0, {schema.upper_bound(name):g}] (physical "
                                f"bound). Received: {column[bad[0]]:g} at row {bad[0]}")


def check_values(values: np.ndarray, features: tuple[str, ...] | None = None, where: str = "data") -> None:
    """The same bounds for a whole table of rows [N, F] (batch data files): BadInputError naming
    the first row and feature out of bounds. NaN (a missing value) passes."""
    features = tuple(schema.FEATURES if features is None else features)
    arr = np.asarray(values, dtype=np.float64)
    if np.isinf(arr).any():
        row, col = np.argwhere(np.isinf(arr))[0]
        raise BadInputError(f"{where}: values must be finite. Received: {arr[row, col]} at row {row}, "
                            f"feature {features[col]!r}")
    _check_ranges(arr, features, where)


def _stuck_features(arr: np.ndarray, features: tuple[str, ...], rules: DegradedRules) -> list[str]:
    """Features of `rules.stuck_features` whose last `stuck_minutes` values are all equal."""
    n = rules.stuck_minutes
    if arr.shape[0] < n:
        return []
    stuck = []
    for name in rules.stuck_features:
        if name not in features:
            continue
        tail = arr[-n:, features.index(name)]  # [n]
        if not np.isnan(tail).any() and (tail == tail[0]).all():
            stuck.append(name)
    return stuck
