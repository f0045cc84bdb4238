"""`LiveFeed`: every zone's last `lookback + horizon` minutes (`ZoneBuffer`), the windows built
from them and the outcomes derived H minutes after each prediction (the second and third items
of `fabray.serve.feed`'s module doc)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fabray import schema
from fabray.data.context import neighbours_of, window_context
from fabray.data.windows import horizon_labels
from fabray.errors import BadInputError
from fabray.serve.feed_rows import FeedRefused, FeedSpec, Row, _summary, minute_text, parse_rows
from fabray.serve.validation import check_window


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
        _, event = horizon_labels(codes, ts, transport, np.full(len(ts), spec.nominal_s[zone]), h,
                                  spec.sla_delay_s)
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
            value = float(event[i]) if i is not None else math.nan
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
