"""The local tf.data path: windows gathered by index inside the input pipeline (no ray).

Only the window END rows go through the pipeline (shuffled, batched); a map step gathers each
batch's [B, L, F] windows from the series held once as a tensor. Memory stays proportional to
the series, not to windows × lookback. Same windows and targets as `gather_windows`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def window_dataset(
    features: np.ndarray,
    target: np.ndarray,
    ends: np.ndarray,
    lookback: int,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """A dataset of (x [B, L, F] float32, y [B, 1] float32) for the windows ending at `ends`.

    `shuffle`: a full shuffle of the ends, reshuffled every epoch (deterministic for `seed`);
    else ends stay in the given order. y is `target[end]` (NaN passes through: scoring ignores it).
    """
    features = np.ascontiguousarray(features, dtype=np.float32)  # [N, F]
    target = np.ascontiguousarray(target, dtype=np.float32)  # [N]
    ends = np.asarray(ends, dtype=np.int64)  # [W]
    if features.ndim != 2 or target.shape != (features.shape[0],):
        raise ValueError(
            "features must be [N, F] and target [N]. Received: "
            f"features.shape={features.shape}, target.shape={target.shape}"
        )
    if batch_size < 1 or lookback < 1:
        raise ValueError(f"batch_size and lookback must be >= 1. Received: {batch_size=}, {lookback=}")
    if ends.ndim != 1 or (ends.size and (ends.min() < lookback - 1 or ends.max() >= len(features))):
        raise ValueError(
            f"ends must be 1-D rows in [{lookback - 1}, {len(features) - 1}]. Received: "
            f"shape={ends.shape}" + (f", min={ends.min()}, max={ends.max()}" if ends.size else "")
        )

    series = tf.constant(features)  # [N, F]
    labels = tf.constant(target)  # [N]
    offsets = tf.range(1 - lookback, 1, dtype=tf.int64)  # [L]

    def to_windows(batch_ends: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        rows = batch_ends[:, None] + offsets[None, :]  # [B, L]
        x = tf.gather(series, rows)  # [B, L, F]
        y = tf.gather(labels, batch_ends)[:, None]  # [B, 1]
        return x, y

    ds = tf.data.Dataset.from_tensor_slices(ends)
    if shuffle and len(ends) > 1:
        ds = ds.shuffle(len(ends), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(to_windows, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
