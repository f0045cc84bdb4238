"""Request deadlines on the scoring replica: which members answer a window in time (issue 13, item 5).

A /v1/predict request carries a time budget (`?deadline_ms=`, else `serve.deadline_ms`),
counted from the moment the replica's route starts on it. The zoo is ONE compiled call
(`ServingBundle.score_full`: every model, the rules that fired, in one graph), so its members
cannot answer one by one: "the members that answered" is one of two honest outcomes per window:

- the **full lane** answered: every model's score, combined by the dynamic ensemble;
- the **fast lane** answered alone: the rules model (`ServingBundle.score_fast`: the run's `rule`
  model compiled on its own, or the engineer's rules when the run has none: a small fraction of
  the zoo's cost), the window `degraded` with the reason "deadline: members X, Y dropped".

`ZooLane` decides per window, with real clocks and a measured estimate of the zoo's call time
(`CallTime`, an exponential average of the replica's recent calls, seeded by a timed call at
load). One zoo call runs at a time on a replica; a window goes to the fast lane when

1. waiting for the lane (another batch's zoo call still running: queue wait) would leave less
   than the zoo's estimated call time before its deadline, or
2. the zoo call it joined is still running when its deadline, less the fast lane's own
   estimated time, arrives: the answer is not held back; the zoo call finishes in its thread
   (TensorFlow cannot be interrupted) and the windows still within their budget take its scores.

A window without a deadline (the live feed's: the minute must be scored by every model) always
takes the full lane. Nothing here knows Ray; `deployments/predictor.py` calls it from the
`@serve.batch` handler, so the time a request waited in Serve's batch queue counts too.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The fast lane's estimate before it has run: it is a small part of a zoo call.
FAST_SHARE = 0.2


class CallTime:
    """An exponentially weighted average of a call's duration, seconds."""

    def __init__(self, initial_s: float, alpha: float = 0.2) -> None:
        if not (initial_s >= 0 and math.isfinite(initial_s)):
            raise ValueError(f"initial_s must be a finite duration >= 0. Received: {initial_s}")
        self.value = float(initial_s)
        self.alpha = float(alpha)

    def observe(self, seconds: float) -> None:
        self.value += self.alpha * (float(seconds) - self.value)


@dataclass
class LaneResult:
    """`full_rows`: the batch's rows the zoo answered, `full` the zoo's result for them (rows in
    that order; None when empty); `fast_rows` / `fast` likewise for the fast lane."""

    full_rows: list[int]
    full: Any
    fast_rows: list[int]
    fast: Any


def _take(result: Any, positions: Sequence[int]) -> Any:
    """Rows `positions` of a lane's result: an array [B, ...] or a tuple of them."""
    if isinstance(result, tuple):
        return tuple(_take(part, positions) for part in result)
    return np.asarray(result)[list(positions)]


class ZooLane:
    """Windows with deadlines → the zoo's scores for those it can answer in time, the fast
    lane's for the others (see the module docstring).

    Args:
        full: raw windows [B, L, F] → the zoo's result (an array [B, ...] or a tuple of them).
        fast: raw windows [K, L, F] → the fast lane's result, likewise.
        full_estimate_s: the zoo's call time until measured.
        fast_estimate_s: the fast lane's (default: FAST_SHARE of the zoo's).
    """

    def __init__(self, full: Callable[[np.ndarray], Any], fast: Callable[[np.ndarray], Any],
                 full_estimate_s: float, fast_estimate_s: float | None = None) -> None:
        self.full, self.fast = full, fast
        self.full_time = CallTime(full_estimate_s)
        self.fast_time = CallTime(FAST_SHARE * full_estimate_s if fast_estimate_s is None else fast_estimate_s)
        self._busy: asyncio.Future | None = None  # the zoo call in flight (its thread)
        self.counts = {"full": 0, "fast": 0, "fast_queue": 0, "fast_overrun": 0}

    async def run(self, windows: np.ndarray, deadlines: Sequence[float | None]) -> LaneResult:
        """Score `windows` [B, L, F]; `deadlines[i]`: time.monotonic() by which window i must
        be answered (None: no deadline, the zoo always)."""
        ends = [math.inf if d is None else float(d) for d in deadlines]
        waiting = list(range(len(ends)))
        fast_rows: list[int] = []

        # 1. the lane: one zoo call at a time (queue wait counts against each deadline)
        while True:
            now = time.monotonic()
            late = [r for r in waiting if ends[r] - now < self.full_time.value]
            if late:
                fast_rows += late
                waiting = [r for r in waiting if r not in late]
                self.counts["fast_queue"] += len(late)
            if not waiting or self._busy is None or self._busy.done():
                break
            wait_s = min(ends[r] for r in waiting) - self.full_time.value - now
            await asyncio.wait({self._busy}, timeout=None if math.isinf(wait_s) else max(wait_s, 0.0))

        # 2. the zoo call, for the windows that can still make it
        full, full_rows = None, []
        if waiting:
            started = list(waiting)
            call = self._start_full(windows[started])
            while not call.done():
                now = time.monotonic()
                cut = [r for r in waiting if ends[r] - self.fast_time.value <= now]
                if cut:
                    fast_rows += cut
                    waiting = [r for r in waiting if r not in cut]
                    self.counts["fast_overrun"] += len(cut)
                if not waiting:
                    break
                wait_s = min(ends[r] for r in waiting) - self.fast_time.value - now
                await asyncio.wait({call}, timeout=None if math.isinf(wait_s) else max(wait_s, 0.0))
            if waiting:
                result = call.result()  # the zoo's exception, if any, is the caller's to answer
                full_rows = waiting
                full = _take(result, [started.index(r) for r in waiting])
                self.counts["full"] += len(full_rows)

        # 3. the fast lane for the others: it always answers (the rules are the floor)
        fast = None
        if fast_rows:
            fast_rows.sort()
            start = time.monotonic()
            fast = await asyncio.to_thread(self.fast, windows[fast_rows])
            self.fast_time.observe(time.monotonic() - start)
            self.counts["fast"] += len(fast_rows)
        return LaneResult(full_rows=full_rows, full=full, fast_rows=fast_rows, fast=fast)

    def _start_full(self, windows: np.ndarray) -> asyncio.Future:
        """The zoo call in a thread; the lane is busy until it ends (even when nobody waits for it)."""
        start = time.monotonic()
        call = asyncio.ensure_future(asyncio.to_thread(self.full, windows))

        def done(fut: asyncio.Future) -> None:
            if not fut.cancelled() and fut.exception() is None:  # retrieving it: no "never retrieved"
                self.full_time.observe(time.monotonic() - start)

        call.add_done_callback(done)
        self._busy = call
        return call


def deadline_reason(dropped: Sequence[str], budget_ms: float | None, answered_by: str) -> str:
    """The `degraded_reasons` entry of a window the fast lane answered."""
    budget = "" if budget_ms is None else f" within the {budget_ms:g} ms budget"
    return f"deadline: members {', '.join(dropped)} dropped ({answered_by} answered alone{budget})"
