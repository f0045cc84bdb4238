"""Targets (DESIGN §1): the mean transport delay over the next `horizon` minutes, and its event.

Pure numpy. Works on one contiguous segment of one zone (no zone boundary, no gap inside): the
caller (windows) cuts the series into such segments.
"""

from __future__ import annotations

import numpy as np


def future_mean(values: np.ndarray, horizon: int) -> np.ndarray:
    """result[t] = mean of values[t+1 .. t+horizon], skipping NaN (minutes with no completions).

    NaN where fewer than `horizon` minutes follow t, or where every one of them is NaN.
    """
    values = np.asarray(values, dtype=np.float64)  # [T]
    n = len(values)
    out = np.full(n, np.nan)
    if n <= horizon:
        return out
    present = ~np.isnan(values)
    sums = np.zeros(n + 1)  # [T + 1] sums[i] = sum of the first i present values
    np.cumsum(np.where(present, values, 0.0), out=sums[1:])
    counts = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(present, out=counts[1:])
    del present
    # t = 0 … T − horizon − 1 as slices (no index arrays): the window t+1 … t+horizon
    window_sum = sums[horizon + 1:] - sums[1:n - horizon + 1]  # [T − horizon]
    del sums
    window_count = counts[horizon + 1:] - counts[1:n - horizon + 1]
    del counts
    with np.errstate(invalid="ignore", divide="ignore"):
        out[:n - horizon] = np.where(window_count > 0, window_sum / np.maximum(window_count, 1), np.nan)
    return out


def delay_targets(
    transport_time_s: np.ndarray, nominal_s: float, horizon: int
) -> np.ndarray:
    """delay_s[t]: mean(transport_time_s[t+1 .. t+horizon]) − nominal_s; NaN where undefined."""
    return future_mean(transport_time_s, horizon) - float(nominal_s)


def delay_events(delay_s: np.ndarray, sla_delay_s: float) -> np.ndarray:
    """delay_event[t] = 1.0 where delay_s exceeds the SLA, 0.0 where not, NaN where undefined."""
    delay_s = np.asarray(delay_s, dtype=np.float64)
    return np.where(np.isnan(delay_s), np.nan, (delay_s > sla_delay_s).astype(np.float64))
