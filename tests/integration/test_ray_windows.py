"""The Ray Data path (end rows sharded, windows gathered in the worker) equals the local path."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fabray import schema
from fabray.config import SplitConfig, TaskConfig
from fabray.data.windows import gather_windows, prepare

pytestmark = pytest.mark.ray

LOOKBACK, HORIZON = 8, 3


def prepared_series():
    """A two-zone frame with a gap, prepared; feature 0 replaced by the row number so that each
    gathered window names its own end row."""
    rng = np.random.default_rng(0)
    parts = []
    for zone, minutes in {"Z1": [m for m in range(300) if not 100 <= m < 104], "Z2": list(range(250))}.items():
        part = pd.DataFrame(
            rng.integers(0, 50, size=(len(minutes), len(schema.FEATURES))).astype(float),
            columns=list(schema.FEATURES),
        )
        part.insert(0, schema.ZONE, zone)
        part.insert(0, schema.TIMESTAMP, pd.Timestamp("2024-03-01") + pd.to_timedelta(minutes, unit="min"))
        parts.append(part)
    prepared = prepare(pd.concat(parts), TaskConfig(lookback=LOOKBACK, horizon=HORIZON), SplitConfig())
    features = prepared.features.copy()
    features[:, 0] = np.arange(len(features))
    return features, prepared.target, prepared.splits["train"]


def check_same_as_local(x, y, features, target, ends):
    seen = x[:, -1, 0].astype(np.int64)
    np.testing.assert_array_equal(np.sort(seen), ends)
    np.testing.assert_array_equal(x, gather_windows(features, seen, LOOKBACK))
    np.testing.assert_array_equal(y, target[seen][:, None])
    return seen


def test_streaming_split_shards_are_disjoint_and_cover_every_window(ray_cluster):
    from fabray.train.ray_windows import put_series, shard_to_tf_dataset, window_index_dataset

    features, target, ends = prepared_series()
    refs = put_series(features, target)
    # equal=True as Ray Train splits: it may drop up to (splits - 1) rows to even them out
    shards = window_index_dataset(ends, seed=0).streaming_split(2, equal=True)
    results: dict[int, list] = {}

    def consume(rank: int) -> None:  # each split must be read concurrently (a barrier per epoch)
        ds = shard_to_tf_dataset(shards[rank], refs[0], refs[1], LOOKBACK, 32, shuffle_buffer=50, seed=rank)
        results[rank] = [(x.numpy(), y.numpy()) for x, y in ds]

    threads = [threading.Thread(target=consume, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert set(results) == {0, 1}
    parts = []
    for rank in (0, 1):
        assert results[rank], f"shard {rank} got no batches"
        parts.append(np.concatenate([x for x, _ in results[rank]])[:, -1, 0].astype(np.int64))
    assert not set(parts[0]) & set(parts[1])
    assert len(parts[0]) == len(parts[1]) and len(parts[0]) + len(parts[1]) >= len(ends) - 1
    x = np.concatenate([x for r in (0, 1) for x, _ in results[r]])
    y = np.concatenate([y for r in (0, 1) for _, y in results[r]])
    seen = x[:, -1, 0].astype(np.int64)
    assert set(seen) <= set(ends.tolist())
    check_same_as_local(x, y, features, target, np.sort(seen))


@pytest.mark.slow
def test_tensorflow_trainer_worker_sees_the_local_windows(ray_cluster, tmp_path):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer

    from fabray.train.ray_windows import put_series, window_index_dataset

    def train_loop(config: dict) -> None:
        """A Ray Train worker: read its shard for two epochs, write what it saw for the driver.
        (Nested, so cloudpickle ships it by value: workers cannot import test modules.)"""
        import ray.train

        from fabray.train.ray_windows import shard_to_tf_dataset

        features_ref, target_ref = config["refs"]
        shard = ray.train.get_dataset_shard("train")
        ds = shard_to_tf_dataset(shard, features_ref, target_ref, LOOKBACK, 64, shuffle_buffer=100, seed=7)
        for epoch in range(2):
            batches = [(x.numpy(), y.numpy()) for x, y in ds]
            np.savez(
                Path(config["out"]) / f"epoch{epoch}.npz",
                x=np.concatenate([x for x, _ in batches]),
                y=np.concatenate([y for _, y in batches]),
            )

    features, target, ends = prepared_series()
    trainer = TensorflowTrainer(
        train_loop,
        train_loop_config={"refs": put_series(features, target), "out": str(tmp_path)},
        # one CPU for the worker leaves the other for Ray Data (DESIGN §10)
        scaling_config=ScalingConfig(num_workers=1, use_gpu=False, resources_per_worker={"CPU": 1}),
        datasets={"train": window_index_dataset(ends, seed=0)},
        run_config=RunConfig(name="ray_windows_test", storage_path=str(tmp_path / "ray")),
    )
    trainer.fit()
    orders = []
    for epoch in range(2):
        seen = np.load(tmp_path / f"epoch{epoch}.npz")
        orders.append(check_same_as_local(seen["x"], seen["y"], features, target, ends))
    assert not np.array_equal(orders[0], orders[1])  # re-iterable, reshuffled per epoch
