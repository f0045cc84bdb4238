"""The feed's self-monitoring (fabray.serve.monitor), pure: rolling per-zone event metrics
against hand counts and `fabray.metrics.event_metrics`, the realised lead of closed alerts, the
drift score against a hand computation, `retrain_advised` flipping only past the threshold, the
state round trip; and through a `FeedDesk`: outcomes move the zone metrics with no feedback
call, GET /v1/feed's `monitor`, persisted across a restart. No Ray."""

from __future__ import annotations

import asyncio
import json
import math

import numpy as np
import pytest

from fabray import schema
from fabray.config import ServeMonitor
from fabray.metrics import event_metrics
from fabray.serve.alerts import AlertBook
from fabray.serve.feed import FeedDesk
from fabray.serve.feed_rows import FeedSpec
from fabray.serve.monitor import FeedMonitor, training_stats
from tests.unit.serve.test_serve_feed import L, RecordingKeeper, _fake_scorer, row, spec

F = len(schema.FEATURES)
QUEUE = schema.FEATURES.index("queue_len")
TT = schema.FEATURES.index("transport_time_s")
#: training statistics: every feature mean 10, std 2
TRAINING = {name: (10.0, 2.0) for name in schema.FEATURES}


def at(value: float = 10.0, **changes: float) -> list[float]:
    values = [value] * F
    for name, v in changes.items():
        values[schema.FEATURES.index(name)] = v
    return values


# ---------------------------------------------------------------------------- event metrics


def test_zone_metrics_count_hand_made_pairs_as_event_metrics_does():
    mon = FeedMonitor(ServeMonitor(window_min=100))
    #            minute: 0     1      2      3     4      5      6     7
    z01 = [(True, 1.0), (True, 0.0), (False, 1.0), (False, 0.0), (True, 1.0), (False, 0.0), (True, 1.0),
           (False, 1.0)]
    for m, (decision, event) in enumerate(z01):
        mon.observe_outcome("Z01", m, decision, event)
    mon.observe_outcome("Z02", 3, False, 0.0)
    mon.observe_outcome("Z02", 4, True, 0.0)
    mon.observe_outcome("Z02", 5, True, math.nan)  # undefined outcome: skipped
    mon.observe_outcome("Z02", 6, None, 1.0)  # no decision known (an older state): skipped

    zones = mon.summary()["zones"]
    # by hand: tp = minutes 0, 4, 6; fp = 1; fn = 2, 7; tn = 3, 5
    assert {k: zones["Z01"][k] for k in ("tp", "fp", "fn", "tn", "n")} == {"tp": 3, "fp": 1, "fn": 2, "tn": 2, "n": 8}
    assert zones["Z01"]["precision"] == pytest.approx(3 / 4)
    assert zones["Z01"]["recall"] == pytest.approx(3 / 5)
    assert zones["Z01"]["f1"] == pytest.approx(6 / 9)
    alarm = np.array([d for d, _ in z01])
    reference = event_metrics(np.array([e for _, e in z01]), alarm.astype(float), alarm=alarm)
    for key in ("tp", "fp", "fn", "tn", "n", "precision", "recall", "f1"):
        assert zones["Z01"][key] == pytest.approx(reference[key])
    # Z02: one fp, one tn, no event: recall undefined (None, not 0), precision 0
    assert zones["Z02"]["n"] == 2 and zones["Z02"]["recall"] is None and zones["Z02"]["precision"] == 0.0
    overall = mon.summary()["overall"]
    assert (overall["tp"], overall["fp"], overall["fn"], overall["tn"]) == (3, 2, 2, 3)


def test_only_outcomes_of_the_last_window_minutes_count():
    mon = FeedMonitor(ServeMonitor(window_min=10))
    for m in range(20):  # alarms and events at minutes 0..9, quiet minutes 10..19
        mon.observe_outcome("Z01", m, m < 10, 1.0 if m < 10 else 0.0)
    z = mon.summary()["zones"]["Z01"]
    assert (z["tp"], z["tn"], z["n"]) == (0, 10, 10) and z["precision"] is None
    assert mon.summary()["since"] == str(np.datetime64(10, "m")) and len(mon.zones["Z01"].codes) == 10
    mon.observe_outcome("Z02", 25, True, 1.0)  # the clock moves on: Z01 ages out
    z = mon.summary()["zones"]["Z01"]
    assert z["n"] == 4  # minutes 16..19
    mon.observe_outcome("Z01", 500, True, 1.0)  # after a long silence: only the new outcome
    assert mon.summary()["zones"]["Z01"]["tp"] == 1 and mon.summary()["zones"]["Z01"]["n"] == 1


