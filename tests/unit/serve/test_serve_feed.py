"""The live feed, pure (fabray.serve.feed / alerts): ordering, duplicates, gaps, persistence and
restart, outcomes equal to the training label, weights moved by outcomes alone, alerts with
their lead time and suggestion, a webhook that never slows scoring. No Ray, no HTTP."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pandas as pd
import pytest

from fabray import schema
from fabray.config import DegradedRules, SplitConfig, TaskConfig
from fabray.data.windows import prepare
from fabray.serve.alerts import AlertBook, WebhookSender
from fabray.serve.feed import FeedDesk
from fabray.serve.feed_rows import FeedRefused, FeedSpec, minute_of
from fabray.serve.live_feed import LiveFeed
from fabray.serve.keeper import EnsembleKeeper

L, H = 6, 3
NOMINAL = 100.0
START = pd.Timestamp("2025-01-06T08:00")


def spec(**kw) -> FeedSpec:
    base = dict(zones=("Z01", "Z02", "Z03"), lookback=L, horizon=H, nominal_s={"Z01": NOMINAL, "Z02": NOMINAL, "Z03": NOMINAL},
                sla_delay_s=60.0, task="event", threshold=0.5, context=None,
                degraded=DegradedRules(max_gap_minutes=2, stuck_minutes=5), version="v1")
    return FeedSpec(**(base | kw))


def row(zone: str, minute: int, *, tt: float | None = 110.0, queue: float = 2.0, idle: float = 3.0) -> dict:
    values = {name: 1.0 for name in schema.FEATURES}
    values.update(queue_len=queue, vehicles_idle=idle, vehicle_util=0.5,
                  mean_speed=1.0 + 0.01 * (minute % 7), stocker_fill=0.3 + 0.01 * (minute % 5),
                  transport_time_s=tt)
    stamp = (START + pd.Timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M")
    return {"timestamp": stamp, "zone": zone, **values}


def test_windows_warm_up_then_every_zone_that_got_its_minute_is_scored():
    feed, s = LiveFeed(), spec()
    for m in range(L - 1):
        batch = feed.ingest([row("Z01", m), row("Z02", m)], s)
        assert not batch.to_score and {u["status"] for u in batch.unscored} == {"warming_up"}
    batch = feed.ingest([row("Z01", L - 1), row("Z02", L - 1)], s)
    assert [job["zone"] for job in batch.to_score] == ["Z01", "Z02"]
    window = batch.to_score[0]["window"]
    assert window.shape == (L, len(schema.FEATURES)) and window.dtype == np.float32
    assert window[:, schema.FEATURES.index("queue_len")].tolist() == [2.0] * L
    assert batch.to_score[0]["reasons"] == ()
    only_z01 = feed.ingest([row("Z01", L)], s)
    assert [job["zone"] for job in only_z01.to_score] == ["Z01"]
    assert len(feed.zones["Z01"].minutes) <= s.capacity  # bounded


def test_out_of_order_and_duplicate_rows_are_refused_naming_them_and_nothing_changes():
    feed, s = LiveFeed(), spec()
    feed.ingest([row("Z01", 0), row("Z01", 1), row("Z02", 1)], s)
    before = json.dumps(feed.to_state())
    with pytest.raises(FeedRefused) as err:
        feed.ingest([row("Z02", 2), row("Z01", 1), row("Z01", 0), row("Z02", 2), row("Z03", 5), row("Z03", 4)], s)
    assert err.value.status == 409
    problems = {(p["row"], p["zone"]): p["problem"] for p in err.value.problems}
    assert "already received" in problems[(1, "Z01")] and "already received" in problems[(2, "Z01")]
    assert "duplicate" in problems[(3, "Z02")] and "rows[0]" in problems[(3, "Z02")]
    assert "out of order" in problems[(5, "Z03")] and "rows[4]" in problems[(5, "Z03")]
    assert (0, "Z02") not in problems and (4, "Z03") not in problems
    with pytest.raises(FeedRefused, match="out of order: the zone's last minute is 2025-01-06T08:01"):
        feed.ingest([row("Z02", 0)], s)  # older than the zone's last minute, never received
    assert "rows[1] (Z01 2025-01-06T08:01)" in str(err.value)
    assert json.dumps(feed.to_state()) == before  # all or nothing


@pytest.mark.parametrize("change, fragment", [
    ({"zone": "Z99"}, "unknown zone"),
    ({"timestamp": "yesterday"}, "timestamp"),
    ({"timestamp": "2025-01-06T08:00:30"}, "whole minute"),
    ({"queue_len": None}, "missing value"),
    ({"vehicle_util": 1.5}, "fraction"),
    ({"queue_len": -1.0}, "count"),
])
def test_bad_rows_are_422_naming_the_row(change, fragment):
    feed = LiveFeed()
    with pytest.raises(FeedRefused) as err:
        feed.ingest([row("Z01", 0), row("Z01", 1) | change], spec())
    assert err.value.status == 422 and fragment in str(err.value) and "rows[1]" in str(err.value)
    assert feed.zones == {}


def test_gaps_are_flagged_short_ones_degrade_long_ones_are_not_scored():
    feed, s = LiveFeed(), spec()
    for m in range(L):
        feed.ingest([row("Z01", m)], s)
    short = feed.ingest([row("Z01", L + 2)], s)  # minutes L, L+1 missing
    assert short.gaps == [{"zone": "Z01", "after": "2025-01-06T08:05", "before": "2025-01-06T08:08",
                           "missing_minutes": 2}]
    assert short.to_score and "gap" in short.to_score[0]["reasons"][0]
    long = feed.ingest([row("Z01", L + 20)], s)
    assert long.gaps[0]["missing_minutes"] == 17
    assert not long.to_score and long.unscored[0]["status"] in ("gap", "warming_up")


def test_an_empty_transport_time_is_carried_forward_like_training():
    feed, s = LiveFeed(), spec()
    feed.ingest([row("Z01", 0, tt=150.0)] + [row("Z01", m, tt=None) for m in range(1, L)], s)
    window = feed.window("Z01", s)[0]
    assert window[:, -1].tolist() == [150.0] * L


def _hand_made_series(n: int = 40) -> list[float | None]:
    tt: list[float | None] = [110.0] * n
    for m in range(14, 21):
        tt[m] = 220.0  # late: the mean of the next 3 minutes crosses nominal + SLA around here
    tt[9] = None  # a minute with no completions (skipped by the target's mean)
    tt[30] = None
    return tt


class RecordingKeeper:
    def __init__(self):
        self.items = []

    def feedback(self, items):
        self.items += items
        last = {i["prediction_id"].split("-")[0]: int(i["prediction_id"].split("-")[1]) for i in items}  # zone-n
        weights = {z: {"lstm": 0.5 + 0.001 * n, "rule": 0.5 - 0.001 * n} for z, n in sorted(last.items())}
        return {"applied": len(items), "skipped_degraded": 0, "unknown": [], "weights": {"v1": weights}}


def _fake_scorer(calls):
    async def score(zones, windows, reasons):
        out = []
        for zone, window, why in zip(zones, windows, reasons):
            pid = f"{zone}-{len(calls)}"
            calls.append(pid)
            p = 0.9 if window[-1, schema.FEATURES.index("queue_len")] > 10 else 0.1
            out.append({"prediction_id": pid, "zone": zone, "model_version": "v1", "probability": p,
                        "decision": p >= 0.5, "threshold": 0.5, "degraded": bool(why),
                        "scores": {"lstm": p, "rule": 0.5}, "weights": {"lstm": 0.5, "rule": 0.5}})
        return out
    return score


def test_derived_outcomes_equal_the_training_label_on_a_hand_made_series():
    tt = _hand_made_series()
    keeper, calls = RecordingKeeper(), []
    desk = FeedDesk(None, keeper, AlertBook())
    s = spec()
    answers = {}
    for m, value in enumerate(tt):
        out = asyncio.run(desk.observe([row("Z01", m, tt=value)], s, _fake_scorer(calls)))
        for z in out["zones"]:
            if z["status"] == "scored":
                answers[z["prediction"]["prediction_id"]] = m
    derived = {answers[i["prediction_id"]]: i["outcome"] for i in keeper.items}

    frame = pd.DataFrame([row("Z01", m, tt=v) for m, v in enumerate(tt)])
    frame["transport_time_s"] = frame["transport_time_s"].astype(float)
    task = TaskConfig(lookback=L, horizon=H, sla_delay_s=60.0, early_warning_min=0)
    prepared = prepare(frame, task, SplitConfig(train_fraction=0.5, val_fraction=0.2), nominal_s={"Z01": NOMINAL})
    expected = {m: float(prepared.target[m]) for m in range(len(tt)) if not np.isnan(prepared.target[m])}
    scored_with_label = {m: v for m, v in expected.items() if m >= L - 1}
    assert derived == scored_with_label
    assert set(derived.values()) == {0.0, 1.0}
    # by hand: late minutes 14..20 at 220 s → the mean of the next 3 exceeds 160 s (2 of 3 late)
    # from minute 12 to 18
    assert [m for m, v in sorted(derived.items()) if v == 1.0] == list(range(12, 19))


def test_a_restart_loses_nothing_and_replaying_the_feed_changes_nothing(tmp_path):
    s = spec()
    rows = [[row(z, m, queue=12.0 if 15 <= m < 20 else 2.0, tt=220.0 if 17 <= m < 22 else 110.0)
             for z in ("Z01", "Z02")] for m in range(40)]
    calls_a, calls_b = [], []
    a = FeedDesk(tmp_path / "feed" / "state.json", RecordingKeeper(), AlertBook(capacity=3), history_size=4)
    for minute_rows in rows[:25]:  # written after each call, as the server does
        asyncio.run(a.observe(minute_rows, s, _fake_scorer(calls_a)))
        a.write(a.snapshot())
    assert [x["status"] for x in a.alerts.all_alerts()] == ["closed", "closed"]  # Z01's and Z02's
    assert len(a.history) == 4 and (tmp_path / "feed" / "weights.jsonl").is_file()
    b = FeedDesk(tmp_path / "feed" / "state.json", RecordingKeeper(), AlertBook(capacity=3), history_size=4)
    assert json.dumps(b.full_state(), sort_keys=True) == json.dumps(a.full_state(), sort_keys=True)
    for minute_rows in rows[:25]:  # the client replays what it sent: refused, nothing changes
        with pytest.raises(FeedRefused):
            asyncio.run(b.observe(minute_rows, s, _fake_scorer(calls_b)))
    assert json.dumps(b.full_state(), sort_keys=True) == json.dumps(a.full_state(), sort_keys=True)
    calls_b.extend(calls_a)  # same prediction ids from here on
    assert not b.keeper.items
    for minute_rows in rows[25:]:
        out_a = asyncio.run(a.observe(minute_rows, s, _fake_scorer(calls_a)))
        out_b = asyncio.run(b.observe(minute_rows, s, _fake_scorer(calls_b)))
        assert out_a == out_b
    assert b.keeper.items and a.keeper.items[-len(b.keeper.items):] == b.keeper.items
    assert json.dumps(b.full_state(), sort_keys=True) == json.dumps(a.full_state(), sort_keys=True)


def test_outcomes_move_the_weights_with_no_feedback_call(tmp_path):
    keeper = EnsembleKeeper(tmp_path / "state")
    from fabray.config import EnsembleConfig

    names = ["lstm", "rule"]
    keeper.ensure("v1", None, EnsembleConfig().to_params(names).to_dict(), names)
    desk = FeedDesk(None, keeper, AlertBook())
    tt = _hand_made_series(60)

    async def score(zones, windows, reasons):  # the lstm sees the future, the rules never do
        m = desk.feed.zones["Z01"].last
        late = [1.0 if (v or 0) > 200 else 0.0 for v in tt[m + 1:m + 1 + H]]
        lstm = 0.95 if sum(late) >= 2 else 0.05
        scores = np.array([[lstm, 0.5]] * len(zones))
        combined = keeper.combine("v1", zones, scores, scores[:, 1], [False] * len(zones))
        return [{"prediction_id": c["prediction_id"], "probability": c["probability"], "decision": False,
                 "weights": c["weights"], "scores": {"lstm": lstm, "rule": 0.5}} for c in combined]

    before = keeper.weights("v1", ["Z01"])["Z01"]
    for m, value in enumerate(tt):
        asyncio.run(desk.observe([row("Z01", m, tt=value)], spec(), score))
    after = keeper.weights("v1", ["Z01"])["Z01"]
    assert after["lstm"] > before["lstm"] and after["rule"] < before["rule"]
    assert keeper.feedback_applied == desk.counts["outcomes_applied"] > 40
    history = desk.weight_history("Z01", limit=1000)
    assert history and history[-1]["weights"] == pytest.approx(after) and history[-1]["version"] == "v1"


def test_an_alert_opens_when_the_alarm_rises_and_closes_with_its_lead_time():
    book, calls = AlertBook(), []
    desk = FeedDesk(None, RecordingKeeper(), book)
    opened, closed = [], []
    for m in range(40):
        late = 22 <= m <= 30  # labels: event from 20 (next 3 minutes mostly late) to 29
        z01 = row("Z01", m, queue=15.0 if 17 <= m <= 26 else 2.0, tt=220.0 if late else 110.0, idle=0.0)
        z02 = row("Z02", m, idle=6.0)
        out = asyncio.run(desk.observe([z01, z02], spec(), _fake_scorer(calls)))
        opened += out["alerts"]["opened"]
        closed += out["alerts"]["closed"]
    assert len(opened) == 1 and closed == opened
    alert = book.list()[0]
    assert alert["zone"] == "Z01" and alert["status"] == "closed" and alert["outcome"] == "episode"
    assert alert["opened_at"] == "2025-01-06T08:17"
    assert alert["episode_start"] == "2025-01-06T08:20" and alert["lead_min"] == 3
    assert alert["horizon_min"] == H and alert["probability"] == pytest.approx(0.9)
    assert set(alert["contributions"]) == {"lstm", "rule"}
    assert alert["contributions"]["lstm"]["share"] == pytest.approx(0.9 / 1.4)
    suggestion = alert["suggestion"]
    assert suggestion["kind"] == "lend_vehicles" and suggestion["from_zone"] in ("Z02", "Z03")
    assert suggestion["from_zone"] == "Z02" and suggestion["vehicles"] == 3 and "6 idle" in suggestion["basis"]
    assert book.summary()["median_lead_min"] == 3


def test_an_alarm_with_no_episode_closes_as_a_false_alarm():
    book, calls = AlertBook(), []
    desk = FeedDesk(None, RecordingKeeper(), book)
    for m in range(30):
        asyncio.run(desk.observe([row("Z01", m, queue=15.0 if 10 <= m <= 12 else 2.0, idle=0.0)], spec(),
                                 _fake_scorer(calls)))
    alert = book.list()[0]
    assert alert["status"] == "closed" and alert["outcome"] == "no_episode" and alert["lead_min"] is None
    assert alert["suggestion"]["kind"] == "hold_releases"


def test_minute_of_reads_iso_minutes_and_offsets():
    assert minute_of("2025-01-06T08:00") == minute_of("2025-01-06T08:00:00Z") == minute_of("2025-01-06T09:00+01:00")


# ---------------------------------------------------------------------------- webhook


class _Hook(BaseHTTPRequestHandler):
    release = threading.Event()
    received: list = []
    status = 200

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        type(self).release.wait(30)
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args):
        pass


def _hook_server(status: int):
    handler = type("Hook", (_Hook,), {"release": threading.Event(), "received": [], "status": status})
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, handler


def _wait(check, seconds=20.0):
    import time

    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not true in time"
        time.sleep(0.02)


def test_a_hanging_webhook_never_blocks_scoring():
    server, handler = _hook_server(200)
    try:
        sender = WebhookSender(f"http://127.0.0.1:{server.server_address[1]}/hook", timeout_s=30, retries=0)
        book, calls = AlertBook(webhook=sender), []
        desk = FeedDesk(None, RecordingKeeper(), book)
        for m in range(12):  # the alarm rises at minute 8 while the hook hangs on its first event
            out = asyncio.run(desk.observe([row("Z01", m, queue=15.0 if m >= 8 else 2.0)], spec(),
                                           _fake_scorer(calls)))
            assert out["zones"][0]["status"] in ("scored", "warming_up")
        assert len(book.list()) == 1
        _wait(lambda: handler.received)  # the hook holds the event, scoring went on
        assert desk.counts["scored"] == 12 - (L - 1)
        handler.release.set()
        _wait(lambda: sender.stats["sent"] == 1)
        assert handler.received[0]["event"] == "alert_opened" and handler.received[0]["alert"]["zone"] == "Z01"
        sender.close()
    finally:
        handler.release.set()
        server.shutdown()


def test_a_failing_webhook_is_retried_a_bounded_number_of_times():
    server, handler = _hook_server(500)
    handler.release.set()
    try:
        sender = WebhookSender(f"http://127.0.0.1:{server.server_address[1]}/hook", retries=2, backoff_s=0.01)
        assert sender.submit({"event": "alert_opened"})
        _wait(lambda: sender.stats["failed"] == 1)
        assert sender.stats["attempts"] == 3 and len(handler.received) == 3 and sender.stats["sent"] == 0
        sender.close()
    finally:
        server.shutdown()


def test_a_full_webhook_queue_drops_instead_of_waiting():
    sender = WebhookSender("http://127.0.0.1:9/none", retries=0, queue_size=1, timeout_s=0.2)
    results = [sender.submit({"event": str(i)}) for i in range(50)]
    assert not all(results) and sender.stats["dropped"] >= 1
    sender.close()


# ---------------------------------------------------------------------------- rules fired


def test_an_alert_names_the_rules_that_fired_on_its_window():
    book, calls, asked = AlertBook(), [], []

    async def explain(windows):
        asked.append(len(windows))
        return [[{"rule": "queue_growth", "activation": 0.97}] for _ in windows]

    desk = FeedDesk(None, RecordingKeeper(), book)
    for m in range(14):  # the alarm rises at minute 8 and stays up: one alert, explained once
        asyncio.run(desk.observe([row("Z01", m, queue=15.0 if m >= 8 else 2.0)], spec(), _fake_scorer(calls), explain))
    assert asked == [1]
    assert book.list()[0]["rules_fired"] == [{"rule": "queue_growth", "activation": 0.97}]


def test_the_served_rule_model_says_which_rules_fire():
    from pathlib import Path

    from fabray.config import TaskConfig
    from fabray.data.scaler import Scaler
    from fabray.models import build_model
    from fabray.predictor import RunPredictor
    from fabray.serve.bundle import ServingBundle

    lookback = 20
    f = len(schema.FEATURES)
    scaler = Scaler(schema.FEATURES, (3.0,) * f, (2.0,) * f)  # the rules must read the raw window anyway
    model = build_model("rule", lookback, f, {"lstm_units": 4, "head_units": [4]}, scaler)

    predictor = RunPredictor(version="v", run_dir=Path("."), manifest={}, models={"rule": model},
                             scaler=scaler, nominal_s={}, zones=(), task=TaskConfig(lookback=lookback),
                             lookback=lookback, n_features=f, warm_up=False)
    bundle = ServingBundle(version="v1", predictor=predictor, ensemble_params={}, fitted_state=None,
                           threshold=0.5, rules_fn=None, run_id="r")
    bundle._compile_request_path()  # the request path's calls: the zoo's and the rules model's alone

    calm = np.ones((lookback, len(schema.FEATURES)), np.float32)
    calm[:, schema.FEATURES.index("vehicle_util")] = 0.5
    calm[:, schema.FEATURES.index("vehicles_down")] = 0.0
    calm[:, schema.FEATURES.index("blocked_segments")] = 0.0
    busy = calm.copy()
    busy[:, schema.FEATURES.index("vehicle_util")] = 0.99
    busy[-10:, schema.FEATURES.index("queue_len")] = 30.0
    windows = np.stack([calm, busy])
    fired = bundle.rules_fired(bundle.score_fast(windows)[1])
    assert bundle.rules_fired(bundle.score_full(windows)[2]) == fired  # every answer names them
    assert fired[0] == []
    assert {f["rule"] for f in fired[1]} == {"high_utilization", "queue_growth"}
    assert all(f["activation"] >= 0.5 for f in fired[1])


class PolicyKeeper(RecordingKeeper):
    """A keeper whose served ensemble has an alarm policy with a hold (the real `decide`)."""

    def __init__(self):
        super().__init__()
        from fabray.alarm import AlarmPolicy
        from fabray.ensemble.dynamic import DynamicEnsemble
        from fabray.ensemble.params import EnsembleParams
        from fabray.ensemble.served import ServedEnsemble

        names = ("lstm", "rule")
        policy = AlarmPolicy(0.5, clear_ratio=1.0, hold_min=2)
        self.served = ServedEnsemble("static", names, names, 0.5,
                                     DynamicEnsemble(EnsembleParams.static([1.0, 1.0], threshold=0.5), names),
                                     alarm=policy)

    def has(self, version):
        return version == "v1"

    def decide(self, version, zone, probability, minute):
        return self.served.decide(zone, probability, minute)

    def forget_alarm(self, version, zone):
        self.served.forget_alarm(zone)


def test_the_feed_decides_by_the_served_alarm_policy_minute_after_minute():
    keeper, calls = PolicyKeeper(), []
    desk = FeedDesk(None, keeper, AlertBook())
    s = spec()
    decisions = {}
    queue = {L - 1: 20.0}  # one busy minute: p = 0.9 there, 0.1 after
    for m in range(L + 4):
        out = asyncio.run(desk.observe([row("Z01", m, queue=queue.get(m, 2.0))], s, _fake_scorer(calls)))
        for z in out["zones"]:
            if z["status"] == "scored":
                decisions[m] = (z["prediction"]["probability"], z["prediction"]["decision"])
    # the raise at minute L-1 is held 2 more minutes though the probability fell below 0.5
    assert [decisions[m] for m in range(L - 1, L + 3)] == [(0.9, True), (0.1, True), (0.1, True), (0.1, False)]
