"""The live feed (DESIGN §6, issue 13): minute rows in, windows kept server-side, outcomes derived.

A fab's MES sends one row per zone each minute (`POST /v1/observe`). `LiveFeed` keeps each
zone's last `lookback + horizon` minutes (bounded memory) and

- refuses, before changing anything, a request with a row out of order (older than the zone's
  last minute, or older than an earlier row of the same zone in the request) or duplicated
  (a minute already received, or twice in the request): `FeedRefused`, HTTP 409, naming every
  such row; bad values are refused the same way with 422;
- flags gaps (minutes missing between a zone's last row and its new one);
- builds the window ending at each zone's newest minute exactly as `/v1/predict` checks one
  (`check_window`: a short gap is filled and `degraded`, a long one is not scored) with the
  context inputs of training (`window_context`: calendar, plan, the neighbours' windows taken
  from the other zones' buffers);
- H minutes after a prediction, derives its outcome from the observed transport times with the
  training label (`fabray.data.windows.horizon_labels`), and gives every minute's label to the
  alert book (episodes, realised lead times).

`FeedDesk` runs one observe call end to end around a scoring callable: ingest, move the
dynamic weights with the outcomes that came due (`EnsembleKeeper.feedback`, no client call),
score, record the predictions, open and close alerts, feed the monitor (`fabray.serve.monitor`:
rolling per-zone precision/recall, input drift, retrain advised; `monitor` in `status`), and
return the state to persist. Its state (buffers, pending outcomes, open alerts, the monitor's)
is written before the call is answered (`STORE/feed/state.json`; the weight history and closed
alerts are appended to logs beside it), so a restart loses nothing: a new desk reads it back
and continues as if nothing happened (rows sent again are refused as duplicates).

Pure Python + numpy: the Serve deployment in deployments/keeper.py holds one desk in the single-replica
keeper, beside the ensemble it moves.
"""

from __future__ import annotations

import logging
import math
import os
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from fabray import schema
from fabray.config import DegradedRules
from fabray.data.context import ContextSpec, neighbour_codes, neighbours_of, window_context
from fabray.data.windows import horizon_labels
from fabray.errors import BadInputError
from fabray.serve.monitor import FeedMonitor, training_stats
from fabray.serve.validation import check_values, check_window

logger = logging.getLogger(__name__)

FEED_FORMAT = "fabray-feed"
HISTORY_LOG = "weights.jsonl"
ALERTS_LOG = "alerts.jsonl"
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


# ---------------------------------------------------------------------------- buffers


@dataclass
class ZoneBuffer:
    """One zone's last minutes, oldest first (at most `FeedSpec.capacity`)."""

    minutes: list[int] = field(default_factory=list)
    values: list[list[float]] = field(default_factory=list)  # [n, 12], NaN empty transport time
    plan: list[list[float]] = field(default_factory=list)  # [n, P]
    plan_ahead: dict[str, list[float]] | None = None  # sent with the newest row
    carry_transport_s: float | None = None  # last transport time of the rows trimmed away
    labelled_until: int | None = None  # newest minute whose label was derived
    pending: list[list[Any]] = field(default_factory=list)  # [minute, prediction_id, degraded, decision]
    latest: dict[str, Any] | None = None  # the newest prediction's summary

    @property
    def last(self) -> int | None:
        return self.minutes[-1] if self.minutes else None

    def transport_filled(self, nominal: float) -> np.ndarray:
        """[n] transport time carried forward as a model input (training's rule: the zone's
        last value, its nominal before any)."""
        tt = np.array([v[-1] for v in self.values], dtype=np.float64)
        last = self.carry_transport_s if self.carry_transport_s is not None else nominal
        for i, v in enumerate(tt):
            if math.isnan(v):
                tt[i] = last
            else:
                last = v
        return tt

    def trim(self, capacity: int) -> None:
        drop = len(self.minutes) - capacity
        if drop <= 0:
            return
        for v in reversed(self.values[:drop]):
            if not math.isnan(v[-1]):
                self.carry_transport_s = v[-1]
                break
        del self.minutes[:drop], self.values[:drop], self.plan[:drop]

    def to_state(self) -> dict[str, Any]:
        return {"minutes": self.minutes, "values": [[_json(v) for v in row] for row in self.values],
                "plan": [[_json(v) for v in row] for row in self.plan], "plan_ahead": self.plan_ahead,
                "carry_transport_s": self.carry_transport_s, "labelled_until": self.labelled_until,
                "pending": self.pending, "latest": self.latest}

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> ZoneBuffer:
        return cls(minutes=[int(m) for m in data["minutes"]],
                   values=[[_nan(v) for v in row] for row in data["values"]],
                   plan=[[_nan(v) for v in row] for row in data["plan"]],
                   plan_ahead=data.get("plan_ahead"), carry_transport_s=data.get("carry_transport_s"),
                   labelled_until=data.get("labelled_until"),
                   pending=[list(p) for p in data.get("pending", [])], latest=data.get("latest"))


