"""Build `/v1/predict` request bodies from zone-minute data (what a client, the demo, the tests
and the benchmarks send). Pure pandas: no Ray, no HTTP.

A body carries the zone's last `lookback` minutes up to `end_time` in raw units (JSON null for an
empty transport time), the window's last minute (`timestamp`, for calendar inputs), the windows
of the given neighbour zones over the same minutes, and, when the frame has plan columns, the
plan for those minutes and the next `horizon` (known-future inputs).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from fabray import schema
from fabray.errors import BadInputError


def _rows(frame: pd.DataFrame, zone: str, minutes: pd.DatetimeIndex, columns: Sequence[str]) -> pd.DataFrame:
    rows = frame[frame[schema.ZONE] == zone].set_index(schema.TIMESTAMP)
    return rows.reindex(minutes)[list(columns)]


def _json_rows(values: pd.DataFrame) -> list[list[float | None]]:
    arr = values.to_numpy(dtype=np.float64)
    return [[None if np.isnan(v) else float(v) for v in row] for row in arr]


def predict_body(
    frame: pd.DataFrame,
    zone: str,
    *,
    lookback: int = 100,
    horizon: int = 10,
    end_time: Any = None,
    neighbours: Sequence[str] = (),
) -> dict[str, Any]:
    """The JSON body scoring `zone`'s window ending at `end_time` (default: its last minute).

    Missing minutes become nulls (the service flags or refuses them); a neighbour with no row in
    the window is left out (the service treats it as absent)."""
    frame = frame.assign(**{schema.TIMESTAMP: pd.to_datetime(frame[schema.TIMESTAMP])})
    own = frame[frame[schema.ZONE] == zone]
    if own.empty:
        raise BadInputError(f"zone {zone!r} has no rows. Zones: {sorted(frame[schema.ZONE].unique())}")
    end = pd.Timestamp(end_time) if end_time is not None else own[schema.TIMESTAMP].max()
    minutes = pd.date_range(end - pd.Timedelta(minutes=lookback - 1), end, freq="min")
    body: dict[str, Any] = {
        "zone": zone,
        "window": _json_rows(_rows(frame, zone, minutes, schema.FEATURES)),
        "timestamp": end.strftime("%Y-%m-%dT%H:%M"),
    }
    nb = {}
    for other in neighbours:
        values = _rows(frame, other, minutes, schema.FEATURES)
        if values.notna().any(axis=None):
            nb[other] = _json_rows(values)
    if nb:
        body["neighbours"] = nb
    plan_cols = [c for c in schema.PLAN_COLUMNS if c in frame.columns]
    if plan_cols:
        future = pd.date_range(minutes[0], end + pd.Timedelta(minutes=horizon), freq="min")
        plan = _rows(frame, zone, future, plan_cols)
        if plan.notna().all(axis=None):  # the plan is sent only when it covers every minute
            body["plan"] = {c: [float(v) for v in plan[c]] for c in plan_cols}
    return body


def feed_minutes(frame: pd.DataFrame, *, horizon: int = 10) -> Iterator[tuple[pd.Timestamp, list[dict[str, Any]]]]:
    """`/v1/observe` rows of a zone-minute frame, minute by minute (what `fabray replay` sends):
    (timestamp, every zone's row of that minute as a record: the data contract's columns in raw
    units, JSON null for an empty transport time, the plan columns and, when the frame has
    them, `plan_ahead`: the plan for the next `horizon` minutes, known ahead)."""
    frame = frame.assign(**{schema.TIMESTAMP: pd.to_datetime(frame[schema.TIMESTAMP])})
    frame = frame.sort_values([schema.TIMESTAMP, schema.ZONE], kind="stable")
    plan_cols = [c for c in schema.PLAN_COLUMNS if c in frame.columns]
    ahead: dict[str, np.ndarray] = {}
    if plan_cols:
        for col in plan_cols:  # [N, horizon]: the zone's plan at t+1 … t+horizon, NaN where unknown
            series = frame.set_index([schema.ZONE, schema.TIMESTAMP])[col]
            shifted = [series.reindex(list(zip(frame[schema.ZONE], frame[schema.TIMESTAMP]
                                               + pd.Timedelta(minutes=k)))).to_numpy(np.float64)
                       for k in range(1, horizon + 1)]
            ahead[col] = np.stack(shifted, axis=1)
    columns = [*schema.FEATURES, *plan_cols]
    values = frame[columns].to_numpy(np.float64)  # [N, C]
    zones = frame[schema.ZONE].astype(str).to_numpy()
    stamps = frame[schema.TIMESTAMP].to_numpy()
    starts = np.flatnonzero(np.append(True, stamps[1:] != stamps[:-1]))
    stops = np.append(starts[1:], len(stamps))
    for start, stop in zip(starts, stops):
        when = pd.Timestamp(stamps[start])
        rows = []
        for i in range(start, stop):
            record: dict[str, Any] = {schema.TIMESTAMP: when.strftime("%Y-%m-%dT%H:%M"), schema.ZONE: zones[i]}
            record.update({c: (None if np.isnan(v) else float(v)) for c, v in zip(columns, values[i])})
            if ahead and all(not np.isnan(ahead[c][i]).any() for c in plan_cols):
                record["plan_ahead"] = {c: ahead[c][i].tolist() for c in plan_cols}
            rows.append(record)
        yield when, rows
