"""What the live feed (`fabray.serve.feed`) accepts: the served version's `FeedSpec`, minute
timestamps, and one `/v1/observe` request's rows parsed and checked as a whole (`parse_rows`:
bad values refused with 422, rows out of order or duplicated with 409, `FeedRefused` naming
every such row)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from fabray import schema
from fabray.config import DegradedRules
from fabray.data.context import ContextSpec, neighbour_codes, neighbours_of
from fabray.errors import BadInputError
from fabray.serve.monitor import training_stats
from fabray.serve.validation import check_values


#: Rows one observe call may carry (a full fab minute is one row per zone).
MAX_ROWS = 20_000


class FeedRefused(BadInputError):
    """A request the feed refuses as a whole (nothing is applied): `status` 409 for rows out of
    order or duplicated, 422 for bad values; `problems` names every offending row."""

    def __init__(self, status: int, message: str, problems: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.status = status
        self.problems = problems

    def __reduce__(self) -> tuple:  # raised in one Ray actor, answered by another
        return FeedRefused, (self.status, str(self), self.problems)


def minute_of(value: Any) -> int:
    """An ISO-8601 timestamp (or datetime) → minutes since the epoch, naive site time (an
    explicit offset is converted to UTC, as `prepare` does). ValueError when not a minute."""
    if isinstance(value, str):
        text = value.strip()
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    elif isinstance(value, datetime):
        parsed = value
    else:
        raise ValueError(f"not a timestamp: {value!r}")
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    if parsed.second or parsed.microsecond:
        raise ValueError(f"not a whole minute: {value!r}")
    return int(np.datetime64(parsed, "m").astype(np.int64))


def minute_text(minute: int) -> str:
    return str(np.datetime64(int(minute), "m"))


# ---------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class FeedSpec:
    """What the served version needs from the feed (from the predictor's `meta`)."""

    zones: tuple[str, ...]
    lookback: int
    horizon: int
    nominal_s: Mapping[str, float]
    sla_delay_s: float
    task: str
    threshold: float
    context: ContextSpec | None
    degraded: DegradedRules
    version: str = ""
    training: Mapping[str, tuple[float, float]] | None = None  # raw inputs' training (mean, std): drift

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], degraded: DegradedRules | Mapping[str, Any]) -> FeedSpec:
        context = ContextSpec.from_dict(meta["context"]) if meta.get("context") else None
        horizon = meta.get("horizon") or (context.horizon if context is not None else None)
        if horizon is None:
            raise BadInputError("the served version does not say its horizon")
        rules = degraded if isinstance(degraded, DegradedRules) else DegradedRules.model_validate(dict(degraded))
        return cls(zones=tuple(meta["zones"]), lookback=int(meta["lookback"]), horizon=int(horizon),
                   nominal_s={str(k): float(v) for k, v in meta["nominal_s"].items()},
                   sla_delay_s=float(meta["sla_delay_s"]), task=str(meta["task"]),
                   threshold=float(meta["threshold"]), context=context, degraded=rules,
                   version=str(meta.get("version", "")), training=training_stats(meta.get("scaler")))

    @property
    def capacity(self) -> int:
        """Minutes kept per zone: a window, and the horizon after a prediction for its outcome."""
        return self.lookback + self.horizon

    @property
    def plan_columns(self) -> tuple[str, ...]:
        return self.context.plan_columns if self.context is not None else ()

    def neighbours(self, zone: str) -> list[str]:
        """The zones that feed `zone`'s neighbour inputs; the ring (name order) when the run
        has no neighbour inputs (what the alerts' suggestions look at)."""
        if self.context is not None and self.context.neighbour_slots:
            return neighbours_of(self.context, self.zones, zone)
        if zone not in self.zones:
            return []
        slots = neighbour_codes("ring", self.zones)[list(self.zones).index(zone)]
        return list(dict.fromkeys(self.zones[c] for c in slots if c >= 0))


# ---------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class Row:
    """One checked zone-minute row."""

    index: int  # position in the request
    zone: str
    minute: int  # minutes since the epoch
    values: tuple[float, ...]  # schema.FEATURES order, NaN for an empty transport time
    plan: tuple[float, ...]  # the row's own plan values (FeedSpec.plan_columns order), NaN unknown
    plan_ahead: Mapping[str, tuple[float, ...]] | None  # plan for the next minutes, when sent


def parse_rows(rows: Sequence[Mapping[str, Any]], spec: FeedSpec) -> list[Row]:
    """Rows as records (the data contract's columns) → checked `Row`s; `FeedRefused` (422)
    naming every bad row: unknown zone, a timestamp that is not a minute, a missing or
    out-of-range value (only transport_time_s may be null)."""
    problems: list[dict[str, Any]] = []
    out: list[Row] = []
    known = set(spec.zones)
    for i, record in enumerate(rows):
        zone = str(record.get(schema.ZONE))
        where = f"rows[{i}]"
        if zone not in known:
            problems.append({"row": i, "zone": zone, "problem": f"unknown zone; model version "
                             f"{spec.version} knows {sorted(known)}"})
            continue
        try:
            minute = minute_of(record.get(schema.TIMESTAMP))
        except (ValueError, TypeError) as err:
            problems.append({"row": i, "zone": zone, "problem": f"timestamp: {err}"})
            continue
        values = [record.get(name) for name in schema.FEATURES]
        missing = [name for name, v in zip(schema.FEATURES, values)
                   if v is None and name not in schema.NULLABLE_FEATURES]
        if missing:
            problems.append({"row": i, "zone": zone, "timestamp": minute_text(minute),
                             "problem": f"missing value(s) for {missing}: only {schema.TRANSPORT_TIME} "
                                        "may be null (a minute with no completions)"})
            continue
        arr = np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
        try:
            check_values(arr[None], where=where)
        except BadInputError as err:
            problems.append({"row": i, "zone": zone, "timestamp": minute_text(minute), "problem": str(err)})
            continue
        plan = tuple(math.nan if record.get(c) is None else float(record[c]) for c in spec.plan_columns)
        ahead = record.get("plan_ahead")
        plan_ahead = None
        if ahead:
            plan_ahead = {str(k): tuple(float(v) for v in vs) for k, vs in ahead.items()}
        out.append(Row(i, zone, minute, tuple(arr.tolist()), plan, plan_ahead))
    if problems:
        raise FeedRefused(422, _summary("invalid row(s)", problems), problems)
    return out


def _summary(what: str, problems: list[dict[str, Any]]) -> str:
    def one(p: dict[str, Any]) -> str:
        at = f" {p['timestamp']}" if p.get("timestamp") else ""
        return f"rows[{p['row']}] ({p.get('zone')}{at}): {p['problem']}"

    shown = "; ".join(one(p) for p in problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return f"{what}, nothing applied: {shown}{more}"
