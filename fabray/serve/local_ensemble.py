"""The scoring replica's copy of the dynamic ensemble, and its queue of pending predictions
(issue 13, item 5: the predict path makes no second Serve hop).

The EnsembleKeeper (keeper.py, one replica) stays the single owner of the online state: the
outcomes of /v1/feedback and /v1/observe move ITS weights, and it persists them. A scoring
replica keeps a `LocalEnsembles`: per model version a `ServedEnsemble` rebuilt from the
keeper's state, and combines each window with it in-process, through the keeper's own
`combine_rows` (the same code, so for the same state both give the same probability and
weights).

Staleness, bounded: the replica asks the keeper `sync(version, epoch, generation)` every
`serve.ensemble_refresh_s` (1 s by default) and receives the state only when it changed (the
keeper counts a generation per version, bumped by every applied outcome; a restarted keeper has
a new epoch). The replica that forwarded a /v1/feedback or /v1/observe call syncs at once after
it, so its next answer uses the moved weights; another replica does within
`ensemble_refresh_s` plus one call. The weights an answer reports are the ones that computed
its probability.

Pending predictions: `combine` gives each window a `prediction_id` and puts its record
(id, version, zone, scores, degraded, time) on a bounded queue (`PendingQueue`); the replica
sends the queue to the keeper's `record` in the background (never on the request path; a
failed send is put back and retried), and flushes it before forwarding a /v1/feedback call, so
feedback through the same replica never misses a prediction. When the queue is full (the
keeper unreachable for long) the oldest records are dropped and counted. If a replica dies,
the records it had not yet sent (those of its last few milliseconds, or of the time the keeper
was unreachable) are lost: feedback on them answers `unknown`, as for a forgotten prediction.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fabray.ensemble.served import ServedEnsemble
from fabray.serve.keeper import combine_rows

#: A pending record: [prediction_id, version, zone, scores [M], degraded, unix time]
Record = list


class PendingQueue:
    """Bounded FIFO of pending records; the oldest are dropped (and counted) when full."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1. Received: {capacity}")
        self.capacity = int(capacity)
        self._items: deque[Record] = deque()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, records: Sequence[Record]) -> None:
        self._items.extend(records)
        self._trim()

    def take(self) -> list[Record]:
        """Everything queued, oldest first; the queue is empty after."""
        out = list(self._items)
        self._items.clear()
        return out

    def put_back(self, records: Sequence[Record]) -> None:
        """Records `take` returned but could not deliver: ahead of the newer ones."""
        self._items.extendleft(reversed(list(records)))
        self._trim()

    def _trim(self) -> None:
        while len(self._items) > self.capacity:
            self._items.popleft()
            self.dropped += 1


class LocalEnsembles:
    """Per model version, a copy of the keeper's `ServedEnsemble` and where it came from
    (keeper epoch, generation); `combine` answers windows and queues their pending records."""

    def __init__(self, pending_capacity: int) -> None:
        self._copies: dict[str, tuple[ServedEnsemble, str | None, int]] = {}
        self.queue = PendingQueue(pending_capacity)

    def has(self, version: str) -> bool:
        return version in self._copies

    def known(self, version: str) -> tuple[str | None, int]:
        """(keeper epoch, generation) of the copy held (None, -1: none)."""
        _, epoch, generation = self._copies.get(version, (None, None, -1))
        return epoch, generation

    def apply(self, version: str, reply: Mapping[str, Any]) -> bool:
        """Take the keeper's `sync` reply; True when the copy changed."""
        if reply.get("status") != "state":
            return False
        self._copies[version] = (ServedEnsemble.from_state(reply["state"]), reply["epoch"], int(reply["generation"]))
        return True

    def keep_only(self, versions: set[str]) -> None:
        self._copies = {v: c for v, c in self._copies.items() if v in versions}

    def weights(self, version: str, zone: str) -> dict[str, float]:
        return self._copies[version][0].weights(zone)

    def combine(self, version: str, zones: Sequence[str], scores: np.ndarray, rule_scores: np.ndarray,
                degraded: Sequence[bool], last_rows: np.ndarray | None = None) -> list[dict[str, Any]]:
        """As `EnsembleKeeper.combine` (same arguments, same answers), with the local copy; the
        pending records go to the queue. KeyError when no copy of `version` is held."""
        ensemble = self._copies[version][0]
        scores = np.asarray(scores, dtype=np.float64)  # [B, M]
        now = time.time()
        out, records = [], []
        for zone, row, bad, (prob, weights) in zip(zones, scores, degraded,
                                                   combine_rows(ensemble, zones, scores, rule_scores, degraded,
                                                                last_rows)):
            pid = uuid.uuid4().hex
            records.append([pid, version, str(zone), row.tolist(), bool(bad), now])
            out.append({"prediction_id": pid, "probability": prob, "weights": weights})
        self.queue.put(records)
        return out
