"""What a trainer fits on: one series, its training and validation window ends (pure numpy).

`fabray train` fits on one data file's train split. `fabray retrain` fits on the NEW data's train
split plus a replay sample of the parent's history (windows of the data the parent trained on),
so that fine-tuning on recent minutes does not forget older regimes. Both become one
`TrainSeries`: the series arrays of every source concatenated row-wise, and window END rows
offset into that concatenation. A window never crosses from one source into the next, because
every end row was valid (a full lookback inside its segment) in its own source, and the offset
moves the whole window with it. Validation is the new data's validation split plus a sample of
the history's (`retrain.replay_val_ratio`), so early stopping, and the warm start's comparison
with the fine-tuned epochs, also watch for forgetting.

No Ray, no files: the callers read and prepare the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class TrainSeries:
    """The arrays a model's trainer gets (put once in Ray's object store)."""

    features: np.ndarray  # [N, F] float32, raw units
    target: np.ndarray  # [N] float32
    train_ends: np.ndarray  # [T] int64 window END rows to fit on
    val_ends: np.ndarray  # [V] int64 window END rows to validate on
    replay_windows: int = 0  # how many of train_ends come from history
    replay_val_windows: int = 0  # how many of val_ends come from history

    @classmethod
    def of(cls, prepared: Any) -> TrainSeries:  # prepared: fabray.data.windows.PreparedData
        """A prepared data file's own train and validation splits."""
        return cls(prepared.features, prepared.fit_target, prepared.splits["train"], prepared.splits["val"])


def replay_size(n_new_train: int, available: int, ratio: float, max_windows: int | None) -> int:
    """Replay windows to draw: `ratio` per new training window, capped by `max_windows` and by
    what the history holds."""
    if ratio < 0:
        raise ValueError(f"replay ratio must be >= 0. Received: {ratio}")
    n = int(round(ratio * n_new_train))
    if max_windows is not None:
        n = min(n, int(max_windows))
    return max(0, min(n, int(available)))


def sample_replay(history_ends: Sequence[np.ndarray], n: int, seed: int) -> list[np.ndarray]:
    """`n` window ends drawn uniformly without replacement from all sources together; one
    sorted int64 array per source (possibly empty)."""
    sizes = np.array([len(e) for e in history_ends], dtype=np.int64)
    total = int(sizes.sum())
    if not 0 <= n <= total:
        raise ValueError(f"cannot draw {n} replay windows from {total}. Received: n={n}")
    picks = np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))  # [n] global
    bounds = np.concatenate([[0], np.cumsum(sizes)])  # [S + 1]
    out = []
    for k, ends in enumerate(history_ends):
        mine = picks[(picks >= bounds[k]) & (picks < bounds[k + 1])] - bounds[k]
        out.append(np.asarray(ends, dtype=np.int64)[mine])
    return out


def with_replay(
    new: TrainSeries,
    history: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
) -> TrainSeries:
    """`new` plus replay windows: `history` holds (features [N_k, F], target [N_k], train ends
    [R_k], validation ends [Q_k]) per source, the ends being the drawn replay windows of that
    source. Sources with no drawn window add no rows."""
    features, targets = [new.features], [new.target]
    train_ends = [np.asarray(new.train_ends, dtype=np.int64)]
    val_ends = [np.asarray(new.val_ends, dtype=np.int64)]
    offset = len(new.features)
    replayed = 0
    for feats, target, train, val in history:
        train, val = np.asarray(train, dtype=np.int64), np.asarray(val, dtype=np.int64)
        both = np.concatenate([train, val])
        if both.size == 0:
            continue
        if feats.ndim != 2 or feats.shape[1] != new.features.shape[1] or target.shape != (len(feats),):
            raise ValueError(
                "a replay source must be [N, F] features with F = "
                f"{new.features.shape[1]} and an [N] target. Received: features {feats.shape}, "
                f"target {target.shape}"
            )
        if both.min() < 0 or both.max() >= len(feats):
            raise ValueError(f"replay ends outside their source's {len(feats)} rows. Received: "
                             f"min={both.min()}, max={both.max()}")
        features.append(feats)
        targets.append(target)
        train_ends.append(train + offset)
        val_ends.append(val + offset)
        offset += len(feats)
        replayed += int(train.size)
    return TrainSeries(
        features=np.ascontiguousarray(np.concatenate(features), dtype=np.float32),  # [ΣN, F]
        target=np.ascontiguousarray(np.concatenate(targets), dtype=np.float32),  # [ΣN]
        train_ends=np.concatenate(train_ends),
        val_ends=np.concatenate(val_ends),
        replay_windows=replayed,
        replay_val_windows=int(sum(len(v) for v in val_ends[1:])),
    )
