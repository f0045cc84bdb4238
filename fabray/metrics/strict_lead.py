"""The older strict lead time: minutes of warning an alarm gave before each episode's first row
(`lead_times`, `episode_starts`, `lead_time_summary`). The headline lead metrics are in
`fabray.metrics.lead`."""

from __future__ import annotations

import math

import numpy as np


def episode_starts(event_true: np.ndarray, zone_codes: np.ndarray) -> np.ndarray:
    """Row indices where a delay episode starts: an event row whose previous row is not an event
    of the same zone (or which is its zone's first row). NaN targets count as "not an event"."""
    event = np.nan_to_num(np.asarray(event_true, dtype=np.float64).reshape(-1), nan=0.0) == 1  # [N]
    zone_codes = np.asarray(zone_codes).reshape(-1)
    if zone_codes.shape != event.shape:
        raise ValueError(
            f"event_true and zone_codes must have the same length. "
            f"Received: {event.size} and {zone_codes.size}"
        )
    new_zone = np.ones(event.size, dtype=bool)
    new_zone[1:] = zone_codes[1:] != zone_codes[:-1]
    prev_event = np.zeros(event.size, dtype=bool)
    prev_event[1:] = event[:-1]
    return np.flatnonzero(event & (new_zone | ~prev_event))


def lead_times(event_true: np.ndarray, alarm: np.ndarray, zone_codes: np.ndarray) -> np.ndarray:
    """Minutes of warning the alarm gave before each delay episode; NaN for an episode it missed.

    The series is given in (zone, time) order, one row per minute and no gap inside a zone (pass a
    segment id that changes at a gap as `zone_codes` when the data has gaps).

    What "episode start" means: the label at row t concerns minutes t+1 … t+horizon, so an
    *episode* is a maximal run of consecutive event rows of one zone, and its *start* is its
    first row s: the first minute at which the coming `horizon` minutes are, on average, late
    beyond the SLA. It is a forecast time, not the minute the delay is first observed (that is
    somewhere in s+1 … s+horizon); a lead of 0 therefore still means a warning before the delay.

    The lead of the episode starting at s is s − a, where a is the first row of the unbroken run
    of alarm rows (same zone) that reaches s: 0 if the alarm is raised exactly at s, k if it was
    raised k minutes earlier and stayed up. If the alarm is down at s the episode is missed: NaN.
    (An alarm raised only after s does not count: it is late.) An episode at a zone's first row
    is left-censored: its lead counts only alarms from that row on.

    Args:
        event_true: [N] delay_event (0/1, NaN counts as not an event).
        alarm: [N] bool (or 0/1) alarms, e.g. `prob >= threshold`.
        zone_codes: [N] zone (or segment) id of each row.

    Returns:
        [episodes] float lead times in minutes, in row order, NaN where missed.
    """
    alarm = np.asarray(alarm).reshape(-1)
    if alarm.dtype != bool:
        alarm = np.nan_to_num(alarm.astype(np.float64), nan=0.0) != 0
    zone_codes = np.asarray(zone_codes).reshape(-1)
    starts = episode_starts(event_true, zone_codes)  # [E]
    if alarm.shape != zone_codes.shape:
        raise ValueError(
            f"alarm and zone_codes must have the same length. Received: {alarm.size} and {zone_codes.size}"
        )
    rows = np.arange(alarm.size)
    new_zone = np.ones(alarm.size, dtype=bool)
    new_zone[1:] = zone_codes[1:] != zone_codes[:-1]
    prev_alarm = np.zeros(alarm.size, dtype=bool)
    prev_alarm[1:] = alarm[:-1]
    run_begins = alarm & (new_zone | ~prev_alarm)  # [N] first row of each alarm run
    run_start = np.maximum.accumulate(np.where(run_begins, rows, 0))  # [N] valid where alarm
    return np.where(alarm[starts], (starts - run_start[starts]).astype(np.float64), np.nan)


def lead_time_summary(leads: np.ndarray) -> dict[str, float]:
    """Summary of `lead_times`: episodes, caught (alarm up at the start), caught_fraction, and the
    median and mean lead (minutes) over the caught episodes (NaN when none was caught)."""
    leads = np.asarray(leads, dtype=np.float64).reshape(-1)
    caught = leads[~np.isnan(leads)]
    episodes = int(leads.size)
    return {
        "episodes": episodes,
        "caught": int(caught.size),
        "caught_fraction": caught.size / episodes if episodes else math.nan,
        "median_lead_min": float(np.median(caught)) if caught.size else math.nan,
        "mean_lead_min": float(np.mean(caught)) if caught.size else math.nan,
    }
