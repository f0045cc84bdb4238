"""The pure parts of the one-hop predict path (issue 13, item 5): the replica's local copy of the
ensemble combines exactly as the keeper does, its pending predictions reach the keeper, and the
deadline sends windows the zoo cannot answer in time to the rules model alone (real slow calls,
real clocks: no mock of time)."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from fabray.ensemble import EnsembleParams
from fabray.serve.answers import ScoredBatch, answer
from fabray.serve.deadline import ZooLane
from fabray.serve.keeper import EnsembleKeeper
from fabray.serve.local_ensemble import LocalEnsembles, PendingQueue

NAMES = ["lstm", "rule"]
PARAMS = EnsembleParams(base_weights=(1.0, 1.0), half_life=5.0, floor=0.05, step_cap=0.2,
                        temperature=0.05).to_dict()


def keeper_and_copy() -> tuple[EnsembleKeeper, LocalEnsembles]:
    keeper = EnsembleKeeper(None, pending_capacity=1000)
    keeper.ensure("v1", None, PARAMS, NAMES)
    local = LocalEnsembles(1000)
    assert local.apply("v1", keeper.sync("v1", *local.known("v1")))
    return keeper, local


# ------------------------------------------------------------------------------- local copy


def test_the_local_copy_combines_as_the_keeper_does_before_and_after_outcomes():
    keeper, local = keeper_and_copy()
    zones = ["Z01", "Z02", "Z01"]
    scores = np.array([[0.9, 0.1], [0.3, 0.6], [0.7, 0.2]])
    rules = np.array([0.1, 0.6, 0.2])
    degraded = [False, False, True]
    for _ in range(2):
        mine = local.combine("v1", zones, scores, rules, degraded)
        theirs = keeper.combine("v1", zones, scores, rules, degraded)
        assert [(a["probability"], a["weights"]) for a in mine] == [(b["probability"], b["weights"]) for b in theirs]
        # outcomes move the keeper's weights; the copy follows at its next sync
        keeper.feedback([{"prediction_id": b["prediction_id"], "outcome": 1.0} for b in theirs])
        assert keeper.sync("v1", *local.known("v1"))["status"] == "state"
        assert local.apply("v1", keeper.sync("v1", *local.known("v1")))
        assert keeper.sync("v1", *local.known("v1")) == {"status": "current"}
    assert local.weights("v1", "Z01") == pytest.approx(keeper.weights("v1", ["Z01"])["Z01"])
    assert local.weights("v1", "Z01")["lstm"] > 0.5  # the outcomes did move them


def test_a_restarted_keeper_is_a_new_epoch_and_a_missing_version_says_so():
    keeper, local = keeper_and_copy()
    fresh = EnsembleKeeper(None)
    assert fresh.sync("v1", *local.known("v1")) == {"status": "missing"}
    fresh.ensure("v1", None, PARAMS, NAMES)
    reply = fresh.sync("v1", *local.known("v1"))  # generation 0 again, but another keeper: the state
    assert reply["status"] == "state" and reply["epoch"] == fresh.epoch != keeper.epoch


def test_pending_predictions_combined_by_a_replica_reach_the_keeper_and_take_feedback():
    keeper, local = keeper_and_copy()
    answers = local.combine("v1", ["Z01"] * 4, np.array([[0.9, 0.1]] * 4), np.full(4, 0.1), [False] * 4)
    assert keeper.describe()["pending_predictions"] == 0  # nothing was sent on the request path
    assert keeper.record(local.queue.take()) == 4 and len(local.queue) == 0
    result = keeper.feedback([{"prediction_id": a["prediction_id"], "outcome": 1.0} for a in answers])
    assert result["applied"] == 4 and result["unknown"] == []
    assert result["weights"]["v1"]["Z01"]["lstm"] > 0.5
    persisted = keeper.snapshot()["v1"]["pending"]  # recorded predictions are persisted like the keeper's own
    assert persisted == []  # (all four took their feedback)


def test_the_pending_queue_is_bounded_oldest_dropped_and_a_failed_send_goes_back_first():
    queue = PendingQueue(3)
    queue.put([[1], [2]])
    taken = queue.take()
    queue.put([[3], [4]])
    queue.put_back(taken)  # the send failed: ahead of the newer ones
    assert queue.take() == [[2], [3], [4]] and queue.dropped == 1  # [1], the oldest, dropped


# ------------------------------------------------------------------------------- deadline


class SlowZoo:
    """A zoo call that really blocks (a thread waiting on an event) until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0
        self.finished = threading.Event()

    def __call__(self, windows: np.ndarray):
        self.calls += 1
        self.release.wait(30)
        self.finished.set()
        return np.full((len(windows), 2), 0.9), np.full(len(windows), 0.4)


