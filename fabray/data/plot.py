"""Draw one zone's day of zone-minute data (simulated or real): demand, queue, failures, delays.

Returns a matplotlib `Figure` on the Agg canvas (no pyplot, no display, no global state); the
caller decides where to save it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fabray import schema
from fabray.errors import BadInputError


def busiest_zone_day(frame: pd.DataFrame) -> tuple[str, pd.Timestamp]:
    """The (zone, day) with the most waiting: the largest sum of `queue_len` over the day.

    Requests follow the same daily profile every day, so "busiest" means most congested.
    """
    if frame.empty:
        raise BadInputError("cannot pick a day to draw from an empty frame. Received: 0 rows")
    day = frame[schema.TIMESTAMP].dt.floor("D")
    load = frame.groupby([frame[schema.ZONE], day], sort=True)["queue_len"].sum()
    zone, best_day = load.idxmax()
    return str(zone), pd.Timestamp(best_day)


def plot_zone_day(
    frame: pd.DataFrame,
    delay_event: np.ndarray,
    nominal_s: dict[str, float],
    sla_delay_s: float,
    zone: str | None = None,
    day: pd.Timestamp | str | None = None,
) -> Figure:
    """Stacked panels for one zone's day, with its delay events shaded.

    `delay_event` is aligned with `frame`'s rows (1 = the next horizon's mean delay exceeds the
    SLA). Without `zone`/`day`, the busiest zone-day (see `busiest_zone_day`) is drawn.
    """
    if len(delay_event) != len(frame):
        raise BadInputError(
            f"delay_event must have one value per row. Received: {len(delay_event)} values "
            f"for {len(frame)} rows"
        )
    if zone is None or day is None:
        zone, day = busiest_zone_day(frame)
    day = pd.Timestamp(day).floor("D")
    mask = (
        (frame[schema.ZONE] == zone)
        & (frame[schema.TIMESTAMP] >= day)
        & (frame[schema.TIMESTAMP] < day + pd.Timedelta(days=1))
    ).to_numpy()
    if not mask.any():
        raise BadInputError(f"no rows for zone {zone!r} on {day.date()}. Received: zone={zone!r}, day={day}")
    rows = frame.loc[mask]
    events = np.nan_to_num(np.asarray(delay_event, dtype=np.float64)[mask]) > 0.5
    t = rows[schema.TIMESTAMP].to_numpy()
    nominal = float(nominal_s[zone])

    fig = Figure(figsize=(13, 10), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(5, 1, sharex=True, height_ratios=[1.1, 1.1, 0.8, 0.9, 1.5])
    ax_req, ax_queue, ax_fail, ax_util, ax_tt = axes

    ax_req.plot(t, rows["requests"], lw=0.7, color="tab:blue", label="requests")
    ax_req.plot(t, rows["completions"], lw=0.7, color="tab:green", alpha=0.8, label="completions")
    ax_req.set_ylabel("transports / min")

    ax_queue.plot(t, rows["queue_len"], lw=0.9, color="tab:orange", label="queue_len")
    ax_queue.fill_between(t, 0, rows["hot_lots"], step="mid", color="tab:red", alpha=0.6, label="hot_lots")
    ax_queue.set_ylabel("requests waiting")

    ax_fail.step(t, rows["vehicles_down"], where="mid", lw=1.0, color="tab:purple", label="vehicles_down")
    ax_fail.step(t, rows["blocked_segments"], where="mid", lw=1.0, color="black", label="blocked_segments")
    ax_fail.set_ylabel("count")
    top = max(int(rows["vehicles_down"].max()), int(rows["blocked_segments"].max()), 1)
    ax_fail.set_ylim(-0.2, top + 0.8)

    ax_util.plot(t, rows["vehicle_util"], lw=0.7, color="tab:cyan", label="vehicle_util")
    ax_util.plot(t, rows["stocker_fill"], lw=1.0, color="tab:brown", label="stocker_fill")
    ax_util.plot(t, rows["mean_speed"] / max(rows["mean_speed"].max(), 1e-9), lw=0.7, color="tab:gray",
                 label="mean_speed / day max")
    ax_util.set_ylim(0, 1.05)
    ax_util.set_ylabel("fraction")

    tt = rows[schema.TRANSPORT_TIME]
    ax_tt.plot(t, tt, lw=0.7, color="tab:blue", label=schema.TRANSPORT_TIME)
    ax_tt.axhline(nominal, color="tab:green", lw=1.2, ls="--", label=f"nominal {nominal:.0f} s")
    ax_tt.axhline(nominal + sla_delay_s, color="tab:red", lw=1.2, ls="--",
                  label=f"nominal + SLA {sla_delay_s:.0f} s")
    finite = tt.dropna()
    if len(finite):
        ceiling = max(float(finite.max()), nominal + 3 * sla_delay_s)
        ax_tt.set_ylim(0, ceiling * 1.05)
    ax_tt.set_ylabel("seconds")
    ax_tt.set_xlabel(f"{day.date()} (zone {zone})")

    for ax in axes:
        _shade(ax, t, events)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8, ncols=3)
    axes[0].set_title(
        f"Zone {zone}, {day.date()}: shaded = delay_event (mean delay over the next minutes > "
        f"{sla_delay_s:.0f} s); {events.mean():.0%} of the day's minutes"
    )
    return fig


def _shade(ax, t: np.ndarray, events: np.ndarray) -> None:
    """Shade the runs of consecutive event minutes."""
    if not events.any():
        return
    edges = np.flatnonzero(np.diff(np.r_[0, events.astype(np.int8), 0]))
    step = t[1] - t[0] if len(t) > 1 else np.timedelta64(1, "m")
    for start, stop in zip(edges[::2], edges[1::2]):
        ax.axvspan(t[start], t[stop - 1] + step, color="tab:red", alpha=0.12, lw=0)
