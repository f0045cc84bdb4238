"""The Ray Data path for windows (DESIGN §2, §10): shard window END rows, gather in the worker.

Driver side: `put_series` puts the series arrays in the object store once (pass the refs inside
a list in `train_loop_config`, as probed in DESIGN §10); `window_index_dataset` makes the dataset
of end rows that Ray Train shards across workers.

Worker side: `shard_to_tf_dataset(ray.train.get_dataset_shard("train"), refs[0], refs[1], ...)`
streams the worker's share of end rows, gathers each batch's windows from the series arrays
(`fabray.data.windows.gather_windows`) and hands them to Keras as a re-iterable tf.data.Dataset.
Only 8 bytes per window move through Ray Data; the windows are built where they are used.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import ray
import tensorflow as tf

from fabray.data.windows import gather_windows

logger = logging.getLogger(__name__)

END = "end"
ROWS_PER_BLOCK = 16_384  # ~128 KiB of int64 per block: enough blocks to balance shards


def put_series(features: np.ndarray, target: np.ndarray) -> list[ray.ObjectRef]:
    """[ref(features [N, F] float32), ref(target [N] float32)]: put once, share with every worker."""
    return [
        ray.put(np.ascontiguousarray(features, dtype=np.float32)),
        ray.put(np.ascontiguousarray(target, dtype=np.float32)),
    ]


def window_index_dataset(ends: np.ndarray, *, seed: int | None = None) -> ray.data.Dataset:
    """A dataset with one int64 column "end": the window END rows to train or score on.

    `seed`: permute the ends once first, so that each block (and each worker's shard) mixes
    all times and zones and the worker's local shuffle buffer draws from the whole series;
    None keeps the given order (validation, scoring).
    """
    ends = np.asarray(ends)
    if ends.ndim != 1 or not (ends.size == 0 or np.issubdtype(ends.dtype, np.integer)):
        raise ValueError(f"ends must be a 1-D integer array. Received: shape={ends.shape}, dtype={ends.dtype}")
    ends = ends.astype(np.int64)
    if seed is not None:
        ends = np.random.default_rng(seed).permutation(ends)
    blocks = max(1, min(64, -(-len(ends) // ROWS_PER_BLOCK)))
    return ray.data.from_arrow(pa.table({END: ends}), override_num_blocks=blocks)


def shard_to_tf_dataset(
    shard: Any,
    features: np.ndarray | ray.ObjectRef,
    target: np.ndarray | ray.ObjectRef,
    lookback: int,
    batch_size: int,
    *,
    shuffle_buffer: int = 0,
    seed: int = 0,
) -> tf.data.Dataset:
    """(x [B, L, F] float32, y [B, 1] float32) batches from a shard of `window_index_dataset`.

    `shard`: a `ray.data.DataIterator` (`ray.train.get_dataset_shard(...)`, `streaming_split`)
    or a Dataset. `features` [N, F] and `target` [N]: arrays or their object refs (resolved once
    with ray.get, zero-copy from the object store). `shuffle_buffer` > 0: Ray Data's local
    shuffle buffer of that many end rows, with seed `seed + epoch` so epochs differ. Every
    iteration of the returned dataset (every Keras epoch) streams the shard again.
    """
    if isinstance(features, ray.ObjectRef):
        features = ray.get(features)
    if isinstance(target, ray.ObjectRef):
        target = ray.get(target)
    features = np.asarray(features, dtype=np.float32)  # [N, F]
    target = np.asarray(target, dtype=np.float32)  # [N]
    if features.ndim != 2 or target.shape != (features.shape[0],):
        raise ValueError(
            "features must be [N, F] and target [N]. Received: "
            f"features.shape={features.shape}, target.shape={target.shape}"
        )
    if batch_size < 1 or shuffle_buffer < 0:
        raise ValueError(f"need batch_size >= 1 and shuffle_buffer >= 0. Received: {batch_size=}, {shuffle_buffer=}")
    epochs = itertools.count()

    def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        epoch = next(epochs)
        for batch in shard.iter_batches(
            batch_size=batch_size,
            batch_format="numpy",
            local_shuffle_buffer_size=shuffle_buffer or None,
            local_shuffle_seed=seed + epoch if shuffle_buffer else None,
        ):
            ends = batch[END].astype(np.int64)  # [B]
            yield gather_windows(features, ends, lookback), target[ends][:, None]  # [B, L, F], [B, 1]

    signature = (
        tf.TensorSpec(shape=(None, lookback, features.shape[1]), dtype=tf.float32),
        tf.TensorSpec(shape=(None, 1), dtype=tf.float32),
    )
    return tf.data.Dataset.from_generator(batches, output_signature=signature).prefetch(2)