def _json(v: float) -> float | None:
    return None if math.isnan(v) else v


def _nan(v: float | None) -> float:
    return math.nan if v is None else float(v)


@dataclass
class Ingested:
    """What one observe call brought."""

    accepted: int
    gaps: list[dict[str, Any]]  # {zone, after, before, missing_minutes}
    to_score: list[dict[str, Any]]  # {zone, minute, window [L, F] float32, reasons}
    unscored: list[dict[str, Any]]  # {zone, minute, status, reason}
    outcomes: list[dict[str, Any]]  # {zone, minute, prediction_id, outcome}: predictions come due
    undefined_outcomes: int  # predictions whose horizon had a gap or no completion: no outcome
    labels: list[tuple[str, int, float]]  # (zone, minute, event 0/1 or NaN) in minute order per zone
    rows: list[Row] = field(default_factory=list)  # the rows accepted (the monitor's drift reads them)


class LiveFeed:
    """Every zone's recent minutes; see the module doc."""

    def __init__(self) -> None:
        self.zones: dict[str, ZoneBuffer] = {}

    # ------------------------------------------------------------------ ingest

    def check_order(self, rows: Sequence[Row]) -> None:
        """`FeedRefused` (409) naming every row out of order or duplicated (nothing applied)."""
        problems: list[dict[str, Any]] = []
        newest: dict[str, tuple[int, int]] = {}  # zone → (minute, row) of its newest row so far
        for row in rows:
            buffer = self.zones.get(row.zone)
            last = buffer.last if buffer is not None else None
            stamp = minute_text(row.minute)
            if row.zone in newest and row.minute == newest[row.zone][0]:
                problems.append({"row": row.index, "zone": row.zone, "timestamp": stamp,
                                 "problem": f"duplicate: the same minute as rows[{newest[row.zone][1]}]"})
            elif row.zone in newest and row.minute < newest[row.zone][0]:
                problems.append({"row": row.index, "zone": row.zone, "timestamp": stamp,
                                 "problem": f"out of order: after rows[{newest[row.zone][1]}] at "
                                            f"{minute_text(newest[row.zone][0])}"})
            elif last is not None and (row.minute == last or (row.minute < last and row.minute in buffer.minutes)):
                problems.append({"row": row.index, "zone": row.zone, "timestamp": stamp,
                                 "problem": "duplicate: this minute was already received"})
            elif last is not None and row.minute < last:
                problems.append({"row": row.index, "zone": row.zone, "timestamp": stamp,
                                 "problem": f"out of order: the zone's last minute is {minute_text(last)}"})
            else:
                newest[row.zone] = (row.minute, row.index)
        if problems:
            raise FeedRefused(409, _summary("row(s) out of order or duplicated", problems), problems)

    def ingest(self, records: Sequence[Mapping[str, Any]], spec: FeedSpec) -> Ingested:
        """Check and apply one request's rows (all or nothing), then build the windows to score
        and the outcomes and labels that came due."""
        if not records:
            raise FeedRefused(422, "no rows", [])
        rows = parse_rows(records, spec)
        self.check_order(rows)
        by_zone: dict[str, list[Row]] = {}
        for row in rows:
            by_zone.setdefault(row.zone, []).append(row)

        gaps: list[dict[str, Any]] = []
        outcomes: list[dict[str, Any]] = []
        labels: list[tuple[str, int, float]] = []
        undefined = 0
        for zone, zone_rows in by_zone.items():
            buffer = self.zones.setdefault(zone, ZoneBuffer())
            for row in zone_rows:
                if buffer.last is not None and row.minute > buffer.last + 1:
                    gaps.append({"zone": zone, "after": minute_text(buffer.last), "before": minute_text(row.minute),
                                 "missing_minutes": row.minute - buffer.last - 1})
                buffer.minutes.append(row.minute)
                buffer.values.append(list(row.values))
                buffer.plan.append(list(row.plan))
            buffer.plan_ahead = ({k: list(v) for k, v in zone_rows[-1].plan_ahead.items()}
                                 if zone_rows[-1].plan_ahead else None)
            due, undefined_here, zone_labels = self._derive(zone, buffer, spec)
            outcomes += due
            undefined += undefined_here
            labels += zone_labels
        to_score, unscored = [], []
        for zone in by_zone:  # after every zone's rows are in: neighbours see this minute too
            buffer = self.zones[zone]
            try:
                window, reasons = self.window(zone, spec)
            except _NotScored as why:
                unscored.append({"zone": zone, "minute": buffer.last, "status": why.status, "reason": str(why)})
            else:
                to_score.append({"zone": zone, "minute": buffer.last, "window": window, "reasons": reasons})
        for zone in by_zone:
            self.zones[zone].trim(spec.capacity)
        return Ingested(len(rows), gaps, to_score, unscored, outcomes, undefined, labels, rows)

    def _derive(self, zone: str, buffer: ZoneBuffer, spec: FeedSpec) -> tuple[list[dict], int, list]:
        """Labels of every minute whose horizon is now observed, and the outcomes of the
        zone's pending predictions among them (training's label: `horizon_labels`)."""
        h = spec.horizon
        last = buffer.last
        ts = np.asarray(buffer.minutes, dtype=np.int64).astype("datetime64[m]")  # [n]
        transport = np.array([v[-1] for v in buffer.values], dtype=np.float64)  # [n] NaN: empty
        codes = np.zeros(len(ts), dtype=np.int32)
        delay, event = horizon_labels(codes, ts, transport, np.full(len(ts), spec.nominal_s[zone]), h,
                                      spec.sla_delay_s)
        truth = event if spec.task == "event" else delay
        position = {m: i for i, m in enumerate(buffer.minutes)}
        start = buffer.labelled_until + 1 if buffer.labelled_until is not None else buffer.minutes[0]
        # minutes not received have no label; the rows before a gap have NaN ones (a break)
        labels = [(zone, m, float(event[i])) for i, m in enumerate(buffer.minutes) if start <= m <= last - h]
        if last - h >= start:
            buffer.labelled_until = last - h
        due, keep, undefined = [], [], 0
        for minute, pid, degraded, *decision in buffer.pending:  # decision: absent in older states
            if minute + h > last:
                keep.append([minute, pid, degraded, *decision])
                continue
            i = position.get(minute)
            value = float(truth[i]) if i is not None else math.nan
            if math.isnan(value):
                undefined += 1
            else:
                due.append({"zone": zone, "minute": minute, "prediction_id": pid, "outcome": value,
                            "degraded": bool(degraded), "decision": decision[0] if decision else None,
                            "event": float(event[i])})
        buffer.pending = keep
        return due, undefined, labels

    # ------------------------------------------------------------------ windows

    def _observed(self, zone: str, end: int, spec: FeedSpec) -> np.ndarray | None:
        """[L, 12] raw observed rows of `zone` for minutes end-L+1..end (NaN rows: minutes not
        received; transport carried forward), None when the zone has no row in that span."""
        buffer = self.zones.get(zone)
        if buffer is None or not buffer.minutes:
            return None
        lookback = spec.lookback
        values = np.array(buffer.values, dtype=np.float64)  # [n, 12]
        values[:, -1] = buffer.transport_filled(spec.nominal_s[zone])
        out = np.full((lookback, len(schema.FEATURES)), np.nan)
        offsets = np.asarray(buffer.minutes, dtype=np.int64) - (end - lookback + 1)
        inside = (offsets >= 0) & (offsets < lookback)
        if not inside.any():
            return None
        out[offsets[inside]] = values[inside]
        return out

    def window(self, zone: str, spec: FeedSpec) -> tuple[np.ndarray, tuple[str, ...]]:
        """The model input [L, F] float32 of the window ending at `zone`'s newest minute and
        why it is degraded; `_NotScored` when it cannot be scored."""
        buffer = self.zones[zone]
        end, lookback = buffer.last, spec.lookback
        span = end - buffer.minutes[0] + 1
        if span < lookback:
            raise _NotScored("warming_up", f"{len(buffer.minutes)} of the {lookback} minutes a window needs")
        observed = self._observed(zone, end, spec)
        try:
            checked = check_window(observed, lookback=lookback, rules=spec.degraded,
                                   features=schema.FEATURES, where=f"zone {zone}")
        except BadInputError as err:
            raise _NotScored("gap", str(err)) from None
        values = checked.values.astype(np.float64)  # [L, 12]
        if spec.context is not None and not spec.context.empty:
            values = np.concatenate([values, self._context(zone, end, spec)], axis=1)
        return values.astype(np.float32), checked.degraded_reasons

    def _context(self, zone: str, end: int, spec: FeedSpec) -> np.ndarray:
        ctx, lookback = spec.context, spec.lookback
        neighbours = {}
        for other in (neighbours_of(ctx, spec.zones, zone) if ctx.neighbour_slots else []):
            window = self._observed(other, end, spec)
            if window is not None and not np.isnan(window).any():  # a neighbour present all window
                neighbours[other] = window
        plan = self._plan(zone, end, spec) if ctx.plan_columns else None
        return window_context(ctx, spec.zones, zone, np.datetime64(int(end), "m"), lookback,
                              spec.nominal_s, neighbours, plan)

    def _plan(self, zone: str, end: int, spec: FeedSpec) -> dict[str, list[float]] | None:
        """The plan for the window's minutes and the next `horizon` (the newest row's
        `plan_ahead`); None (plan unknown) when any of them is missing."""
        buffer = self.zones[zone]
        ahead = buffer.plan_ahead or {}
        by_minute = dict(zip(buffer.minutes, buffer.plan))
        out = {}
        for j, col in enumerate(spec.plan_columns):
            past = [by_minute.get(m, [math.nan] * len(spec.plan_columns))[j]
                    for m in range(end - spec.lookback + 1, end + 1)]
            future = list(ahead.get(col, []))[: spec.horizon]
            values = past + future
            if len(future) < spec.horizon or any(math.isnan(v) or v < 0 for v in values):
                return None
            out[col] = values
        return out

    # ------------------------------------------------------------------ predictions

    def record(self, zone: str, minute: int, answer: Mapping[str, Any]) -> None:
        """Remember a prediction of the window ending at `minute` (its outcome comes due at
        minute + horizon) and the zone's latest risk."""
        buffer = self.zones[zone]
        buffer.pending.append([int(minute), str(answer["prediction_id"]), bool(answer.get("degraded")),
                               bool(answer["decision"])])
        buffer.latest = {"timestamp": minute_text(minute), "probability": float(answer["probability"]),
                         "decision": bool(answer["decision"]), "degraded": bool(answer.get("degraded")),
                         "prediction_id": str(answer["prediction_id"]),
                         "model_version": answer.get("model_version")}

    def latest_row(self, zone: str) -> dict[str, float] | None:
        """The zone's newest observed row as {feature: value} (None before any)."""
        buffer = self.zones.get(zone)
        if buffer is None or not buffer.values:
            return None
        return {name: _json(v) for name, v in zip(schema.FEATURES, buffer.values[-1])}

    def status(self) -> dict[str, Any]:
        return {zone: {"last_minute": minute_text(b.last) if b.last is not None else None,
                       "minutes_kept": len(b.minutes), "pending_outcomes": len(b.pending),
                       "latest": b.latest}
                for zone, b in sorted(self.zones.items())}

    # ------------------------------------------------------------------ persistence

    def to_state(self) -> dict[str, Any]:
        return {zone: b.to_state() for zone, b in sorted(self.zones.items())}

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> LiveFeed:
        feed = cls()
        feed.zones = {str(z): ZoneBuffer.from_state(b) for z, b in data.items()}
        return feed


