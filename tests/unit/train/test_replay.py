"""Replay windows: how many, drawn how, and how they join the new data's series (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from fabray.data.windows import gather_windows
from fabray.train.replay import TrainSeries, replay_size, sample_replay, with_replay

LOOKBACK = 5


def _source(n: int, f: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, f)).astype(np.float32), rng.integers(0, 2, n).astype(np.float32)


def test_replay_size_follows_the_ratio_and_both_caps():
    assert replay_size(1000, 10_000, 0.5, None) == 500
    assert replay_size(1000, 10_000, 0.5, 200) == 200  # capped by config
    assert replay_size(1000, 300, 0.5, None) == 300  # capped by the history's size
    assert replay_size(1000, 10_000, 0.0, None) == 0
    with pytest.raises(ValueError, match="ratio"):
        replay_size(10, 10, -1.0, None)


def test_sample_is_uniform_over_all_sources_without_repeats_and_deterministic():
    ends = [np.arange(10, 110, dtype=np.int64), np.arange(20, 320, dtype=np.int64)]  # 100 + 300
    drawn = sample_replay(ends, 200, seed=7)
    again = sample_replay(ends, 200, seed=7)
    assert [d.tolist() for d in drawn] == [a.tolist() for a in again]
    assert sum(len(d) for d in drawn) == 200
    for d, e in zip(drawn, ends):
        assert set(d.tolist()) <= set(e.tolist()) and len(set(d.tolist())) == len(d)
    # proportional to size: 1/4 of the draws from the first source, give or take
    assert 30 <= len(drawn[0]) <= 70
    with pytest.raises(ValueError, match="cannot draw"):
        sample_replay(ends, 401, seed=0)


def test_replayed_windows_in_the_joined_series_are_the_source_windows():
    new_f, new_t = _source(50, seed=1)
    old_f, old_t = _source(80, seed=2)
    new = TrainSeries(new_f, new_t, np.arange(LOOKBACK - 1, 30), np.arange(40, 50))
    drawn, drawn_val = np.array([LOOKBACK - 1, 33, 79]), np.array([60, 70])
    empty = np.zeros(0, np.int64)
    joined = with_replay(new, [(old_f, old_t, drawn, drawn_val), (old_f, old_t, empty, empty)])
    assert joined.features.shape == (130, 3)  # the empty source adds no rows
    assert joined.replay_windows == 3 and joined.replay_val_windows == 2
    assert joined.train_ends.tolist() == [*range(LOOKBACK - 1, 30), 54, 83, 129]
    assert joined.val_ends.tolist() == [*range(40, 50), 110, 120]  # the new data's, then the history's
    for ends, source_ends in ((joined.train_ends[-3:], drawn), (joined.val_ends[-2:], drawn_val)):
        np.testing.assert_array_equal(gather_windows(joined.features, ends, LOOKBACK),
                                      gather_windows(old_f, source_ends, LOOKBACK))
        np.testing.assert_array_equal(joined.target[ends], old_t[source_ends])


def test_a_source_drawn_for_validation_only_adds_its_rows():
    new_f, new_t = _source(20, seed=1)
    old_f, old_t = _source(30, seed=2)
    new = TrainSeries(new_f, new_t, np.arange(4, 10), np.arange(10, 20))
    joined = with_replay(new, [(old_f, old_t, np.zeros(0, np.int64), np.array([25]))])
    assert joined.replay_windows == 0 and joined.replay_val_windows == 1
    assert joined.train_ends.tolist() == list(range(4, 10)) and joined.val_ends[-1] == 45


def test_a_source_with_other_features_is_refused():
    new_f, new_t = _source(20)
    bad_f, bad_t = _source(20, f=4)
    new = TrainSeries(new_f, new_t, np.arange(4, 10), np.arange(10, 20))
    with pytest.raises(ValueError, match="F = 3"):
        with_replay(new, [(bad_f, bad_t, np.array([5]), np.zeros(0, np.int64))])


def test_validation_ends_outside_the_source_are_refused():
    new_f, new_t = _source(20)
    old_f, old_t = _source(20, seed=3)
    new = TrainSeries(new_f, new_t, np.arange(4, 10), np.arange(10, 20))
    with pytest.raises(ValueError, match="outside their source's 20 rows"):
        with_replay(new, [(old_f, old_t, np.array([5]), np.array([20]))])