def test_the_median_realised_lead_of_the_zones_closed_alerts_in_the_window():
    mon = FeedMonitor(ServeMonitor(window_min=100))
    mon.observe_outcome("Z01", 200, False, 0.0)  # now = 200: the window starts at 101
    alerts = [
        {"zone": "Z01", "status": "closed", "lead_min": 4, "episode_end": 150},
        {"zone": "Z01", "status": "closed", "lead_min": 10, "episode_end": 180},
        {"zone": "Z01", "status": "closed", "lead_min": -2, "episode_end": 190},
        {"zone": "Z01", "status": "closed", "lead_min": 50, "episode_end": 90},  # before the window
        {"zone": "Z01", "status": "closed", "lead_min": None, "episode_end": None},  # a false alarm
        {"zone": "Z01", "status": "open", "lead_min": None, "episode_end": None},
        {"zone": "Z02", "status": "closed", "lead_min": 7, "episode_end": 199},
    ]
    zones = mon.summary(alerts=alerts)["zones"]
    assert zones["Z01"]["median_lead_min"] == 4.0 and zones["Z01"]["alerts_with_lead"] == 3
    assert zones["Z02"]["median_lead_min"] == 7.0 and zones["Z02"]["n"] == 0


# ---------------------------------------------------------------------------- drift


def test_the_drift_score_matches_a_hand_computation():
    h = 10.0
    mon = FeedMonitor(ServeMonitor(drift_half_life_min=h))
    mon.observe_row("Z01", 0, at(queue_len=4.0))
    mon.observe_row("Z01", 5, at(queue_len=10.0))
    mon.observe_row("Z02", 5, at(queue_len=12.0))  # same minute, another zone: same weight
    mon.observe_row("Z01", 10, at(queue_len=16.0))
    mon.observe_row("Z02", 8, at(queue_len=7.0))  # late row: weighted by its age behind the clock
    drift = mon.summary(TRAINING)["drift"]

    # by hand: weights 2^(-age/h) at the clock (minute 10); the weighted population mean and std
    values = np.array([4.0, 10.0, 12.0, 16.0, 7.0])
    w = 0.5 ** (np.array([10.0, 5.0, 5.0, 0.0, 2.0]) / h)
    mean = np.sum(w * values) / np.sum(w)
    std = math.sqrt(np.sum(w * (values - mean) ** 2) / np.sum(w))
    queue = drift["features"]["queue_len"]
    assert queue["recent_mean"] == pytest.approx(mean) and queue["recent_std"] == pytest.approx(std)
    assert queue["score"] == pytest.approx(abs(mean - 10.0) / 2.0)
    assert queue["std_ratio"] == pytest.approx(std / 2.0)
    assert drift["features"]["requests"]["score"] == pytest.approx(0.0)
    assert drift["ready"] and drift["max_feature"] == "queue_len"
    assert drift["max_score"] == pytest.approx(queue["score"])


def test_an_empty_transport_time_is_carried_forward_and_skipped_before_any():
    mon = FeedMonitor(ServeMonitor(drift_half_life_min=1e9))  # no decay: plain mean
    mon.observe_row("Z01", 0, at(transport_time_s=math.nan))  # nothing to carry yet: skipped
    mon.observe_row("Z01", 1, at(transport_time_s=100.0))
    mon.observe_row("Z01", 2, at(transport_time_s=math.nan))  # 100 carried forward
    mon.observe_row("Z01", 3, at(transport_time_s=130.0))
    assert mon.drift.weight[TT] == pytest.approx(3.0) and mon.drift.weight[QUEUE] == pytest.approx(4.0)
    assert mon.drift.mean[TT] == pytest.approx(110.0)


def test_drift_waits_for_one_half_life_and_needs_training_statistics():
    mon = FeedMonitor(ServeMonitor(drift_half_life_min=30))
    for m in range(30):
        mon.observe_row("Z01", m, at(queue_len=100.0))
    drift = mon.summary(TRAINING)["drift"]
    assert not drift["ready"] and drift["max_score"] is None and "warming up" in drift["reason"]
    assert not mon.summary(TRAINING)["retrain_advised"]
    mon.observe_row("Z01", 30, at(queue_len=100.0))
    assert mon.summary(TRAINING)["retrain_advised"]
    assert "no training statistics" in mon.summary()["drift"]["reason"]
    assert not mon.summary()["retrain_advised"]


