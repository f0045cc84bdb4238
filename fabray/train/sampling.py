"""Sampled epochs (issue 14): each epoch fits on a fresh, seeded, stratified sample of window ends.

Consecutive windows share all but one of their `lookback` rows, so a full pass over every window
end row spends most of its compute on near-duplicates. With `train.windows_per_epoch` (a count)
or `train.epoch_fraction` (a share of the training windows) set, epoch e fits on a sample of the
training END rows drawn afresh for that epoch:

- **stratified**: the delay events (the 0/1 fit target above its cut, 0.5) keep their share of
  the training windows, to within one window (largest-remainder allocation), so a rare class is
  not thinned more than the rest;
- **seeded and fresh**: the sample is a pure function of (seed, epoch, the training ends), so a
  restarted worker resuming at epoch e draws the same sample, and epochs differ from each other;
- **sharded by Ray Data as before**: the Ray Data shard still streams the worker's share of all
  end rows (8 bytes each); `SampledShard` keeps only this epoch's sampled ones and re-batches
  them to full batches, so the expensive part (gathering [B, L, F] windows, the training step)
  runs on the sample only. With several workers each filters its own shard by the same global
  sample, so together they fit on exactly the sample, once.

Pure numpy: no Ray, no TensorFlow. Unset (both None): full epochs, nothing here is used.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

END = "end"  # the end-row column of `fabray.train.ray_windows.window_index_dataset`
#: Read the shard in batches of up to this many times the training batch when sampling, so that
#: a small fraction still fills a batch from one or a few reads.
MAX_READ_FACTOR = 32
#: The `epoch` argument of the one validation draw: far beyond any training epoch, so the validation
#: sample never coincides with an epoch's training draw.
VALIDATION_DRAW = 2**31 - 1


def epoch_sample_size(total: int, windows_per_epoch: int | None = None,
                      epoch_fraction: float | None = None) -> int | None:
    """Training windows per epoch out of `total`; None: full epochs (neither is set)."""
    if windows_per_epoch is not None and epoch_fraction is not None:
        raise ValueError("set windows_per_epoch or epoch_fraction, not both. Received: "
                         f"{windows_per_epoch=}, {epoch_fraction=}")
    if total < 0:
        raise ValueError(f"total must be >= 0. Received: {total}")
    if windows_per_epoch is not None:
        if windows_per_epoch < 1:
            raise ValueError(f"windows_per_epoch must be >= 1. Received: {windows_per_epoch}")
        return min(int(total), int(windows_per_epoch))
    if epoch_fraction is not None:
        if not 0 < epoch_fraction <= 1:
            raise ValueError(f"epoch_fraction must be in (0, 1]. Received: {epoch_fraction}")
        return min(int(total), max(1, int(round(epoch_fraction * total)))) if total else 0
    return None


def stratum_counts(class_sizes: np.ndarray, size: int) -> np.ndarray:
    """How many to draw from each class so that each keeps its share of `size`: proportional,
    rounded by largest remainder (ties to the earlier class); sums to `size`, never above a
    class's size."""
    class_sizes = np.asarray(class_sizes, dtype=np.int64)
    total = int(class_sizes.sum())
    if not 0 <= size <= total:
        raise ValueError(f"cannot draw {size} from {total}. Received: size={size}")
    if total == 0:
        return np.zeros_like(class_sizes)
    exact = class_sizes * (size / total)
    counts = np.floor(exact).astype(np.int64)
    short = size - int(counts.sum())
    if short:
        order = np.argsort(-(exact - counts), kind="stable")
        counts[order[:short]] += 1
    return np.minimum(counts, class_sizes)


def _rng(seed: int, epoch: int) -> np.random.Generator:
    # SeedSequence wants non-negative entries; any int seed maps to one, distinct per (seed, epoch).
    return np.random.default_rng(np.random.SeedSequence([seed % 2**63, int(epoch), 14]))


def stratified_sample(ends: np.ndarray, positive: np.ndarray, size: int, seed: int, epoch: int) -> np.ndarray:
    """`size` of the END rows `ends` [T], drawn without replacement for epoch `epoch`, each class
    of `positive` [T] (bool: a delay event) keeping its share; sorted int64."""
    ends = np.asarray(ends, dtype=np.int64)
    positive = np.asarray(positive, dtype=bool)
    if ends.ndim != 1 or positive.shape != ends.shape:
        raise ValueError(f"ends and positive must be 1-D of one length. Received: {ends.shape}, {positive.shape}")
    rng = _rng(seed, epoch)
    classes = [ends[~positive], ends[positive]]
    counts = stratum_counts(np.array([len(c) for c in classes]), size)
    picks = [rng.choice(c, size=int(k), replace=False) for c, k in zip(classes, counts)]
    return np.sort(np.concatenate(picks))


