"""The HTTP layer over real HTTP on 127.0.0.1 (uvicorn in a thread), with a fake service: every
kind of bad input is a 4xx JSON error naming the problem; auth on mutating endpoints.

No Ray here: tests/integration/test_serve.py runs the same API on Ray Serve with real models.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import numpy as np
import pytest
import requests
import uvicorn

from fabray import schema
from fabray.config import DegradedRules
from fabray.serve.http import build_http_app
from fabray.serve.http_guard import HttpSettings

L, F = 20, len(schema.FEATURES)
TOKEN = "unit-test-token-0123456789"
MAX_BODY = 64 * 1024


class FakeService:
    """Records what reached it; answers like the real ingress would."""

    def __init__(self, token: str | None) -> None:
        self.settings = HttpSettings(max_body_bytes=MAX_BODY, max_windows_per_request=4,
                                     degraded=DegradedRules(max_gap_minutes=2, stuck_minutes=10),
                                     api_token=token, body_read_timeout_s=1.0,
                                     small_body_bytes=16 * 1024)
        self.calls: list[tuple] = []
        self.observed: list[tuple] = []

    async def meta(self):
        return {"version": "v1", "zones": ["Z01", "Z02"], "lookback": L, "task": "event"}

    async def predict(self, zones, windows, reasons, deadline_ms=None, started=None):
        self.calls.append(("predict", zones, windows, reasons))
        if zones and zones[0] == "Z02" and windows[0, 0, 0] == 7.0:  # models that answer NaN for it
            return [{"error": "the models gave no finite score for this window; retry"}]
        if zones and zones[0] == "Z02" and windows[0, 0, 0] == 8.0:  # a bug in the service
            raise RuntimeError("boom at /srv/secret/path pid 4242")
        return [
            {"prediction_id": f"p{i}", "zone": z, "model_version": "v1", "run_id": "r1",
             "scores": {"lstm": 0.2}, "probability": 0.2, "decision": False, "threshold": 0.5,
             "weights": {"lstm": 1.0}, "degraded": bool(r), "degraded_reasons": list(r)}
            for i, (z, r) in enumerate(zip(zones, reasons))
        ]

    async def feedback(self, items):
        self.calls.append(("feedback", items))
        return {"applied": len(items), "skipped_degraded": 0, "unknown": [], "weights": {}}

    async def job(self, job_id):
        from fabray.serve.store import UnknownVersionError

        if job_id == "leaky":
            raise UnknownVersionError("no job 'leaky' in /srv/fabray/serve-store/jobs; see /v1/batch")
        raise UnknownVersionError(f"no job {job_id!r}")

    async def submit_batch(self, body, windows, reasons):
        self.calls.append(("batch", body, windows))
        return {"job_id": "batch-1", "kind": "batch", "status": "pending", "submitted_at": "now"}

    async def health(self):
        return True, {"status": "ok"}

    def observe(self, route, status, seconds):
        self.observed.append((route, status))


def _serve(service: FakeService) -> tuple[str, uvicorn.Server, threading.Thread]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(build_http_app(service), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread


@pytest.fixture(scope="module")
def servers():
    """Two apps: one with a token configured, one without."""
    with_token, without = FakeService(TOKEN), FakeService(None)
    running = [_serve(with_token), _serve(without)]
    yield {"url": running[0][0], "service": with_token, "url_no_token": running[1][0]}
    for _, server, thread in running:
        server.should_exit = True
        thread.join(timeout=10)


def window(zone="Z01", seed=0) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.uniform(1, 10, size=(L, F))
    for name in schema.FRACTION_FEATURES:
        x[:, schema.FEATURES.index(name)] = rng.uniform(0.1, 0.9, size=L)
    return {"zone": zone, "window": x.tolist()}


def post(url, path, **kw):
    return requests.post(url + path, timeout=10, **kw)


def assert_error(r, status, kind, *fragments):
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == kind, body
    for fragment in fragments:
        assert fragment in body["message"], body["message"]


# ------------------------------------------------------------------------------- predict


def test_one_window_in_one_answer_out(servers):
    r = post(servers["url"], "/v1/predict", json=window())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["zone"] == "Z01" and body["degraded"] is False
    _, zones, windows, _ = servers["service"].calls[-1]
    assert zones == ["Z01"] and windows.shape == (1, L, F) and windows.dtype == np.float32


def test_a_list_in_gives_a_list_out_in_order(servers):
    r = post(servers["url"], "/v1/predict", json=[window("Z02"), window("Z01", 1)])
    assert r.status_code == 200, r.text
    assert [a["zone"] for a in r.json()] == ["Z02", "Z01"]


def test_a_window_with_a_short_gap_is_answered_and_flagged(servers):
    body = window()
    body["window"][5] = [None] * F
    r = post(servers["url"], "/v1/predict", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["degraded"] is True and "gap" in r.json()["degraded_reasons"][0]


@pytest.mark.parametrize(
    "make, fragments",
    [
        (lambda w: {**w, "window": w["window"][:-1]}, ["window: expected 20 rows", "Received: 19"]),
        (lambda w: {**w, "window": [w["window"][0][:11]] + w["window"][1:]}, ["row 0 must have 12 values"]),
        (lambda w: {**w, "window": [["a"] * F] + w["window"][1:]}, ["window[0][0]", "valid number"]),
        (lambda w: {**w, "window": "not a list"}, ["window", "valid list"]),
        (lambda w: {**w, "zone": 7}, ["zone", "valid string"]),
        (lambda w: {"window": w["window"]}, ["zone", "Field required"]),
        (lambda w: {**w, "extra": 1}, ["extra", "Extra inputs"]),
        (lambda w: {**w, "zone": "Z99"}, ["unknown zone 'Z99'", "Z01"]),
        (lambda w: [], ["empty"]),
        (lambda w: {**w, "window": [[True] * F] + w["window"][1:]}, ["valid number"]),
        (lambda w: {**w, "window": [[None] * F] * 3 + w["window"][3:]}, ["3 minutes have missing values"]),
        (lambda w: {**w, "window": [[-1.0] * F] + w["window"][1:]}, ["is a count and must be >= 0"]),
    ],
    ids=["rows", "values", "string-value", "not-a-list", "zone-type", "no-zone", "extra-field",
         "unknown-zone", "empty-list", "bool", "long-gap", "negative-count"],
)
def test_bad_predict_input_is_422_naming_the_problem(servers, make, fragments):
    assert_error(post(servers["url"], "/v1/predict", json=make(window())), 422, "invalid_input", *fragments)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_inf_literals_are_422(servers, literal):
    import json

    text = json.dumps(window()).replace("[", f"[{literal}, ", 2).replace(f"[{literal}, ", "[", 1)
    r = post(servers["url"], "/v1/predict", data=text, headers={"Content-Type": "application/json"})
    assert_error(r, 422, "invalid_input", "finite number")


def test_malformed_json_is_400(servers):
    for headers in ({"Content-Type": "application/json"}, {}):
        r = post(servers["url"], "/v1/predict", data=b'{"zone": "Z01", "window": [[1, 2', headers=headers)
        assert_error(r, 400, "bad_request", "malformed JSON")


def test_too_many_windows_is_413(servers):
    assert_error(post(servers["url"], "/v1/predict", json=[window()] * 5), 413, "too_large", "at most 4")


def test_an_oversized_body_is_413_before_parsing(servers):
    big = b'{"zone": "' + b"Z" * (MAX_BODY + 10) + b'"}'
    r = post(servers["url"], "/v1/predict", data=big, headers={"Content-Type": "application/json"})
    assert_error(r, 413, "too_large", "larger than 65536 bytes")


def test_an_oversized_chunked_body_is_413(servers):
    def chunks():
        yield b'{"zone": "'
        for _ in range(10):
            yield b"Z" * (MAX_BODY // 4)
        yield b'"}'

    r = post(servers["url"], "/v1/predict", data=chunks(), headers={"Content-Type": "application/json"})
    assert_error(r, 413, "too_large")


def test_unknown_route_and_method_are_4xx_json(servers):
    assert_error(requests.get(servers["url"] + "/v1/nothing", timeout=10), 404, "not_found")
    assert requests.get(servers["url"] + "/v1/predict", timeout=10).status_code == 405


def test_requests_are_observed_for_metrics(servers):
    post(servers["url"], "/v1/predict", json=window())
    assert ("/v1/predict", 200) in servers["service"].observed


# ------------------------------------------------------------------------------- auth


def feedback(url, headers=None, body=None):
    return post(url, "/v1/feedback", json=body or {"prediction_id": "p1", "outcome": 1}, headers=headers or {})


def test_mutations_without_a_configured_token_are_403_saying_how_to_enable(servers):
    r = feedback(servers["url_no_token"], {"Authorization": f"Bearer {TOKEN}"})
    assert_error(r, 403, "forbidden", "FABRAY_API_TOKEN")
    r = post(servers["url_no_token"], "/v1/rollback", json={})
    assert_error(r, 403, "forbidden")


@pytest.mark.parametrize("header", [None, "Bearer nope-nope-nope-nope", f"Basic {TOKEN}"])
def test_missing_or_wrong_token_is_401(servers, header):
    r = feedback(servers["url"], {"Authorization": header} if header else {})
    assert_error(r, 401, "unauthorized")
    assert r.headers.get("WWW-Authenticate") == "Bearer"


def test_the_right_token_reaches_the_service(servers):
    r = feedback(servers["url"], {"Authorization": f"Bearer {TOKEN}"},
                 [{"prediction_id": "p1", "outcome": 1}, {"prediction_id": "p2", "outcome": 0}])
    assert r.status_code == 200, r.text
    assert servers["service"].calls[-1] == ("feedback", [{"prediction_id": "p1", "outcome": 1.0},
                                                          {"prediction_id": "p2", "outcome": 0.0}])


def test_event_outcomes_must_be_zero_or_one(servers):
    r = feedback(servers["url"], {"Authorization": f"Bearer {TOKEN}"}, {"prediction_id": "p1", "outcome": 0.5})
    assert_error(r, 422, "invalid_input", "0 or 1")


def test_batch_needs_exactly_one_source_and_checks_windows(servers):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = post(servers["url"], "/v1/batch", json={"path": "x.parquet", "windows": [window()]}, headers=auth)
    assert_error(r, 422, "invalid_input", "exactly one of 'path' or 'windows'")
    r = post(servers["url"], "/v1/batch", json={"windows": [window(), window("Z77")]}, headers=auth)
    assert_error(r, 422, "invalid_input", "[1].zone: unknown zone 'Z77'")
    r = post(servers["url"], "/v1/batch", json={"windows": [window(), window("Z02")]}, headers=auth)
    assert r.status_code == 200 and r.json()["job_id"] == "batch-1"


def test_unknown_job_is_404_and_job_status_needs_the_token(servers):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = requests.get(servers["url"] + "/v1/batch/nope", headers=auth, timeout=10)
    assert_error(r, 404, "not_found", "no job 'nope'")
    assert_error(requests.get(servers["url"] + "/v1/jobs/nope", timeout=10), 401, "unauthorized")


def test_openapi_docs_list_the_endpoints(servers):
    paths = requests.get(servers["url"] + "/openapi.json", timeout=10).json()["paths"]
    for path in ("/v1/predict", "/v1/feedback", "/v1/batch", "/v1/retrain", "/v1/rollback", "/v1/models", "/healthz"):
        assert path in paths
    assert requests.get(servers["url"] + "/docs", timeout=10).status_code == 200


# ------------------------------------------------------------------------------- context inputs


class ContextService(FakeService):
    """A served version trained with calendar, plan and neighbour inputs (ring of Z01, Z02)."""

    async def meta(self):
        from fabray.data.context import ContextSpec

        spec = ContextSpec(horizon=3, calendar=True, shift_changes_min=(360, 840, 1320),
                           plan_columns=("lots_planned",), topology="ring",
                           neighbour_features=("queue_len", "transport_time_s"))
        return {"version": "v1", "zones": ["Z01", "Z02"], "lookback": L, "task": "event",
                "context": spec.to_dict(), "nominal_s": {"Z01": 100.0, "Z02": 120.0}}


@pytest.fixture(scope="module")
def context_server():
    service = ContextService(TOKEN)
    url, server, thread = _serve(service)
    yield url, service
    server.should_exit = True
    thread.join(timeout=10)


def test_context_inputs_are_built_per_window_like_training(context_server):
    from fabray.data.context import ContextSpec, window_context

    url, service = context_server
    body = {**window("Z01"), "timestamp": "2025-01-06T05:59",
            "neighbours": {"Z02": window("Z02", 1)["window"]}, "plan": {"lots_planned": [2.0] * (L + 3)}}
    r = post(url, "/v1/predict", json=body)
    assert r.status_code == 200, r.text
    _, _, windows, _ = service.calls[-1]
    spec = ContextSpec.from_dict(asyncio.run(service.meta())["context"])
    assert windows.shape == (1, L, F + len(spec.column_names()))
    expected = window_context(spec, ("Z01", "Z02"), "Z01", np.datetime64("2025-01-06T05:59"), L,
                              {"Z01": 100.0, "Z02": 120.0}, {"Z02": np.asarray(body["neighbours"]["Z02"])},
                              body["plan"])
    np.testing.assert_allclose(windows[0, :, F:], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(windows[0, :, :F], np.asarray(body["window"]), rtol=1e-5)


@pytest.mark.parametrize("change, fragment", [
    (lambda b: b.update(timestamp="yesterday"), "timestamp: not an ISO-8601"),
    (lambda b: b.update(neighbours={"Z09": b["window"]}), "unknown zone 'Z09'"),
    (lambda b: b.update(neighbours={"Z02": b["window"][:-1]}), "neighbours.Z02"),
    (lambda b: b.update(plan={"lots_planned": [1.0]}), "plan.lots_planned"),
    (lambda b: b.update(plan={"pm_planned": [1.0] * (L + 3)}), "unknown columns"),
])
def test_bad_context_is_422_naming_it(context_server, change, fragment):
    url, _ = context_server
    body = {**window("Z01"), "timestamp": "2025-01-06T05:59"}
    change(body)
    assert_error(post(url, "/v1/predict", json=body), 422, "invalid_input", fragment)


def test_a_window_without_timestamp_takes_the_current_minute(context_server):
    import datetime as dt

    from fabray.data.context import CALENDAR_COLUMNS

    url, service = context_server
    before = dt.datetime.now()
    r = post(url, "/v1/predict", json=window("Z01"))
    assert r.status_code == 200, r.text
    _, _, windows, _ = service.calls[-1]
    got = windows[0, -1, F + CALENDAR_COLUMNS.index("cal_day_sin")]
    day_min = before.hour * 60 + before.minute  # the server's clock (same process here)
    assert got == pytest.approx(np.sin(2 * np.pi * day_min / 1440), abs=0.01)


# ------------------------------------------------------------------------------- issue 15


def _raw(url: str, data: bytes) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(data)
    return sock


def _read_all(sock: socket.socket) -> str:
    chunks = []
    while chunk := sock.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks).decode()


def _read_response(sock: socket.socket) -> str:
    """One HTTP response: its head and the body its Content-Length announces. (Not until EOF: after
    answering a request whose body it never read, the server may keep the connection open until
    its keep-alive timeout.)"""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return data.decode()
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length and (chunk := sock.recv(4096)):
        body += chunk
    return (head + b"\r\n\r\n" + body).decode()


def _stalled(url: str, path: str = "/v1/predict", headers: str = "") -> socket.socket:
    return _raw(url, (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      f"{headers}Content-Length: 5000\r\n\r\n{{\"zone\": ").encode())


def test_a_stalled_body_is_answered_408_and_healthz_stays_up(servers):
    stalled = [_stalled(servers["url"]) for _ in range(20)]
    try:
        assert requests.get(servers["url"] + "/healthz", timeout=5).status_code == 200
        start = time.monotonic()
        answer = _read_all(stalled[0])
        assert answer.startswith("HTTP/1.1 408"), answer
        assert '"timeout"' in answer and "read deadline" in answer
        assert time.monotonic() - start < 5
    finally:
        for sock in stalled:
            sock.close()


def test_mutating_routes_check_the_token_before_reading_the_body(servers):
    # an anonymous client is refused at once, though it never sends the body it announced
    for path in ("/v1/retrain", "/v1/batch", "/v1/feedback", "/v1/models", "/v1/rollback", "/v1/models/v1/promote"):
        sock = _stalled(servers["url"], path)
        try:
            answer = _read_response(sock)
        finally:
            sock.close()
        assert answer.startswith("HTTP/1.1 401"), (path, answer)
        assert '"unauthorized"' in answer, (path, answer)
    assert_error(post(servers["url"], "/v1/retrain", json={}), 401, "unauthorized")
    assert_error(post(servers["url_no_token"], "/v1/retrain", json={}), 403, "forbidden")


def test_body_limits_are_per_route(servers):
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    body = b'{"zone": "' + b"x" * (30 * 1024) + b'"}'  # under max_body_bytes, over the small limit
    small = b'{"reason": "' + b"x" * (20 * 1024) + b'"}'
    assert_error(post(servers["url"], "/v1/rollback", data=small, headers=auth), 413, "too_large")
    assert_error(post(servers["url"], "/v1/predict", data=body, headers=auth), 422, "invalid_input")


@pytest.mark.parametrize("feature, value", [
    ("queue_len", 1e308), ("requests", 1e7), ("mean_speed", 1e5), ("transport_time_s", 1e9),
    ("mean_speed", -1.0), ("transport_time_s", -5.0),
])
def test_absurd_finite_values_are_422(servers, feature, value):
    body = window()
    body["window"][3][schema.FEATURES.index(feature)] = value
    assert_error(post(servers["url"], "/v1/predict", json=body), 422, "invalid_input", feature, "row 3")


def test_a_window_the_models_cannot_score_fails_alone_with_503(servers):
    bad = window("Z02")
    bad["window"][0][0] = 7.0
    assert_error(post(servers["url"], "/v1/predict", json=bad), 503, "unavailable", "no finite score")
    assert post(servers["url"], "/v1/predict", json=window()).status_code == 200


def test_an_internal_error_tells_no_internals(servers):
    bad = window("Z02")
    bad["window"][0][0] = 8.0
    r = post(servers["url"], "/v1/predict", json=bad)
    assert_error(r, 500, "internal", "incident")
    for leak in ("boom", "/srv", "4242", "RuntimeError", "Traceback"):
        assert leak not in r.text


@pytest.mark.parametrize("body, fragment", [
    ({"path": ""}, "path"),
    ({"path": "x" * 5000}, "path"),
    ({"path": "a\u0000b.csv"}, "path"),
    ({"windows": [window()], "all_windows": True}, "all_windows"),
    ({"path": "x.csv", "all_windows": "yes"}, "all_windows"),
])
def test_batch_client_mistakes_are_422(servers, body, fragment):
    r = post(servers["url"], "/v1/batch", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert_error(r, 422, "invalid_input", fragment)


def test_error_messages_carry_no_server_paths(servers):
    r = requests.get(servers["url"] + "/v1/jobs/leaky", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert_error(r, 404, "not_found", ".../jobs", "/v1/batch")
    assert "/srv" not in r.text
