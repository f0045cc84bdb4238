"""Delay episodes, their observed onsets and their causes (defined in `fabray.metrics.lead`'s
opening comment)."""

from __future__ import annotations

import numpy as np

from fabray.metrics._inputs import _check_lengths, _events


def _segment_bounds(segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N] first and last row index of each row's segment."""
    segments = np.asarray(segments).reshape(-1)
    n = segments.size
    rows = np.arange(n)
    new = np.ones(n, dtype=bool)
    new[1:] = segments[1:] != segments[:-1]
    last = np.ones(n, dtype=bool)
    last[:-1] = new[1:]
    seg_first = np.maximum.accumulate(np.where(new, rows, 0)) if n else rows  # [N]
    seg_last = np.minimum.accumulate(np.where(last, rows, n)[::-1])[::-1] if n else rows  # [N]
    return seg_first, seg_last


def _next_true(mask: np.ndarray) -> np.ndarray:
    """[N + 1] index of the first True at or after each row (N where none); entry N is N."""
    n = mask.size
    idx = np.where(mask, np.arange(n), n)
    out = np.empty(n + 1, dtype=np.int64)
    out[n] = n
    out[:n] = np.minimum.accumulate(idx[::-1])[::-1] if n else idx
    return out


def _event_mask(event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """event [N] 0/1/NaN → (is_event [N] bool, defined [N] bool)."""
    event = np.asarray(event, dtype=np.float64).reshape(-1)
    defined = ~np.isnan(event)
    _events(event[defined])  # raises on anything but 0/1
    return np.nan_to_num(event, nan=0.0) == 1, defined


def episodes(event: np.ndarray, segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Delay episodes: maximal runs of event == 1 rows inside one segment.

    Args:
        event: [N] delay_event of the window ending at each row, 0/1/NaN (NaN breaks a run).
        segments: [N] segment id (changes at a zone change and at a gap), rows in (segment, time)
            order.

    Returns:
        (starts [E], ends [E]): first and last row (inclusive) of each episode, in row order.
    """
    is_event, _ = _event_mask(event)
    segments = np.asarray(segments).reshape(-1)
    _check_lengths(is_event.size, segments=segments)
    n = is_event.size
    new_seg = np.ones(n, dtype=bool)
    new_seg[1:] = segments[1:] != segments[:-1]
    prev = np.zeros(n, dtype=bool)
    prev[1:] = is_event[:-1]
    nxt = np.zeros(n, dtype=bool)
    nxt[:-1] = is_event[1:]
    end_seg = np.ones(n, dtype=bool)
    end_seg[:-1] = new_seg[1:]
    starts = np.flatnonzero(is_event & (new_seg | ~prev))
    ends = np.flatnonzero(is_event & (end_seg | ~nxt))
    return starts, ends


def observed_onsets(
    starts: np.ndarray,
    ends: np.ndarray,
    segments: np.ndarray,
    minute_delay_s: np.ndarray,
    sla_delay_s: float,
    horizon: int,
) -> np.ndarray:
    """Observed onset of each episode: the first row r in [s, min(e + H, segment end)] whose own
    transport delay `minute_delay_s[r]` exceeds `sla_delay_s`; if none, min(s + H, segment end).

    No smoothing: a single late minute is the onset. NaN delays never exceed the SLA.

    Args:
        starts, ends: [E] episode rows from `episodes`.
        segments: [N] segment ids.
        minute_delay_s: [N] each minute's own transport delay, seconds.
        sla_delay_s: the SLA delay, seconds.
        horizon: H, minutes the label looks ahead.

    Returns:
        [E] int row index of each observed onset (s <= o <= segment end).
    """
    starts = np.asarray(starts, dtype=np.int64).reshape(-1)
    ends = np.asarray(ends, dtype=np.int64).reshape(-1)
    delay = np.asarray(minute_delay_s, dtype=np.float64).reshape(-1)
    _, seg_last = _segment_bounds(segments)
    _check_lengths(seg_last.size, minute_delay_s=delay)
    with np.errstate(invalid="ignore"):
        late = delay > sla_delay_s  # [N]
    nxt = _next_true(late)  # [N + 1]
    last = seg_last[starts] if starts.size else starts
    first_late = nxt[starts]  # [E]
    search_end = np.minimum(ends + horizon, last)
    fallback = np.minimum(starts + horizon, last)
    return np.where(first_late <= search_end, first_late, fallback).astype(np.int64)


def episode_causes(cause: np.ndarray | None, starts: np.ndarray, onsets: np.ndarray) -> np.ndarray:
    """Cause of each episode: the most common non-empty `cause` value over rows [s, o]
    ("unknown" if none; ties go to the value seen first). [E] object array of str."""
    starts = np.asarray(starts, dtype=np.int64).reshape(-1)
    onsets = np.asarray(onsets, dtype=np.int64).reshape(-1)
    out = np.full(starts.size, "unknown", dtype=object)
    if cause is None:
        return out
    cause = np.asarray(cause, dtype=object).reshape(-1)
    for i, (s, o) in enumerate(zip(starts, onsets)):
        values = [str(c) for c in cause[s : o + 1] if c is not None and c == c and str(c) != ""]
        if values:
            counts: dict[str, int] = {}
            for v in values:
                counts[v] = counts.get(v, 0) + 1
            out[i] = max(counts, key=counts.get)  # first maximum in insertion order
    return out