#: The fit target's event cut: its targets are 0/1 (task "event", the only task).
EVENT_CUT = 0.5


def validation_sample(ends: np.ndarray, target: np.ndarray, cut: float, size: int | None, seed: int) -> np.ndarray:
    """The validation END rows every epoch is scored on: all of `ends` when `size` is None or not
    smaller, else a stratified sample of `size` (delay events, `target[end] > cut`, keep their
    share), drawn once from `seed` (not from the epoch: every epoch is compared on the same windows)."""
    ends = np.asarray(ends, dtype=np.int64)
    if size is None or size >= len(ends):
        return ends
    if size < 1:
        raise ValueError(f"size must be >= 1. Received: {size}")
    positive = np.asarray(target)[ends] > cut
    return stratified_sample(ends, positive, int(size), seed, epoch=VALIDATION_DRAW)


class EpochSampler:
    """The per-epoch sample of a model's training ends, as a mask over the series rows."""

    def __init__(self, ends: np.ndarray, positive: np.ndarray, n_rows: int, size: int, seed: int) -> None:
        ends = np.asarray(ends, dtype=np.int64)
        if ends.size and (ends.min() < 0 or ends.max() >= n_rows):
            raise ValueError(f"ends outside the series' {n_rows} rows. Received: min={ends.min()}, max={ends.max()}")
        self.ends, self.positive = ends, np.asarray(positive, dtype=bool)
        self.n_rows, self.size, self.seed = int(n_rows), int(size), int(seed)
        self._cached: tuple[int, np.ndarray] | None = None

    @classmethod
    def for_target(cls, ends: np.ndarray, target: np.ndarray, cut: float, size: int, seed: int) -> EpochSampler:
        """Strata by the fit target: a delay event where `target[end] > cut`."""
        ends = np.asarray(ends, dtype=np.int64)
        return cls(ends, np.asarray(target)[ends] > cut, len(target), size, seed)

    @property
    def fraction(self) -> float:
        return self.size / max(1, len(self.ends))

    def sample(self, epoch: int) -> np.ndarray:
        return stratified_sample(self.ends, self.positive, self.size, self.seed, epoch)

    def mask(self, epoch: int) -> np.ndarray:
        """[n_rows] bool: True at the END rows epoch `epoch` fits on (cached for the last epoch)."""
        if self._cached is None or self._cached[0] != epoch:
            keep = np.zeros(self.n_rows, dtype=bool)
            keep[self.sample(epoch)] = True
            self._cached = (epoch, keep)
        return self._cached[1]


def rebatch(chunks: Iterator[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    """The concatenation of `chunks` cut into arrays of `batch_size` (the last may be shorter)."""
    pending: list[np.ndarray] = []
    held = 0
    for chunk in chunks:
        if chunk.size == 0:
            continue
        pending.append(chunk)
        held += chunk.size
        if held >= batch_size:
            joined = np.concatenate(pending)
            cut = (held // batch_size) * batch_size
            for start in range(0, cut, batch_size):
                yield joined[start:start + batch_size]
            rest = joined[cut:]
            pending, held = ([rest] if rest.size else []), rest.size
    if held:
        yield np.concatenate(pending)


class SampledShard:
    """A Ray Data shard (`ray.train.get_dataset_shard`, or anything with `iter_batches`) whose
    every pass — one per Keras epoch — yields only that epoch's sampled end rows, in full batches.

    Epochs count from `first_epoch` (the absolute epoch the fit starts at, so a resumed worker
    samples as the first run would have). The shard is read in batches of `batch_size ÷ fraction`
    (capped at MAX_READ_FACTOR × batch_size) so that filtering still leaves about one batch.
    """

    def __init__(self, shard: Any, sampler: EpochSampler, first_epoch: int = 0) -> None:
        self.shard, self.sampler = shard, sampler
        self.next_epoch = int(first_epoch)

    def iter_batches(self, *, batch_size: int, **kwargs: Any) -> Iterator[dict[str, np.ndarray]]:
        epoch = self.next_epoch
        self.next_epoch += 1
        mask = self.sampler.mask(epoch)
        factor = min(MAX_READ_FACTOR, max(1, math.ceil(1.0 / max(self.sampler.fraction, 1e-9))))

        def kept() -> Iterator[np.ndarray]:
            for batch in self.shard.iter_batches(batch_size=batch_size * factor, **kwargs):
                ends = np.asarray(batch[END], dtype=np.int64)
                yield ends[mask[ends]]

        for ends in rebatch(kept(), batch_size):
            yield {END: ends}


__all__ = ["EpochSampler", "SampledShard", "epoch_sample_size", "rebatch", "stratified_sample",
           "stratum_counts", "EVENT_CUT", "validation_sample"]