def test_retrain_is_advised_when_a_feature_shifts_past_the_threshold_and_not_before():
    h, threshold = 20.0, 1.0
    mon = FeedMonitor(ServeMonitor(drift_half_life_min=h, drift_threshold=threshold))
    minute = 0

    def feed(n: int, queue: float) -> dict:
        nonlocal minute
        for _ in range(n):
            for zone in ("Z01", "Z02"):
                mon.observe_row(zone, minute, at(queue_len=queue))
            minute += 1
        return mon.summary(TRAINING)

    calm = feed(60, 10.0)  # the training mean
    assert calm["drift"]["ready"] and calm["drift"]["max_score"] == pytest.approx(0.0)
    assert not calm["retrain_advised"] and calm["retrain_reasons"] == []
    below = feed(400, 10.0 + 0.8 * 2.0)  # 0.8 training std, for 20 half-lives: settles below
    assert below["drift"]["max_score"] == pytest.approx(0.8) and not below["retrain_advised"]
    one_minute = feed(1, 10.0 + 1.5 * 2.0)  # 1.5 std, but one minute only: the mean has barely moved
    assert one_minute["drift"]["max_score"] < threshold and not one_minute["retrain_advised"]
    shifted = feed(200, 10.0 + 1.5 * 2.0)
    assert shifted["drift"]["max_score"] == pytest.approx(1.5, abs=1e-3) and shifted["retrain_advised"]
    assert shifted["retrain_reasons"] == ["input drift: queue_len scores 1.50 > threshold 1"]
    back = feed(400, 10.0)
    assert not back["retrain_advised"]


def test_a_recall_floor_advises_a_retrain_once_enough_events_were_missed():
    mon = FeedMonitor(ServeMonitor(recall_floor=0.5, recall_min_events=5, window_min=1000))
    for m in range(4):
        mon.observe_outcome("Z01", m, False, 1.0)
    assert not mon.summary()["retrain_advised"]  # recall 0, but only 4 event minutes
    mon.observe_outcome("Z02", 4, False, 1.0)
    summary = mon.summary()
    assert summary["retrain_advised"]
    assert summary["retrain_reasons"] == ["rolling recall 0.00 < floor 0.5 over 5 event minutes"]
    for m in range(5, 12):
        mon.observe_outcome("Z01", m, True, 1.0)
    assert not mon.summary()["retrain_advised"]  # recall 7/12


def test_training_stats_are_the_raw_features_of_the_scaler():
    scaler = {"features": [*schema.FEATURES, "minute_of_day_sin", "nb1_queue_len"],
              "mean": [float(i) for i in range(F + 2)], "scale": [1.0 + i for i in range(F + 2)]}
    stats = training_stats(scaler)
    assert list(stats) == list(schema.FEATURES)
    assert stats["queue_len"] == (float(QUEUE), 1.0 + QUEUE)
    assert training_stats(None) is None and training_stats({"features": ["x"]}) is None


# ---------------------------------------------------------------------------- state


def _busy_monitor() -> FeedMonitor:
    mon = FeedMonitor(ServeMonitor(window_min=50, drift_half_life_min=7))
    mon.training = dict(TRAINING)
    rng = np.random.default_rng(0)
    for m in range(80):
        for zone in ("Z01", "Z02"):
            values = at(queue_len=float(rng.integers(0, 20)), transport_time_s=math.nan if m % 9 == 0 else 120.0 + m)
            mon.observe_row(zone, m, values)
            mon.observe_outcome(zone, m, bool(rng.integers(0, 2)), float(rng.integers(0, 2)))
    return mon


def test_the_state_round_trips_through_json_exactly():
    a = _busy_monitor()
    b = FeedMonitor.from_state(json.loads(json.dumps(a.to_state())), a.settings)
    assert b.to_state() == a.to_state()
    assert json.dumps(b.summary(), allow_nan=False) == json.dumps(a.summary(), allow_nan=False)
    for m in range(80, 90):  # and both go on alike
        for mon in (a, b):
            mon.observe_row("Z01", m, at(queue_len=30.0))
            mon.observe_outcome("Z01", m, True, 1.0)
    assert b.to_state() == a.to_state() and b.summary() == a.summary()
    with pytest.raises(ValueError):
        FeedMonitor.from_state({"format": 99})


# ---------------------------------------------------------------------------- through the feed


