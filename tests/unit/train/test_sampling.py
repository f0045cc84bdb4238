"""Sampled epochs: stratified, fresh per epoch, deterministic per seed, full epochs when unset."""

from __future__ import annotations

import numpy as np
import pytest

from fabray.train.sampling import (
    END,
    EpochSampler,
    SampledShard,
    epoch_sample_size,
    rebatch,
    stratified_sample,
    stratum_counts,
    validation_sample,
)


def _series(n_rows: int = 5000, event_rate: float = 0.07, seed: int = 1):
    rng = np.random.default_rng(seed)
    target = (rng.random(n_rows) < event_rate).astype(np.float32)  # [N]
    ends = np.arange(99, n_rows - 10, dtype=np.int64)  # the valid training ends
    return target, ends


class FakeShard:
    """Ray Data's DataIterator.iter_batches, as the train loop uses it: every call is one pass."""

    def __init__(self, ends: np.ndarray) -> None:
        self.ends, self.calls = ends, []

    def iter_batches(self, *, batch_size, batch_format="numpy", local_shuffle_buffer_size=None,
                     local_shuffle_seed=None):
        self.calls.append(batch_size)
        order = self.ends if local_shuffle_seed is None else np.random.default_rng(local_shuffle_seed).permutation(self.ends)
        for start in range(0, len(order), batch_size):
            yield {END: order[start:start + batch_size]}


def test_sample_size_unset_means_full_epochs():
    assert epoch_sample_size(1000) is None
    assert epoch_sample_size(1000, windows_per_epoch=300) == 300
    assert epoch_sample_size(1000, windows_per_epoch=5000) == 1000  # never more than there are
    assert epoch_sample_size(1000, epoch_fraction=0.25) == 250
    assert epoch_sample_size(3, epoch_fraction=0.01) == 1  # at least one window
    with pytest.raises(ValueError, match="not both"):
        epoch_sample_size(1000, windows_per_epoch=10, epoch_fraction=0.5)
    with pytest.raises(ValueError):
        epoch_sample_size(1000, epoch_fraction=1.5)


def test_stratum_counts_keep_shares_and_sum():
    counts = stratum_counts(np.array([930, 70]), 100)
    assert counts.tolist() == [93, 7]
    counts = stratum_counts(np.array([999, 1]), 10)  # 9.99 + 0.01: the remainder goes to the big class
    assert counts.sum() == 10 and counts[1] <= 1
    assert stratum_counts(np.array([5, 5]), 10).tolist() == [5, 5]
    assert stratum_counts(np.array([0, 0]), 0).tolist() == [0, 0]
    with pytest.raises(ValueError):
        stratum_counts(np.array([3, 3]), 7)


def test_stratification_holds():
    target, ends = _series()
    positive = target[ends] > 0.5
    share = positive.mean()
    for size in (50, 333, 1000, len(ends)):
        picked = stratified_sample(ends, positive, size, seed=0, epoch=3)
        assert len(picked) == size and len(np.unique(picked)) == size
        assert np.isin(picked, ends).all()
        events = int((target[picked] > 0.5).sum())
        assert abs(events - share * size) <= 1.0  # the events' share, to within one window


def test_fresh_per_epoch_and_deterministic_per_seed():
    target, ends = _series()
    positive = target[ends] > 0.5
    a0 = stratified_sample(ends, positive, 500, seed=7, epoch=0)
    a1 = stratified_sample(ends, positive, 500, seed=7, epoch=1)
    assert not np.array_equal(a0, a1)
    assert np.array_equal(a0, stratified_sample(ends, positive, 500, seed=7, epoch=0))
    assert not np.array_equal(a0, stratified_sample(ends, positive, 500, seed=8, epoch=0))
    assert np.array_equal(stratified_sample(ends, positive, 500, seed=-3, epoch=2),
                          stratified_sample(ends, positive, 500, seed=-3, epoch=2))


