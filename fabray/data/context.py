"""Context inputs (DESIGN §1, "Inputs known ahead"): what a window sees beyond its zone's 12
observed features, built by row index over the whole series, never by materialising windows.

Three groups, each switched by `SiteConfig` (all on by default):

- **calendar**, from the timestamp: time of day and day of week (sin/cos), hours until the next
  shift change and since the last one (`site.shift_changes`).
- **plan**, known-future covariates (NeuralForecast's `futr_exog`): for each plan column the data
  has (`fabray.schema.PLAN_COLUMNS`), the input at row m is the plan for minute m + horizon, so
  a window ending at t carries the plan for t+1 … t+horizon in its last `horizon` rows and nothing
  *observed* after t. `plan_known` is 1 where that future plan row exists in the data (0 at the
  tail of a file: the value is then 0, explicitly missing, not guessed).
- **neighbours**, the zone's neighbours on `site.topology` at the same minute: for each
  neighbour slot (ring: slot 0 upstream = the previous zone in name order, slot 1 downstream =
  the next; a mapping: its list order) the features of `site.neighbour_features`, with
  `transport_time_s` entering as the neighbour's delay against its nominal, and a `present` flag.
  A slot with no neighbour (a zone with fewer neighbours, a one-zone site) or a minute the
  neighbour did not report (a gap) is 0 with `present` 0.

`ContextSpec` is what a trained run stores (`preprocessing.json`): the resolved switches, the
plan columns found in the training data, and the topology rule, so scoring builds the very same
columns. Pure numpy/pandas: no Ray, no files.

Why one file of ~420 lines: the spec that names the columns, the whole-series builder (training,
batch scoring) and the one-window builder (real-time scoring) must agree column for column and
share their calendar and neighbour helpers; in one file that contract is read in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fabray import schema
from fabray.errors import BadInputError

MINUTES_PER_DAY = 1440
MINUTE_NS = 60 * 1_000_000_000
CALENDAR_COLUMNS: tuple[str, ...] = ("cal_day_sin", "cal_day_cos", "cal_week_sin", "cal_week_cos")
SHIFT_COLUMNS: tuple[str, ...] = ("cal_to_shift_h", "cal_since_shift_h")
PLAN_KNOWN = "plan_known"


@dataclass(frozen=True)
class ContextSpec:
    """Which context columns a run's windows carry, in order (after `schema.FEATURES`)."""

    horizon: int
    calendar: bool = False
    shift_changes_min: tuple[int, ...] = ()  # minutes after midnight
    plan_columns: tuple[str, ...] = ()
    topology: str | Mapping[str, Sequence[str]] | None = None  # None: no neighbour inputs
    neighbour_features: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [c for c in self.plan_columns if c not in schema.PLAN_COLUMNS]
        if unknown:
            raise BadInputError(f"unknown plan columns {unknown}; known: {list(schema.PLAN_COLUMNS)}")
        bad = [f for f in self.neighbour_features if f not in schema.FEATURES]
        if bad:
            raise BadInputError(f"site.neighbour_features: not features: {bad}; known: {list(schema.FEATURES)}")
        if self.topology is not None and self.topology != "ring" and not isinstance(self.topology, Mapping):
            raise BadInputError(f"site.topology must be 'ring' or a mapping. Received: {self.topology!r}")

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_site(cls, site: Any, horizon: int, data_columns: Sequence[str]) -> ContextSpec:
        """The spec a new run uses: `site` (a `SiteConfig`) switches, plan columns the data has."""
        plan = tuple(c for c in schema.PLAN_COLUMNS if c in data_columns) if site.plan else ()
        topology = site.topology if site.neighbours else None
        if isinstance(topology, Mapping):
            topology = {str(k): [str(v) for v in vs] for k, vs in topology.items()}
        return cls(
            horizon=int(horizon),
            calendar=bool(site.calendar),
            shift_changes_min=tuple(_hhmm_minutes(h) for h in site.shift_changes) if site.calendar else (),
            plan_columns=plan,
            topology=topology,
            neighbour_features=tuple(site.neighbour_features) if topology is not None else (),
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["topology"] = dict(self.topology) if isinstance(self.topology, Mapping) else self.topology
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ContextSpec:
        try:
            return cls(
                horizon=int(data["horizon"]), calendar=bool(data.get("calendar", False)),
                shift_changes_min=tuple(int(v) for v in data.get("shift_changes_min", ())),
                plan_columns=tuple(data.get("plan_columns", ())),
                topology=data.get("topology"),
                neighbour_features=tuple(data.get("neighbour_features", ())),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise BadInputError(f"invalid context spec: {err}. Received: {dict(data)}") from err

    @classmethod
    def stored(cls, preprocessing: Mapping[str, Any]) -> ContextSpec | None:
        """The spec a run's `preprocessing.json` records (None: a run without context inputs)."""
        data = preprocessing.get("context")
        return cls.from_dict(data) if data else None

    # ------------------------------------------------------------------ columns

    @property
    def neighbour_slots(self) -> int:
        if self.topology is None:
            return 0
        if self.topology == "ring":
            return 2
        return max((len(v) for v in self.topology.values()), default=0)

    def column_names(self) -> tuple[str, ...]:
        names: list[str] = []
        if self.calendar:
            names += CALENDAR_COLUMNS
            if self.shift_changes_min:
                names += SHIFT_COLUMNS
        if self.plan_columns:
            names += [f"{c}@+{self.horizon}" for c in self.plan_columns] + [PLAN_KNOWN]
        for k in range(self.neighbour_slots):
            names += [f"nb{k}_{_neighbour_name(f)}" for f in self.neighbour_features] + [f"nb{k}_present"]
        return tuple(names)

    @property
    def empty(self) -> bool:
        return not self.column_names()


def _hhmm_minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def _neighbour_name(feature: str) -> str:
    return "delay_s" if feature == schema.TRANSPORT_TIME else feature


# ---------------------------------------------------------------------------- topology


def neighbour_codes(topology: str | Mapping[str, Sequence[str]] | None, zones: Sequence[str]) -> np.ndarray:
    """[Z, K] int: the zone code in each neighbour slot of each zone, −1 where the slot is empty.

    'ring': the zones in name order on a loop (slot 0: previous, slot 1: next); one zone has no
    neighbour, two zones are each other's neighbour in both slots. A mapping names zones; a zone
    it does not list, or a neighbour that is not in the data, leaves its slot empty."""
    zones = list(zones)
    n = len(zones)
    if topology is None:
        return np.zeros((n, 0), dtype=np.int64)
    if topology == "ring":
        out = np.full((n, 2), -1, dtype=np.int64)
        if n > 1:
            codes = np.arange(n)
            out[:, 0] = (codes - 1) % n
            out[:, 1] = (codes + 1) % n
        return out
    k = max((len(v) for v in topology.values()), default=0)
    index = {z: i for i, z in enumerate(zones)}
    out = np.full((n, k), -1, dtype=np.int64)
    for z, neighbours in topology.items():
        if z not in index:
            continue
        for slot, other in enumerate(neighbours):
            if other == z:
                raise BadInputError(f"site.topology: zone {z!r} lists itself as a neighbour")
            out[index[z], slot] = index.get(other, -1)
    return out


# ---------------------------------------------------------------------------- columns


def context_columns(
    spec: ContextSpec,
    zone_codes: np.ndarray,
    zones: Sequence[str],
    timestamps: np.ndarray,
    observed: np.ndarray | Callable[[str], np.ndarray],
    nominal_per_row: np.ndarray,
    plan: np.ndarray | Callable[[str], np.ndarray] | None = None,
) -> np.ndarray:
    """The context columns [N, C] float64 (order of `spec.column_names()`) of a series.

    Args:
        zone_codes: [N] int, rows sorted by (zone, time).
        zones: zone names, indexed by code.
        timestamps: [N] datetime64 (minute resolution, naive = site time).
        observed: [N, 12] raw features (schema.FEATURES order, transport time already carried
            forward: NaN-free), or a function feature name → its [N] column.
        nominal_per_row: [N] the row's zone nominal transport time, seconds.
        plan: [N, P] raw plan values (spec.plan_columns order), or a function plan column →
            its [N] values, or None when the spec has none.
    """
    n = len(zone_codes)
    cols = list(iter_context_columns(spec, zone_codes, zones, timestamps, observed, nominal_per_row, plan))
    if not cols:
        return np.zeros((n, 0), dtype=np.float64)
    out = np.stack(cols, axis=1)
    assert out.shape[1] == len(spec.column_names())
    return out


def iter_context_columns(
    spec: ContextSpec,
    zone_codes: np.ndarray,
    zones: Sequence[str],
    timestamps: np.ndarray,
    observed: np.ndarray | Callable[[str], np.ndarray],
    nominal_per_row: np.ndarray,
    plan: np.ndarray | Callable[[str], np.ndarray] | None = None,
) -> Iterator[np.ndarray]:
    """`context_columns`' columns one at a time, each [N] float64, in `spec.column_names()`
    order: a caller that scales each into its output never holds the [N, C] float64 block
    (`fabray.data.windows.prepare`). Arguments as `context_columns`'."""
    n = len(zone_codes)
    minutes = np.asarray(timestamps).astype("datetime64[ns]").astype(np.int64) // MINUTE_NS  # [N]
    if spec.calendar:
        yield from _calendar_columns(minutes, spec.shift_changes_min)
    if spec.plan_columns:
        if plan is None or (not callable(plan) and np.shape(plan) != (n, len(spec.plan_columns))):
            raise BadInputError(
                f"the model was trained with plan columns {list(spec.plan_columns)}; the data has "
                "none (add them, or train with site.plan: false)"
            )
        yield from _future_plan_columns(_getter(plan, spec.plan_columns), spec.plan_columns,
                                        zone_codes, minutes, spec.horizon)
    if spec.neighbour_slots:
        yield from _neighbour_columns(spec, zone_codes, zones, minutes, _getter(observed, schema.FEATURES),
                                      nominal_per_row)


def _getter(values: np.ndarray | Callable[[str], np.ndarray], names: Sequence[str]) -> Callable[[str], np.ndarray]:
    """column name → [N] float64: `values` itself when a function, else its column of `names`."""
    if callable(values):
        return lambda name: np.asarray(values(name), dtype=np.float64)
    array = np.asarray(values, dtype=np.float64)
    return lambda name: array[:, list(names).index(name)]


def _calendar(minutes: np.ndarray, shift_changes_min: tuple[int, ...]) -> np.ndarray:
    return np.stack(list(_calendar_columns(minutes, shift_changes_min)), axis=1)


def _calendar_columns(minutes: np.ndarray, shift_changes_min: tuple[int, ...]) -> Iterator[np.ndarray]:
    day_min = (minutes % MINUTES_PER_DAY).astype(np.float64)  # [N]
    yield np.sin(2 * np.pi * day_min / MINUTES_PER_DAY)
    yield np.cos(2 * np.pi * day_min / MINUTES_PER_DAY)
    # 1970-01-01 was a Thursday: shift so that 0 = Monday 00:00
    week_min = ((minutes + 3 * MINUTES_PER_DAY) % (7 * MINUTES_PER_DAY)).astype(np.float64)
    yield np.sin(2 * np.pi * week_min / (7 * MINUTES_PER_DAY))
    yield np.cos(2 * np.pi * week_min / (7 * MINUTES_PER_DAY))
    del week_min
    if shift_changes_min:
        changes = sorted(float(c) for c in shift_changes_min)
        # hours until the next change (0 at the change), then since the last one: the minimum
        # over the changes, one [N] column at a time
        until = (changes[0] - day_min) % MINUTES_PER_DAY
        for c in changes[1:]:
            np.minimum(until, (c - day_min) % MINUTES_PER_DAY, out=until)
        yield until / 60.0
        del until
        since = (day_min - changes[0]) % MINUTES_PER_DAY
        for c in changes[1:]:
            np.minimum(since, (day_min - c) % MINUTES_PER_DAY, out=since)
        yield since / 60.0


def _future_plan_columns(
    plan: Callable[[str], np.ndarray], columns: Sequence[str], zone_codes: np.ndarray, minutes: np.ndarray,
    horizon: int,
) -> Iterator[np.ndarray]:
    """P + 1 columns [N]: each plan column at minute m + horizon of the same zone (found by
    timestamp, so gaps are respected), then the `plan_known` flag."""
    n = len(zone_codes)
    key = zone_codes.astype(np.int64) * (1 << 40) + minutes  # sorted: rows are in (zone, time) order
    want = key + horizon
    idx = np.searchsorted(key, want)
    found = idx < n
    found[found] = key[idx[found]] == want[found]
    del key, want
    source = idx[found]
    for column in columns:
        out = np.zeros(n, dtype=np.float64)
        out[found] = plan(column)[source]
        yield out
    yield found.astype(np.float64)


def _neighbour_values(spec: ContextSpec, observed: np.ndarray, nominal: np.ndarray | float) -> np.ndarray:
    """[..., G] the neighbour features of observed rows [..., 12]; transport time → delay."""
    cols = [schema.FEATURES.index(f) for f in spec.neighbour_features]
    values = np.asarray(observed, dtype=np.float64)[..., cols].copy()
    if schema.TRANSPORT_TIME in spec.neighbour_features:
        tt = spec.neighbour_features.index(schema.TRANSPORT_TIME)
        values[..., tt] = values[..., tt] - nominal  # the neighbour's own delay
    return values


def _neighbour_columns(
    spec: ContextSpec, zone_codes: np.ndarray, zones: Sequence[str], minutes: np.ndarray,
    observed: Callable[[str], np.ndarray], nominal_per_row: np.ndarray,
) -> Iterator[np.ndarray]:
    """K × (G + 1) columns [N]: per neighbour slot, the neighbour's features at the same minute
    (`_neighbour_values`: transport time → its delay) and its `present` flag; 0 where absent."""
    slots = neighbour_codes(spec.topology, zones)  # [Z, K]
    n = len(zone_codes)
    key = zone_codes.astype(np.int64) * (1 << 40) + minutes  # [N] sorted
    for k in range(slots.shape[1]):
        other = slots[zone_codes, k]  # [N] neighbour code in slot k, −1: none
        has = other >= 0
        want = other[has] * (1 << 40) + minutes[has]
        idx = np.searchsorted(key, want)
        ok = idx < n
        ok[ok] = key[idx[ok]] == want[ok]
        rows = np.flatnonzero(has)[ok]  # rows with a neighbour at that minute
        source = idx[ok]  # the neighbour's row
        del other, has, want, idx, ok
        for feature in spec.neighbour_features:
            out = np.zeros(n, dtype=np.float64)
            values = observed(feature)[source]
            if feature == schema.TRANSPORT_TIME:
                values = values - nominal_per_row[source]  # the neighbour's own delay
            out[rows] = values
            del values
            yield out
        present = np.zeros(n, dtype=np.float64)
        present[rows] = 1.0
        yield present


# ---------------------------------------------------------------------------- one window


def window_context(
    spec: ContextSpec,
    zones: Sequence[str],
    zone: str,
    end_time: Any,
    lookback: int,
    nominal_s: Mapping[str, float],
    neighbour_windows: Mapping[str, np.ndarray] | None = None,
    plan: Mapping[str, Sequence[float]] | None = None,
) -> np.ndarray:
    """The context columns [lookback, C] of ONE window (real-time scoring), equal to the rows
    `context_columns` gives the same minutes of a whole series.

    Args:
        zones: the zones the topology is resolved on (the run's zones).
        zone: the window's zone; end_time: its last minute (required with calendar inputs).
        nominal_s: nominal transport time per zone (the run's).
        neighbour_windows: zone → [lookback, 12] raw window of a neighbour over the same minutes
            (transport time carried forward); a neighbour not given is absent (0, present 0).
        plan: plan column → lookback + horizon values for the window's minutes and the next
            `horizon` ones; not given: the plan is unknown (0, plan_known 0).
    """
    parts: list[np.ndarray] = []
    if spec.calendar:
        if end_time is None:
            raise BadInputError("timestamp: required, the model uses calendar inputs (the window's last minute, ISO-8601)")
        end = np.datetime64(end_time, "m").astype(np.int64)
        parts.append(_calendar(np.arange(end - lookback + 1, end + 1), spec.shift_changes_min))
    if spec.plan_columns:
        out = np.zeros((lookback, len(spec.plan_columns) + 1))
        given = dict(plan or {})
        unknown = sorted(set(given) - set(spec.plan_columns))
        if unknown:
            raise BadInputError(f"plan: unknown columns {unknown}; the model uses {list(spec.plan_columns)}")
        if given:
            missing = [c for c in spec.plan_columns if c not in given]
            if missing:
                raise BadInputError(f"plan: give every plan column {list(spec.plan_columns)} or none. Missing: {missing}")
            for j, col in enumerate(spec.plan_columns):
                values = np.asarray(given[col], dtype=np.float64)
                if values.shape != (lookback + spec.horizon,) or not np.isfinite(values).all() or (values < 0).any():
                    raise BadInputError(
                        f"plan.{col}: expected {lookback + spec.horizon} finite values >= 0 (the window's "
                        f"minutes and the next {spec.horizon}). Received: shape {list(values.shape)}"
                    )
                out[:, j] = values[spec.horizon:]
            out[:, -1] = 1.0
        parts.append(out)
    if spec.neighbour_slots:
        slots = neighbour_codes(spec.topology, zones)
        if zone not in zones:
            raise BadInputError(f"zone {zone!r} is not one of the run's zones {list(zones)}")
        given = dict(neighbour_windows or {})
        g = len(spec.neighbour_features)
        out = np.zeros((lookback, slots.shape[1], g + 1))
        for k, code in enumerate(slots[list(zones).index(zone)]):
            name = zones[code] if code >= 0 else None
            if name is None or name not in given:
                continue
            window = np.asarray(given[name], dtype=np.float64)
            problem = schema.window_shape_problem(window.shape, lookback, len(schema.FEATURES), batch=False)
            if problem:
                raise BadInputError(f"neighbours.{name}: {problem}")
            out[:, k, :g] = _neighbour_values(spec, window, float(nominal_s[name]))
            out[:, k, g] = 1.0
        parts.append(out.reshape(lookback, -1))
    if not parts:
        return np.zeros((lookback, 0))
    return np.concatenate(parts, axis=1)


def neighbours_of(spec: ContextSpec | None, zones: Sequence[str], zone: str) -> list[str]:
    """The zones whose windows real-time scoring of `zone` can use (its neighbour slots)."""
    if spec is None or not spec.neighbour_slots or zone not in zones:
        return []
    slots = neighbour_codes(spec.topology, zones)[list(zones).index(zone)]
    return list(dict.fromkeys(zones[c] for c in slots if c >= 0))
