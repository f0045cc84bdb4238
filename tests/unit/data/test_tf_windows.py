"""The tf.data path yields exactly the windows and targets of `gather_windows`."""

from __future__ import annotations

import numpy as np
import pytest

from fabray.data.tf_windows import window_dataset
from fabray.data.windows import gather_windows

LOOKBACK = 4


def series(n: int = 60, n_features: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feature 0 is the row number, so each window names its own end row."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(n, n_features)).astype(np.float32)  # [N, F]
    features[:, 0] = np.arange(n)
    target = rng.integers(0, 2, size=n).astype(np.float32)  # [N]
    target[5] = np.nan
    ends = np.array([e for e in range(LOOKBACK - 1, n) if e not in (20, 21, 22)], dtype=np.int64)
    return features, target, ends


def collect(ds) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_unshuffled_batches_equal_gather_windows():
    features, target, ends = series()
    ds = window_dataset(features, target, ends, LOOKBACK, batch_size=8, shuffle=False)
    x, y = collect(ds)
    np.testing.assert_array_equal(x, gather_windows(features, ends, LOOKBACK))
    np.testing.assert_array_equal(y, target[ends][:, None])
    assert x.dtype == np.float32 and y.shape == (len(ends), 1)


def test_shuffled_epochs_hold_the_same_windows_in_new_orders():
    features, target, ends = series()
    ds = window_dataset(features, target, ends, LOOKBACK, batch_size=8, shuffle=True, seed=3)
    orders = []
    for _ in range(2):
        x, y = collect(ds)
        seen = x[:, -1, 0].astype(np.int64)  # each window's end row
        np.testing.assert_array_equal(np.sort(seen), ends)
        np.testing.assert_array_equal(x, gather_windows(features, seen, LOOKBACK))
        np.testing.assert_array_equal(y, target[seen][:, None])
        orders.append(seen)
    assert not np.array_equal(orders[0], ends) and not np.array_equal(orders[0], orders[1])
    again = window_dataset(features, target, ends, LOOKBACK, batch_size=8, shuffle=True, seed=3)
    np.testing.assert_array_equal(collect(again)[0][:, -1, 0], orders[0])  # deterministic by seed


def test_drop_remainder_gives_full_static_batches():
    features, target, ends = series()
    ds = window_dataset(features, target, ends, LOOKBACK, batch_size=8, shuffle=False, drop_remainder=True)
    assert tuple(ds.element_spec[0].shape) == (8, LOOKBACK, 3)
    assert sum(1 for _ in ds) == len(ends) // 8


def test_rejects_ends_without_a_full_window():
    features, target, _ = series()
    with pytest.raises(ValueError, match="Received"):
        window_dataset(features, target, np.array([LOOKBACK - 2]), LOOKBACK, 8, shuffle=False)
