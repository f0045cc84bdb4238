"""`fabray demo`'s replay slice (stage 7): the minutes before the held-out start that fill the
server's buffers, then at most the given number of minutes, for every zone."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fabray.demo import replay_slice


def test_the_slice_fills_the_buffers_then_stops_after_the_scored_minutes():
    stamps = pd.date_range("2025-01-06T00:00", periods=600, freq="min")
    frame = pd.DataFrame({"timestamp": np.repeat(stamps, 2), "zone": ["Z01", "Z02"] * 600,
                          "queue_len": 1.0})
    start = np.datetime64("2025-01-06T05:00")
    part = replay_slice(frame, start, lookback=100, minutes=30)
    minutes = pd.to_datetime(part["timestamp"]).drop_duplicates()
    assert minutes.iloc[0] == pd.Timestamp("2025-01-06T05:00") - pd.Timedelta(minutes=99)
    assert minutes.iloc[-1] == pd.Timestamp("2025-01-06T05:29")
    assert len(minutes) == 99 + 30 and len(part) == 2 * len(minutes)
    # fewer minutes left than asked: up to the end of the data
    assert pd.to_datetime(replay_slice(frame, np.datetime64("2025-01-06T09:50"), 100, 480)["timestamp"]).max() \
        == stamps[-1]