def test_outcomes_move_the_zone_metrics_with_no_feedback_call(tmp_path):
    keeper, calls = RecordingKeeper(), []
    state = tmp_path / "feed" / "state.json"
    zones = ["Z01", "Z02", "Z03"]
    meta = {"zones": zones, "lookback": L, "horizon": 3, "nominal_s": {z: 100.0 for z in zones}, "sla_delay_s": 60.0,
            "task": "event", "threshold": 0.5, "context": None, "version": "v1",
            "scaler": {"features": list(schema.FEATURES), "mean": [2.0] * F, "scale": [1.0] * F}}
    s = FeedSpec.from_meta(meta, spec().degraded)
    assert s.training["queue_len"] == (2.0, 1.0)
    settings = ServeMonitor(drift_half_life_min=10)
    desk = FeedDesk(state, keeper, AlertBook(), monitor=FeedMonitor(settings))
    decisions = {}
    for m in range(40):  # Z01: alarm (queue 15) at 17..26; late transports 22..30
        z01 = row("Z01", m, queue=15.0 if 17 <= m <= 26 else 2.0, tt=220.0 if 22 <= m <= 30 else 110.0)
        out = asyncio.run(desk.observe([z01, row("Z02", m)], s, _fake_scorer(calls)))
        desk.write(desk.snapshot())
        for z in out["zones"]:
            if z["status"] == "scored":
                decisions[z["prediction"]["prediction_id"]] = z["prediction"]["decision"]
        if m == L - 1 + 3:  # the first prediction (minute L - 1) came due, with no client call
            assert desk.status()["monitor"]["zones"]["Z01"]["n"] == 1
    status = desk.status()
    json.dumps(status, allow_nan=False)  # what GET /v1/feed returns: JSON, no NaN
    assert set(status) >= {"zones", "counts", "monitor"}
    monitor = status["monitor"]
    z01 = monitor["zones"]["Z01"]
    # by hand: predictions at minutes 5..36 have outcomes; minute m is an event when 2 of the
    # transports at m+1..m+3 are late (mean > 100 + 60 s): m = 20..28. tp 20..26, fp 17..19, fn 27..28
    assert (z01["tp"], z01["fp"], z01["fn"], z01["tn"]) == (7, 3, 2, 32 - 12)
    assert z01["precision"] == pytest.approx(0.7) and z01["recall"] == pytest.approx(7 / 9)
    z01_items = [i for i in keeper.items if i["prediction_id"].startswith("Z01")]
    expected = {"tp": sum(decisions[i["prediction_id"]] and i["outcome"] == 1.0 for i in z01_items),
                "n": len(z01_items)}
    assert {k: z01[k] for k in expected} == expected  # the decision paired with its own outcome
    assert z01["median_lead_min"] == 3.0 and z01["alerts_with_lead"] == 1  # the alert at 17, episode at 20
    assert monitor["zones"]["Z02"]["tn"] == 32 and monitor["zones"]["Z02"]["recall"] is None
    drift = monitor["drift"]
    assert drift["ready"] and drift["features"]["queue_len"]["train_mean"] == 2.0
    assert drift["features"]["requests"]["score"] == pytest.approx(1.0)  # rows send 1.0, training says 2 ± 1
    assert drift["max_score"] > 1.0 and monitor["retrain_advised"]

    restarted = FeedDesk(state, RecordingKeeper(), AlertBook(), monitor=FeedMonitor(settings))
    assert restarted.status()["monitor"] == monitor
    assert json.dumps(restarted.full_state(), sort_keys=True) == json.dumps(desk.full_state(), sort_keys=True)


def test_the_keeper_exports_the_summary_as_prometheus_gauges():
    from types import SimpleNamespace

    from fabray.serve.deployments.keeper import EnsembleKeeperDeployment

    class Gauge:
        def __init__(self):
            self.values = {}

        def set(self, value, tags=None):
            self.values[tuple(sorted((tags or {}).items()))] = value

    book = AlertBook()
    desk = FeedDesk(None, RecordingKeeper(), book, monitor=FeedMonitor(ServeMonitor(drift_half_life_min=5)))
    desk.monitor.training = dict(TRAINING)
    for m in range(10):
        desk.monitor.observe_row("Z01", m, at(queue_len=20.0))  # queue_len 5 training std up
        desk.monitor.observe_outcome("Z01", m, m % 2 == 0, 1.0)  # tp, fn, tp, fn, ...
        desk.monitor.observe_outcome("Z02", m, False, 0.0)
    gauges = {k: Gauge() for k in ("precision", "recall", "f1", "median_lead_min")}
    keeper = SimpleNamespace(desk=desk, _zone_gauges=gauges, _drift_gauge=Gauge(), _retrain_gauge=Gauge())
    EnsembleKeeperDeployment.func_or_class._export_monitor(keeper)
    z01, z02 = (("zone", "Z01"),), (("zone", "Z02"),)
    assert keeper._zone_gauges["precision"].values[z01] == 1.0 and keeper._zone_gauges["recall"].values[z01] == 0.5
    assert math.isnan(keeper._zone_gauges["recall"].values[z02])  # undefined: NaN, not a stale value
    assert math.isnan(keeper._zone_gauges["median_lead_min"].values[z01])
    assert keeper._drift_gauge.values[(("feature", "queue_len"),)] == pytest.approx(5.0)
    assert keeper._drift_gauge.values[(("feature", "requests"),)] == pytest.approx(0.0)
    assert keeper._retrain_gauge.values[()] == 1.0
