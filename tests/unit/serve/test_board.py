"""The zone board (`GET /`, issue 13 item 4) over real HTTP on 127.0.0.1 (uvicorn in a thread; no
Ray): the page and its script and style are served from the package, the JSON routes the page
reads answer without a token (the page holds none), and every board file is shipped as package
data. tests/integration/test_feed.py renders the board in headless Chromium against a live server."""

from __future__ import annotations

import re
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest
import requests

from fabray.config import DegradedRules
from fabray.serve.http import BOARD_DIR
from fabray.serve.http_guard import HttpSettings
from tests.unit.serve.test_serve_http import _serve

TOKEN = "unit-test-token-0123456789"
ROOT = Path(__file__).resolve().parents[3]


ALERTS = [  # newest first, as /v1/alerts lists them
    {"alert_id": "a2", "number": 2, "zone": "Z01", "status": "open", "opened_at": "2025-01-06T09:38",
     "probability": 0.78, "outcome": None, "lead_min": None,
     "suggestion": {"action": "lend 2 idle vehicles from Z02 to Z01", "basis": "Z02: 4 idle, risk 0.10 < 0.50"}},
    {"alert_id": "a1", "number": 1, "zone": "Z02", "status": "closed", "opened_at": "2025-01-06T08:10",
     "probability": 0.64, "outcome": "episode", "lead_min": 4,
     "suggestion": {"action": "hold Z02's planned releases for 10 min", "basis": "no neighbour has idle vehicles"}},
]


class BoardService:
    """The read routes the board calls, answering like the live ingress (shapes of deployments/ingress.py)."""

    def __init__(self) -> None:
        self.settings = HttpSettings(max_body_bytes=64 * 1024, max_windows_per_request=4, degraded=DegradedRules(),
                                     api_token=TOKEN)
        self.routes: list[tuple[str, int]] = []

    async def models(self):
        return {"live": "v1", "history": [], "versions": [], "events": [], "ensemble": {},
                "serving": {"version": "v1", "run_id": "r1", "models": ["lstm", "rule"], "zones": ["Z01", "Z02"],
                            "lookback": 100, "task": "event", "threshold": 0.5, "replica": "x", "refused": {}}}

    async def feed_status(self):
        latest = {"timestamp": "2025-01-06T09:40", "probability": 0.81, "decision": True, "degraded": False}
        return {"zones": {"Z01": {"last_minute": "2025-01-06T09:40", "minutes_kept": 100, "pending_outcomes": 10,
                                  "latest": latest}},
                "counts": {"rows": 200, "scored": 2, "outcomes_applied": 0},
                "monitor": {"window_min": 1440, "zones": {"Z01": {"precision": 0.75, "recall": 0.5, "f1": 0.6,
                                                                  "median_lead_min": 4.0}},
                            "drift": {"ready": True, "max_score": 3.2, "max_feature": "queue_len", "threshold": 3.0},
                            "retrain_advised": True,
                            "retrain_reasons": ["input drift: queue_len scores 3.20 > threshold 3"]}}

    async def alerts(self, zone, status, limit):
        return {"alerts": ALERTS[:limit], "summary": {"open": 1, "closed": 1, "episodes": 1, "no_episode": 0,
                                                      "median_lead_min": 4}}

    async def weight_history(self, zone, limit):
        return {"version": "v1", "current": {"Z01": {"lstm": 0.6, "rule": 0.4}}, "history": []}

    async def health(self):
        return True, {"status": "ok"}

    def observe(self, route, status, seconds):
        self.routes.append((route, status))


@pytest.fixture(scope="module")
def board():
    service = BoardService()
    url, server, thread = _serve(service)
    yield url, service
    server.should_exit = True
    thread.join(timeout=10)


def test_the_page_is_served_at_the_root_with_its_script_and_style(board):
    url, _ = board
    page = requests.get(url + "/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text == (BOARD_DIR / "index.html").read_text()
    for table in ("zones", "alerts", "weights"):
        assert f'id="{table}"' in page.text
    assets = re.findall(r'(?:src|href)="(board/[^"]+)"', page.text)
    assert sorted(assets) == ["board/board.css", "board/board.js"]  # relative: works under a route prefix
    kinds = {"board/board.css": "text/css", "board/board.js": "javascript"}
    for asset in assets:
        r = requests.get(f"{url}/{asset}", timeout=10)
        assert r.status_code == 200, asset
        assert kinds[asset] in r.headers["content-type"], r.headers["content-type"]
        assert r.text == (BOARD_DIR / Path(asset).name).read_text()
    assert "/" not in requests.get(url + "/openapi.json", timeout=10).json()["paths"]  # a page, not an API


def test_a_missing_asset_is_a_json_404_and_the_mount_serves_nothing_outside_the_board(board):
    url, _ = board
    r = requests.get(url + "/board/nothing.js", timeout=10)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = requests.get(url + "/board/..%2Fhttp.py", timeout=10)
    assert r.status_code == 404 and "import" not in r.text


def test_the_routes_the_page_reads_are_public_and_the_page_holds_no_token(board):
    url, service = board
    script = (BOARD_DIR / "board.js").read_text()
    read = sorted(set(re.findall(r'getJson\(["`](v1/[a-z]+)', script)))
    assert read == ["v1/alerts", "v1/feed", "v1/models", "v1/weights"]
    for path in read:
        r = requests.get(f"{url}/{path}", timeout=10)  # no Authorization header
        assert r.status_code == 200, (path, r.text)
    page_files = "".join(p.read_text() for p in BOARD_DIR.iterdir())
    assert TOKEN not in page_files and "Authorization" not in page_files and ".innerHTML" not in page_files
    assert ("/", 200) in service.routes


def test_every_board_file_is_shipped_as_package_data():
    if sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11")
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = data["fabray.serve"]
    files = sorted(p.name for p in BOARD_DIR.iterdir() if p.is_file())
    assert files == ["board.css", "board.js", "index.html"]
    for name in files:
        assert any(fnmatch(f"board/{name}", pattern) for pattern in patterns), name


def test_the_board_renders_in_headless_chromium(board):
    """The page's script draws the fake service's zones (risk, the monitor's precision, recall
    and lead), alerts (lead times), drift and retrain advice, and weights (the live-server
    version of this is in tests/integration/test_feed.py)."""
    from fabray.serve.browser import dump_dom, find_chromium

    if find_chromium() is None:
        pytest.skip("no chromium on PATH (`make test` installs Debian's package as root)")
    url, _ = board
    dom = dump_dom(url + "/")
    rows = {zone: risk for risk, zone in re.findall(r'<tr class="risk-(\w+)" data-zone="(Z0\d)"', dom)}
    assert rows == {"Z01": "high", "Z02": "none"}, dom[:3000]
    assert 'data-probability="0.8100"' in dom and ">ON<" in dom and "#2 since 2025-01-06T09:38" in dom
    alerts = re.findall(r'data-alert="(a\d)">(.*?)</tr>', dom)
    assert [a for a, _ in alerts] == ["a2", "a1"]
    assert '<td class="num lead">+4</td>' in alerts[1][1] and "hold Z02" in alerts[1][1]
    assert "(1 open, 1 closed, median lead 4 min)" in dom
    assert '<td class="num top">0.60</td>' in dom
    z01 = re.search(r'data-zone="Z01".*?</tr>', dom).group(0)  # the feed monitor's rolling figures
    assert "<td class=\"num\">0.75</td><td class=\"num\">0.50</td><td class=\"num\">+4 min</td>" in z01
    assert "input drift 3.20 (queue_len; threshold 3.00); retrain advised: YES (input drift: queue_len" in dom