def test_delay_task_strata_use_the_cut():
    rng = np.random.default_rng(0)
    delay = rng.exponential(30.0, 4000).astype(np.float32)  # seconds; events: above the SLA
    ends = np.arange(4000, dtype=np.int64)
    sampler = EpochSampler.for_target(ends, delay, cut=90.0, size=400, seed=0)
    picked = sampler.sample(0)
    assert abs((delay[picked] > 90.0).sum() - (delay > 90.0).mean() * 400) <= 1.0
    mask = sampler.mask(0)
    assert mask.shape == (4000,) and mask.sum() == 400 and mask[picked].all()


@pytest.mark.parametrize("shuffle", [None, 11])
def test_sampled_shard_yields_each_epochs_sample_in_full_batches(shuffle):
    target, ends = _series()
    sampler = EpochSampler.for_target(ends, target, cut=0.5, size=700, seed=5)
    shard = FakeShard(ends)
    sampled = SampledShard(shard, sampler, first_epoch=2)
    seen = []
    for _ in range(3):  # three Keras epochs: three passes
        batches = [b[END] for b in sampled.iter_batches(batch_size=64, batch_format="numpy",
                                                        local_shuffle_buffer_size=shuffle,
                                                        local_shuffle_seed=shuffle)]
        assert all(len(b) == 64 for b in batches[:-1]) and 0 < len(batches[-1]) <= 64
        got = np.concatenate(batches)
        seen.append(np.sort(got))
    for k, got in enumerate(seen):
        assert np.array_equal(got, sampler.sample(2 + k))  # exactly that epoch's sample, once each
    assert not np.array_equal(seen[0], seen[1])
    assert shard.calls[0] > 64  # read in larger batches than it yields
    # Two workers filtering their shards by the same sample fit on it exactly once together.
    half = [SampledShard(FakeShard(part), sampler, first_epoch=2) for part in (ends[::2], ends[1::2])]
    together = np.sort(np.concatenate([b[END] for s in half for b in s.iter_batches(batch_size=64)]))
    assert np.array_equal(together, sampler.sample(2))


def test_rebatch():
    chunks = [np.arange(0, 5), np.arange(5, 5), np.arange(5, 12), np.arange(12, 13)]
    out = list(rebatch(iter(chunks), 4))
    assert [len(b) for b in out] == [4, 4, 4, 1]
    assert np.array_equal(np.concatenate(out), np.arange(13))
    assert list(rebatch(iter([]), 4)) == []


def test_end_column_matches_ray_windows():
    ray_windows = pytest.importorskip("fabray.train.ray_windows")
    assert ray_windows.END == END


def test_validation_sample_is_fixed_stratified_and_distinct_from_epoch_draws():
    target, ends = _series(n_rows=20_000, event_rate=0.1)
    val = validation_sample(ends, target, 0.5, 2000, seed=3)
    assert len(val) == 2000 and len(np.unique(val)) == 2000 and np.isin(val, ends).all()
    assert np.all(np.diff(val) > 0)  # sorted end rows
    share_all, share_val = (target[ends] > 0.5).mean(), (target[val] > 0.5).mean()
    assert abs(share_val - share_all) <= 1 / 2000 + 1e-12  # events keep their share
    np.testing.assert_array_equal(val, validation_sample(ends, target, 0.5, 2000, seed=3))  # every epoch alike
    assert not np.array_equal(val, validation_sample(ends, target, 0.5, 2000, seed=4))
    for epoch in range(3):  # not any epoch's training draw of the same size
        assert not np.array_equal(val, stratified_sample(ends, target[ends] > 0.5, 2000, 3, epoch))


def test_validation_sample_unset_or_larger_keeps_every_window():
    target, ends = _series()
    np.testing.assert_array_equal(validation_sample(ends, target, 0.5, None, seed=0), ends)
    np.testing.assert_array_equal(validation_sample(ends, target, 0.5, len(ends) + 5, seed=0), ends)
    with pytest.raises(ValueError, match="size must be >= 1"):
        validation_sample(ends, target, 0.5, 0, seed=0)

