"""Checking one served window, and deciding when it is `degraded` (DESIGN §6). Pure numpy.

A window is `lookback` rows (oldest minute first) × the features of `fabray.schema.FEATURES`, in
raw units. What happens to each kind of trouble:

- wrong number of rows or values per row, an infinite value, a negative count, a fraction
  outside [0, 1], a value beyond its physical bound (`UPPER_BOUNDS`: 1e308 is finite JSON but
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


#: The largest value each feature can physically take in one zone-minute (raw units), far above
#: any real fab (the simulated ones stay below 300 lots, 2 m/s-ish vehicles, 20-minute
#: transports) yet small enough that float32 and the models' arithmetic stay finite.
#: Every feature is also >= 0. Features not named here are bounded by DEFAULT_UPPER_BOUND.
UPPER_BOUNDS: dict[str, float] = {
    "vehicle_util": 1.0,
    "stocker_fill": 1.0,
    "mean_speed": 100.0,  # m/s
    "transport_time_s": 86_400.0,  # one day
}
DEFAULT_UPPER_BOUND = 100_000.0  # counts per zone-minute (requests, lots, vehicles, ...)


def upper_bound(name: str) -> float:
    """The largest value `name` may take (see UPPER_BOUNDS)."""
    return UPPER_BOUNDS.get(name, DEFAULT_UPPER_BOUND)


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
        if arr.ndim != 2 or arr.shape != (lookback, n_features):
            raise BadInputError(
                f"{where}: expected {lookback} rows × {n_features} features. Received: shape {arr.shape}"
            )
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
    """Counts >= 0 and fractions in [0, 1], as the data contract says; every value within its
    physical bound (`upper_bound`). NaN is ignored here."""
    with np.errstate(invalid="ignore"):
        for j, name in enumerate(features):
            column = arr[:, j]
            high = upper_bound(name)
            if name in schema.COUNT_FEATURES:
                bad = np.flatnonzero(column < 0)
                if bad.size:
                    raise BadInputError(f"{where}: {name!r} is a count and must be >= 0. Received: "
                                        f"{column[bad[0]]} at row {bad[0]}")
            elif name in schema.FRACTION_FEATURES:
                bad = np.flatnonzero((column < 0) | (column > 1))
                if bad.size:
                    raise BadInputError(f"{where}: {name!r} is a fraction and must lie in [0, 1]. "
                                        f"Received: {column[bad[0]]} at row {bad[0]}")
            bad = np.flatnonzero((column < 0) | (column > high))
            if bad.size:
                raise BadInputError(f"{where}: {name!r} must lie in [0, {high:g}] (physical bound). "
                                    f"Received: {column[bad[0]]:g} at row {bad[0]}")


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