def fast_rules(windows: np.ndarray):
    return np.full(len(windows), 0.3), np.ones((len(windows), 1))


def test_a_zoo_call_past_the_deadline_leaves_the_answer_to_the_rules_and_is_not_waited_for():
    async def scenario():
        zoo = SlowZoo()
        lane = ZooLane(zoo, fast_rules, full_estimate_s=0.001, fast_estimate_s=0.001)
        windows = np.zeros((2, 5, 3), np.float32)
        result = await lane.run(windows, [time.monotonic() + 0.05] * 2)
        assert result.full_rows == [] and result.fast_rows == [0, 1]
        assert not zoo.finished.is_set()  # answered while the zoo call was still running
        np.testing.assert_allclose(result.fast[0], [0.3, 0.3])
        zoo.release.set()
        # the lane stays busy until that call ends: a window without deadline then gets the zoo
        later = await lane.run(windows[:1], [None])
        assert later.full_rows == [0] and later.fast_rows == [] and zoo.calls == 2
        return lane

    lane = asyncio.run(scenario())
    assert lane.counts["fast_overrun"] == 2


def test_queue_wait_beyond_the_budget_goes_to_the_rules_without_calling_the_zoo():
    async def scenario():
        zoo = SlowZoo()
        lane = ZooLane(zoo, fast_rules, full_estimate_s=0.2, fast_estimate_s=0.001)
        windows = np.zeros((1, 5, 3), np.float32)
        first = asyncio.ensure_future(lane.run(windows, [None]))  # holds the lane
        while zoo.calls == 0:
            await asyncio.sleep(0.001)
        second = await lane.run(windows, [time.monotonic() + 0.05])  # less time left than a zoo call
        assert second.fast_rows == [0] and zoo.calls == 1
        zoo.release.set()
        assert (await first).full_rows == [0]
        return lane

    lane = asyncio.run(scenario())
    assert lane.counts["fast_queue"] == 1


def test_windows_within_their_budget_are_answered_by_every_member():
    async def scenario():
        zoo = SlowZoo()
        zoo.release.set()
        lane = ZooLane(zoo, fast_rules, full_estimate_s=0.001)
        return await lane.run(np.zeros((3, 5, 3), np.float32), [time.monotonic() + 60, None, time.monotonic() + 60])

    result = asyncio.run(scenario())
    assert result.full_rows == [0, 1, 2] and result.fast_rows == []
    np.testing.assert_allclose(result.full[0], np.full((3, 2), 0.9))


def test_an_answer_of_the_fast_lane_is_degraded_naming_the_members_dropped_and_its_rules():
    keeper, local = keeper_and_copy()
    batch = ScoredBatch(version="v1", run_id="r1", threshold=0.5, model_names=tuple(NAMES),
                        scores=np.array([[0.8, 0.2], [np.nan, 0.3]]), rules=np.array([0.2, 0.3]),
                        fired=[[], [{"rule": "queue_growth", "activation": 0.9}]],
                        fast=np.array([False, True]), last_rows=np.zeros((2, 12)))
    full, fast = answer(batch, ["Z01", "Z02"], [(), ()], local.combine, budget_ms=5)
    assert not full["degraded"] and full["contributions"]["lstm"]["contribution"] == pytest.approx(0.4)
    assert fast["degraded"] and fast["degraded_reasons"] == [
        "deadline: members lstm dropped (rule answered alone within the 5 ms budget)"]
    assert fast["scores"] == {"lstm": None, "rule": 0.3} and fast["probability"] == pytest.approx(0.3)
    assert fast["weights"] == {"lstm": 0.0, "rule": 1.0} and list(fast["contributions"]) == ["rule"]
    assert fast["rules_fired"] == [{"rule": "queue_growth", "activation": 0.9}]
    assert len(local.queue) == 2  # both are pending predictions (the degraded one takes no feedback)