class _NotScored(Exception):
    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status


# ---------------------------------------------------------------------------- the desk


#: score(zones, windows [B, L, F] float32, reasons) → one answer per window (as /v1/predict's)
Scorer = Callable[[list[str], np.ndarray, list[tuple[str, ...]]], Awaitable[list[dict[str, Any]]]]
#: explain(windows [K, L, F] float32) → per window the rules that fired: [{"rule", "activation"}]
Explainer = Callable[[np.ndarray], Awaitable[list[list[dict[str, Any]]]]]


class FeedDesk:
    """One observe call end to end (see the module doc), and the feed's persisted state.

    Args:
        state_path: the JSON document of the feed's state (None: nothing persisted).
        keeper: the `EnsembleKeeper` whose weights the outcomes move.
        alerts: the `AlertBook` (fabray.serve.alerts).
        history_size: weight changes kept (oldest dropped first).
        monitor: the `FeedMonitor` (fabray.serve.monitor) the rows and outcomes feed; None: one
            with the default `serve.monitor` settings.
    """

    def __init__(self, state_path: str | Path | None, keeper: Any, alerts: Any, history_size: int = 5000,
                 monitor: FeedMonitor | None = None) -> None:
        self.state_path = None if state_path is None else Path(state_path)
        self.keeper = keeper
        self.alerts = alerts
        self.monitor = monitor if monitor is not None else FeedMonitor()
        self.feed = LiveFeed()
        self.history: deque[dict[str, Any]] = deque(maxlen=int(history_size))
        self.counts = {"rows": 0, "scored": 0, "outcomes_applied": 0, "outcomes_undefined": 0}
        self._history_new: list[dict[str, Any]] = []  # weight changes since the last snapshot
        self._log_lines = {HISTORY_LOG: 0, ALERTS_LOG: 0}
        self._load()

    # Persistence: `state.json` (buffers, counts, open alerts: small) is rewritten with every
    # call; the weight history and the closed alerts only grow, so they are appended to
    # `weights.jsonl` and `alerts.jsonl` beside it (and compacted when twice their limit).

    def _log(self, name: str) -> Path:
        return self.state_path.parent / name

    def _load(self) -> None:
        if self.state_path is None or not self.state_path.is_file():
            return
        import json

        try:
            data = json.loads(self.state_path.read_text())
            if data.get("format") != FEED_FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            feed = LiveFeed.from_state(data["feed"])
            history = _read_log(self._log(HISTORY_LOG))
            closed = _read_log(self._log(ALERTS_LOG))
            self.alerts.load_state(data.get("alerts") or {}, closed)
        except (OSError, ValueError, KeyError, TypeError) as err:
            logger.error("the live feed's state %s cannot be read (%s): starting empty", self.state_path, err)
            return
        self.feed = feed
        self.history.extend(history)
        self.counts.update(data.get("counts", {}))
        self._log_lines = {HISTORY_LOG: len(history), ALERTS_LOG: len(closed)}
        try:  # a monitor state that cannot be read costs only the monitor's history
            if data.get("monitor"):
                self.monitor.load_state(data["monitor"])
        except (ValueError, KeyError, TypeError) as err:
            logger.error("the feed monitor's state in %s cannot be read (%s): monitoring starts afresh",
                         self.state_path, err)
        logger.info("live feed restored from %s: %d zones, %d alerts", self.state_path, len(feed.zones),
                    len(self.alerts.all_alerts()))

    async def observe(self, rows: Sequence[Mapping[str, Any]], spec: FeedSpec, score: Scorer,
                      explain: Explainer | None = None) -> dict[str, Any]:
        """Ingest `rows`, apply the outcomes that came due, score every zone that got its
        minute, record alerts (asking `explain` which rules fired for the windows that open
        one). The answer; `snapshot()` then holds what to persist."""
        batch = self.feed.ingest(rows, spec)
        self.counts["rows"] += batch.accepted
        self.monitor.training = spec.training
        for row in batch.rows:
            self.monitor.observe_row(row.zone, row.minute, row.values)
        applied = self._apply_outcomes(batch)
        closed = self.alerts.on_labels(batch.labels, spec.horizon)

        answers: list[dict[str, Any]] = []
        if batch.to_score:
            zones = [job["zone"] for job in batch.to_score]
            windows = np.stack([job["window"] for job in batch.to_score])  # [B, L, F]
            try:
                answers = await score(zones, windows, [tuple(job["reasons"]) for job in batch.to_score])
            except Exception as err:  # noqa: BLE001 - the rows stay accepted; the minute is unscored
                logger.warning("scoring the feed's windows failed: %s", err)
                answers = [{"error": f"the models could not score this window ({type(err).__name__}); "
                                     "it is scored again with the zone's next minute"}] * len(zones)
        if explain is not None:
            await self._explain(batch.to_score, answers, explain)
        out_zones, opened = [], []
        for job, answer in zip(batch.to_score, answers):
            zone, minute = job["zone"], job["minute"]
            if answer.get("error"):
                out_zones.append({"zone": zone, "timestamp": minute_text(minute), "status": "unscored",
                                  "reason": answer["error"]})
                continue
            answer = self._decide(spec, zone, minute, answer)
            self.feed.record(zone, minute, answer)
            self.counts["scored"] += 1
            alert = self.alerts.on_scored(zone, minute, answer, spec, self._suggestion_inputs(zone, spec))
            if alert is not None:
                opened.append(alert)
            out_zones.append({"zone": zone, "timestamp": minute_text(minute), "status": "scored",
                              "prediction": answer})
        for item in batch.unscored:
            out_zones.append({"zone": item["zone"], "timestamp": minute_text(item["minute"]),
                              "status": item["status"], "reason": item["reason"]})
        return {
            "accepted": batch.accepted,
            "zones": out_zones,
            "gaps": batch.gaps,
            "outcomes": {"applied": applied, "undefined": batch.undefined_outcomes,
                         "due": len(batch.outcomes)},
            "alerts": {"opened": [a["alert_id"] for a in opened], "closed": [a["alert_id"] for a in closed]},
        }

    def _decide(self, spec: FeedSpec, zone: str, minute: int, answer: dict[str, Any]) -> dict[str, Any]:
        """The zone's decision this minute under the served alarm policy (hysteresis, hold: the
        keeper's `decide`, state kept per zone over consecutive minutes); a degraded answer keeps
        the plain threshold and restarts the zone's alarm state."""
        decide = getattr(self.keeper, "decide", None)
        if decide is None or not self.keeper.has(spec.version):
            return answer
        if answer.get("degraded"):
            self.keeper.forget_alarm(spec.version, zone)
            return answer
        return {**answer, "decision": bool(decide(spec.version, zone, answer["probability"], minute))}

    async def _explain(self, jobs: list[dict[str, Any]], answers: list[dict[str, Any]], explain: Explainer) -> None:
        """`rules_fired` on the answers that will open an alert (an alarm in a zone with none
        open); an explainer that fails leaves them without (the alert says so by an empty list)."""
        rising = [i for i, (job, answer) in enumerate(zip(jobs, answers))
                  if not answer.get("error") and answer.get("decision") and not self.alerts.is_open(job["zone"])]
        if not rising:
            return
        try:
            fired = await explain(np.stack([jobs[i]["window"] for i in rising]))
        except Exception as err:  # noqa: BLE001 - an alert without its rules beats no alert
            logger.warning("which rules fired could not be computed: %s", err)
            return
        for i, rules in zip(rising, fired):
            answers[i] = {**answers[i], "rules_fired": list(rules)}

    def _apply_outcomes(self, batch: Ingested) -> int:
        """Outcomes that came due → the keeper's weights (as /v1/feedback would), and the
        weight history."""
        self.counts["outcomes_undefined"] += batch.undefined_outcomes
        for o in batch.outcomes:  # the monitor's rolling precision / recall, per zone
            self.monitor.observe_outcome(o["zone"], o["minute"], o.get("decision"), o.get("event"))
        items = [{"prediction_id": o["prediction_id"], "outcome": o["outcome"]} for o in batch.outcomes]
        if not items:
            return 0
        result = self.keeper.feedback(items)
        self.counts["outcomes_applied"] += result["applied"]
        if result["applied"]:
            at = minute_text(max(o["minute"] for o in batch.outcomes))
            for version, zones in result["weights"].items():
                for zone, weights in zones.items():
                    entry = {"prediction_minute": at, "version": version, "zone": zone, "weights": weights}
                    self.history.append(entry)
                    self._history_new.append(entry)
        return int(result["applied"])

    def _suggestion_inputs(self, zone: str, spec: FeedSpec) -> dict[str, Any]:
        """What a suggested action looks at: the zone's and its neighbours' newest rows and risks."""
        zones = [zone, *spec.neighbours(zone)]
        return {z: {"row": self.feed.latest_row(z),
                    "latest": self.feed.zones[z].latest if z in self.feed.zones else None,
                    "plan_ahead": self.feed.zones[z].plan_ahead if z in self.feed.zones else None}
                for z in zones}

    # ------------------------------------------------------------------ reading

    def weight_history(self, zone: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        items = [h for h in self.history if zone is None or h["zone"] == zone]
        return items[-limit:]

    def status(self) -> dict[str, Any]:
        return {"zones": self.feed.status(), "counts": dict(self.counts), "monitor": self.monitor_summary()}

    def monitor_summary(self) -> dict[str, Any]:
        """The monitor's summary (`FeedMonitor.summary`): rolling per-zone metrics with the
        alerts' realised leads, input drift, retrain advised."""
        return self.monitor.summary(alerts=self.alerts.all_alerts())

    # ------------------------------------------------------------------ persistence

    def snapshot(self) -> dict[str, Any]:
        """What changed since the last snapshot, JSON-able, for `write` (take it on the event
        loop, after the call that changed it; write it off the loop). Snapshots must be written
        in the order they were taken."""
        history, self._history_new = self._history_new, []
        return {"state": {"format": FEED_FORMAT, "feed": self.feed.to_state(), "counts": dict(self.counts),
                          "alerts": self.alerts.to_state(), "monitor": self.monitor.to_state()},
                "history": history, "closed_alerts": self.alerts.drain_closed()}

    def full_state(self) -> dict[str, Any]:
        """Everything the desk holds (buffers, counts, weight history, every alert kept): what
        a restart must give back."""
        return {"feed": self.feed.to_state(), "counts": dict(self.counts), "history": list(self.history),
                "alerts": self.alerts.all_alerts(), "run_start": self.alerts.to_state()["run_start"],
                "monitor": self.monitor.to_state()}

    def write(self, payload: Mapping[str, Any]) -> None:
        """Persist a `snapshot`: append the logs first, then replace the state (a crash between
        the two leaves an alert both open in the state and closed in the log: read as closed)."""
        if self.state_path is None:
            return
        import json

        from fabray.files import atomic_write_text

        for name, entries, limit in ((HISTORY_LOG, payload["history"], self.history.maxlen),
                                     (ALERTS_LOG, payload["closed_alerts"], self.alerts.capacity)):
            if not entries:
                continue
            path = self._log(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as fh:
                fh.write("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries))
                fh.flush()
                os.fsync(fh.fileno())
            self._log_lines[name] += len(entries)
            if self._log_lines[name] > 2 * limit:  # compact: keep the newest `limit` lines
                kept = _read_log(path)[-limit:]
                atomic_write_text(path, "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in kept))
                self._log_lines[name] = len(kept)
        atomic_write_text(self.state_path, json.dumps(payload["state"], separators=(",", ":")))


def _read_log(path: Path) -> list[dict[str, Any]]:
    """The entries of a JSON-lines log; a torn last line (a crash mid-append) is skipped."""
    import json

    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            logger.warning("%s: skipping a damaged line", path)
    return out
