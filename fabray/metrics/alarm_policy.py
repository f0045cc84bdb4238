"""The alarm policy (`fabray.alarm.AlarmPolicy`) applied to a whole probability series at once."""

from __future__ import annotations

import numpy as np


def policy_alarms(
    prob: np.ndarray, segments: np.ndarray | None, threshold: float, clear_ratio: float = 1.0,
    hold_min: int = 0,
) -> np.ndarray:
    """[N] bool alarm of a probability series [N] in (segment, time) order under an alarm policy
    (`fabray.alarm.AlarmPolicy`: raise at `threshold`, keep above `threshold · clear_ratio`, hold
    `hold_min` minutes after the last raise); `segments` [N] restarts the state where it changes
    (None: one segment). NaN probabilities never raise."""
    p = np.nan_to_num(np.asarray(prob, dtype=np.float64).reshape(-1), nan=-np.inf)  # [N]
    n = p.size
    if clear_ratio == 1.0 and hold_min == 0:  # a plain threshold
        return p >= threshold
    new_seg = np.ones(n, dtype=bool)
    if segments is not None:
        seg = np.asarray(segments).reshape(-1)
        if seg.size != n:
            raise ValueError(f"segments has {seg.size} rows, prob {n}")
        new_seg[1:] = seg[1:] != seg[:-1]
    else:
        new_seg[1:] = False
    idx = np.arange(n)
    raised = p >= threshold  # [N]
    keep = p >= threshold * clear_ratio  # [N] ⊇ raised
    # hysteresis: inside each run of `keep` (within a segment), on from its first raise on
    prev_keep = np.zeros(n, dtype=bool)
    prev_keep[1:] = keep[:-1]
    run_start = keep & (new_seg | ~prev_keep)
    run_first = np.maximum.accumulate(np.where(run_start, idx, 0))  # [N] start of the current run
    raises = np.cumsum(raised)  # [N]
    before_run = raises[run_first] - raised[run_first]  # raises before the run began
    hyst = keep & (raises - before_run > 0)
    # hold: minutes since the last raise within the segment
    seg_first = np.maximum.accumulate(np.where(new_seg, idx, 0))  # [N]
    last_raise = np.maximum.accumulate(np.where(raised, idx, -1))  # [N]
    held = (last_raise >= seg_first) & (idx - last_raise <= hold_min)
    return hyst | held
