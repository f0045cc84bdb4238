"""`fabray replay`: feed a zone-minute file into a running server minute by minute (issue 13).

Each minute's rows of every zone go in one `POST /v1/observe` (built by
`fabray.serve.client.feed_minutes`, with the plan for the next minutes when the file has plan
columns), paced at `speed` × real time (0: as fast as the server answers). A minute the server
is already past (409, every row a duplicate or older than its zone's last minute: e.g. a replay
resumed after a restart) is skipped and counted, so replaying a file twice changes nothing. At the end the alerts the server raised are
read back (`GET /v1/alerts`). Plain HTTP (requests): no Ray.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from fabray.errors import BadInputError

logger = logging.getLogger(__name__)


@dataclass
class ReplayResult:
    minutes: int = 0
    rows: int = 0
    scored: int = 0
    skipped_minutes: int = 0  # the server had them already
    gaps: list[dict[str, Any]] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    outcomes_applied: int = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        leads = [a["lead_min"] for a in self.alerts if a.get("lead_min") is not None]
        return {"minutes": self.minutes, "rows": self.rows, "scored": self.scored,
                "skipped_minutes": self.skipped_minutes, "gaps": len(self.gaps),
                "outcomes_applied": self.outcomes_applied, "alerts_opened": len(self.opened),
                "alerts_closed": len(self.closed), "median_lead_min": sorted(leads)[len(leads) // 2] if leads else None}


def replay(frame: pd.DataFrame, url: str, token: str | None, *, speed: float = 0.0, horizon: int = 10,
           limit: int | None = None, timeout_s: float = 60.0, retries: int = 5,
           on_minute: Callable[[pd.Timestamp, dict[str, Any]], None] | None = None) -> ReplayResult:
    """Send `frame` minute by minute to `url`/v1/observe; see the module doc. `speed`: data
    minutes per real minute (60: a minute per second; 0: no pause). A server that does not
    answer (a restart) is retried `retries` times with a growing pause."""
    import requests

    if speed < 0:
        raise BadInputError(f"--speed must be >= 0. Received: {speed}")
    from fabray.serve.client import feed_minutes

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    result = ReplayResult()
    started = time.monotonic()
    for i, (when, rows) in enumerate(feed_minutes(frame, horizon=horizon)):
        if limit is not None and i >= limit:
            break
        if speed > 0:
            pause = started + i * 60.0 / speed - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        for attempt in range(retries + 1):
            try:
                response = requests.post(f"{url}/v1/observe", json={"rows": rows}, headers=headers, timeout=timeout_s)
            except requests.RequestException as err:
                response, error = None, err
            else:
                error = None
                if response.status_code < 500:
                    break
            if attempt == retries:
                raise RuntimeError(f"the server did not take minute {when}: "
                                   f"{error or f'{response.status_code} {response.text[:200]}'}")
            time.sleep(min(10.0, 0.5 * 2 ** attempt))
        body = response.json()
        if response.status_code == 409 and len(body.get("details") or []) == len(rows) and \
                all(str(d.get("problem")).startswith(("duplicate", "out of order: the zone's last"))
                    for d in body["details"]):  # the server is past this minute already
            result.skipped_minutes += 1
            continue
        if response.status_code != 200:
            raise BadInputError(f"minute {when}: refused ({response.status_code}): {body.get('message', body)}")
        result.minutes += 1
        result.rows += body["accepted"]
        result.scored += sum(z["status"] == "scored" for z in body["zones"])
        result.gaps += body["gaps"]
        result.opened += body["alerts"]["opened"]
        result.closed += body["alerts"]["closed"]
        result.outcomes_applied += body["outcomes"]["applied"]
        if on_minute is not None:
            on_minute(when, body)
    alerts = requests.get(f"{url}/v1/alerts", params={"limit": 1000}, timeout=timeout_s)
    if alerts.status_code == 200:
        mine = set(result.opened)
        result.alerts = [a for a in alerts.json()["alerts"] if a["alert_id"] in mine]
    return result


def alerts_table(alerts: list[dict[str, Any]]) -> str:
    """The alerts as a text table (oldest first): zone, opened, probability, outcome, lead."""
    lines = [f"{'zone':<6} {'opened':<17} {'prob':>5} {'status':<7} {'outcome':<11} {'lead':>5}  suggestion"]
    for a in sorted(alerts, key=lambda a: a["opened_at"]):
        lead = "" if a.get("lead_min") is None else f"{a['lead_min']:+d}"
        lines.append(f"{a['zone']:<6} {a['opened_at']:<17} {a['probability']:>5.2f} {a['status']:<7} "
                     f"{a.get('outcome') or '':<11} {lead:>5}  {a['suggestion']['action']}")
    return "\n".join(lines)
