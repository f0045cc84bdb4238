"""The live feed's routes over real HTTP on 127.0.0.1 (uvicorn in a thread; no Ray): the token,
409 naming rows out of order or duplicated, 422 for bad rows, scoring, outcomes moving the
weights with no /v1/feedback, alerts and the weight history. The service behind the routes
is the real `FeedDesk` and `EnsembleKeeper`, with a fake scorer instead of the models."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pandas as pd
import pytest
import requests
import uvicorn

from fabray import schema
from fabray.config import DegradedRules, EnsembleConfig
from fabray.serve.alerts import AlertBook
from fabray.serve.feed import FeedDesk
from fabray.serve.feed_rows import FeedSpec
from fabray.serve.http import build_http_app
from fabray.serve.http_guard import HttpSettings
from fabray.serve.keeper import EnsembleKeeper

TOKEN = "unit-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
L, H = 6, 3
ZONES = ["Z01", "Z02"]
START = pd.Timestamp("2025-01-06T08:00")
META = {"version": "v1", "zones": ZONES, "lookback": L, "horizon": H, "task": "event", "threshold": 0.5,
        "nominal_s": {z: 100.0 for z in ZONES}, "sla_delay_s": 60.0, "context": None,
        "models": ["lstm", "rule"]}


class FeedService:
    """What the ingress and keeper deployments do for the feed routes, without Ray."""

    def __init__(self, state_dir) -> None:
        self.settings = HttpSettings(max_body_bytes=1_000_000, max_windows_per_request=4, degraded=DegradedRules(),
                                     api_token=TOKEN, max_observe_rows=50)
        self.keeper = EnsembleKeeper(state_dir)
        self.keeper.ensure("v1", None, EnsembleConfig().to_params(META["models"]).to_dict(), META["models"])
        self.desk = FeedDesk(state_dir / "feed.json", self.keeper, AlertBook())
        self.feedback_calls = 0

    async def meta(self):
        return META

    async def _score(self, zones, windows, reasons):
        queue = windows[:, -1, schema.FEATURES.index("queue_len")]
        lstm = np.where(queue > 10, 0.95, 0.05)  # the lstm reads the queue, the rules say 0.5
        scores = np.stack([lstm, np.full(len(zones), 0.5)], axis=1)
        combined = self.keeper.combine("v1", zones, scores, scores[:, 1], [bool(r) for r in reasons])
        return [{"prediction_id": c["prediction_id"], "zone": z, "model_version": "v1", "run_id": "r1",
                 "scores": {"lstm": float(s[0]), "rule": 0.5}, "probability": c["probability"],
                 "decision": c["probability"] >= 0.5, "threshold": 0.5, "weights": c["weights"],
                 "degraded": bool(r), "degraded_reasons": list(r)}
                for z, s, c, r in zip(zones, scores, combined, reasons)]

    async def observe_feed(self, rows):
        out = await self.desk.observe(rows, FeedSpec.from_meta(META, self.settings.degraded), self._score)
        self.desk.write(self.desk.snapshot())
        return out

    async def alerts(self, zone, status, limit):
        return {"alerts": self.desk.alerts.list(zone, status, limit), "summary": self.desk.alerts.summary()}

    async def weight_history(self, zone, limit):
        return {"version": "v1", "current": self.keeper.weights("v1", [zone] if zone else ZONES),
                "history": self.desk.weight_history(zone, limit)}

    async def feed_status(self):
        return self.desk.status()

    async def feedback(self, items):
        self.feedback_calls += 1
        return self.keeper.feedback(items)

    def observe(self, route, status, seconds):
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from _serving(tmp_path_factory.mktemp("feed"))


@pytest.fixture()
def fresh_server(tmp_path):
    """A server of its own: a test that needs known buffers does not depend on which tests ran
    before it on this worker."""
    yield from _serving(tmp_path)


def _serving(state_dir):
    service = FeedService(state_dir)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    uv = uvicorn.Server(uvicorn.Config(build_http_app(service), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not uv.started and time.time() < deadline:
        time.sleep(0.02)
    assert uv.started
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", service
    uv.should_exit = True
    thread.join(timeout=10)


def row(zone: str, minute: int, queue: float = 2.0, tt: float | None = 110.0) -> dict:
    values = {name: 1.0 for name in schema.FEATURES}
    values.update(queue_len=queue, vehicle_util=0.5, mean_speed=1.0 + 0.01 * (minute % 7),
                  stocker_fill=0.3 + 0.01 * (minute % 5), transport_time_s=tt)
    return {"timestamp": (START + pd.Timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M"), "zone": zone, **values}


def observe(url, rows, headers=AUTH):
    return requests.post(url + "/v1/observe", json={"rows": rows}, headers=headers, timeout=10)


def test_observe_needs_the_token(server):
    url, _ = server
    assert observe(url, [row("Z01", 0)], headers={}).status_code == 401
    assert observe(url, [row("Z01", 0)], headers={"Authorization": "Bearer wrong"}).status_code == 401


@pytest.mark.parametrize("change, fragment", [
    ({"zone": "Z09"}, "unknown zone"),
    ({"queue_len": "12"}, "queue_len"),
    ({"queue_len": None}, "queue_len"),
    ({"vehicle_util": 2.0}, "fraction"),
    ({"colour": "red"}, "colour"),
])
def test_bad_rows_are_422_naming_them(server, change, fragment):
    url, _ = server
    r = observe(url, [row("Z02", 500), row("Z02", 501) | change])
    assert r.status_code == 422, r.text
    assert fragment in r.text
    assert observe(url, [{k: v for k, v in row("Z02", 500).items() if k != "transport_time_s"}]).status_code == 422


def test_too_many_rows_is_413(server):
    url, _ = server
    assert observe(url, [row("Z02", 600 + m) for m in range(51)]).status_code == 413


def test_the_feed_scores_derives_outcomes_moves_weights_and_raises_alerts(server):
    url, service = server
    for m in range(40):
        late = 22 <= m <= 30
        rows = [row("Z01", m, queue=15.0 if 19 <= m <= 27 else 2.0, tt=220.0 if late else 110.0), row("Z02", m)]
        r = observe(url, rows)
        assert r.status_code == 200, r.text
        body = r.json()
        statuses = {z["zone"]: z["status"] for z in body["zones"]}
        assert statuses == ({"Z01": "warming_up", "Z02": "warming_up"} if m < L - 1
                            else {"Z01": "scored", "Z02": "scored"})
    assert body["zones"][0]["prediction"]["model_version"] == "v1"
    assert service.feedback_calls == 0
    weights = requests.get(url + "/v1/weights", params={"zone": "Z01"}, timeout=10).json()
    assert weights["current"]["Z01"]["lstm"] > 0.5 > weights["current"]["Z01"]["rule"]  # outcomes alone moved them
    assert weights["history"] and weights["history"][-1]["zone"] == "Z01"

    alerts = requests.get(url + "/v1/alerts", timeout=10).json()
    assert alerts["summary"]["closed"] == 1
    alert = alerts["alerts"][0]
    assert alert["zone"] == "Z01" and alert["opened_at"] == "2025-01-06T08:19" and alert["lead_min"] == 1
    assert alert["suggestion"]["action"] and alert["suggestion"]["basis"]
    assert requests.get(url + "/v1/alerts", params={"status": "open"}, timeout=10).json()["alerts"] == []
    assert requests.get(url + "/v1/alerts", params={"status": "maybe"}, timeout=10).status_code == 422

    # sending a minute again, or an older one, is refused naming the row; a gap is flagged
    r = observe(url, [row("Z01", 40), row("Z02", 39)])
    assert r.status_code == 409 and r.json()["details"][0]["zone"] == "Z02" and "rows[1]" in r.json()["message"]
    r = observe(url, [row("Z01", 42), row("Z02", 40)])
    assert r.status_code == 200 and r.json()["gaps"] == [
        {"zone": "Z01", "after": "2025-01-06T08:39", "before": "2025-01-06T08:42", "missing_minutes": 2}]
    feed = requests.get(url + "/v1/feed", timeout=10).json()
    assert feed["zones"]["Z01"]["last_minute"] == "2025-01-06T08:42"
    assert "/v1/observe" in requests.get(url + "/openapi.json", timeout=10).json()["paths"]


def test_replay_feeds_a_file_minute_by_minute_and_a_second_replay_changes_nothing(fresh_server):
    from fabray.serve.replay import alerts_table, replay

    url, service = fresh_server
    r = observe(url, [row(z, m) for m in range(37, 43) for z in ZONES])  # full windows up to 08:42
    assert r.status_code == 200, r.text
    frame = pd.DataFrame([row(z, m, queue=15.0 if m >= 70 else 2.0) for m in range(60, 80) for z in ZONES])
    frame.loc[3, "transport_time_s"] = None  # an empty minute travels as JSON null
    first = replay(frame, url, TOKEN)
    assert first.minutes == 20 and first.rows == 40 and first.skipped_minutes == 0
    # every minute scored: the buffers already hold minutes up to 42, and the gap before minute 60
    # (flagged) leaves at most serve.degraded.max_gap_minutes missing in a window
    assert first.scored == 40 and first.gaps[0]["missing_minutes"] == 17
    assert first.opened and {a["alert_id"] for a in first.alerts} == set(first.opened)
    table = alerts_table(first.alerts)
    assert table.count("\n") == len(first.alerts) and first.alerts[0]["suggestion"]["action"] in table
    state = service.desk.full_state()
    again = replay(frame, url, TOKEN)
    assert again.minutes == 0 and again.skipped_minutes == 20
    assert service.desk.full_state() == state
    with pytest.raises(Exception, match="401|refused"):
        replay(frame.assign(timestamp=frame["timestamp"].str.replace("08:", "10:")), url, "wrong-token")
