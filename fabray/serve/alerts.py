"""Alerts of the live feed (DESIGN §6, issue 13): raised when a zone's alarm rises, closed with
their realised lead time when the episode ends, each with a suggested action and its basis.

- **Opening.** A scored minute whose decision is True opens an alert for its zone unless one
  is open already (one alert per alarm episode, not one per alarm minute). It records the zone,
  minute, probability, horizon, model version, the rules that fired when the scoring path
  names them (`rules_fired` in the answer), each member's contribution (weight × score, and its
  share of the ensemble probability) and a suggested action (`suggest`).
- **Closing**, from the labels the feed derives H minutes late (training's label, minute by
  minute): the first event run (an *episode*, DESIGN §1) that holds at or after the alert's
  minute is the alert's; when it ends, the alert closes with `lead_min` = episode start − alert
  minute (> 0: warned before the start; < 0: the episode was already under way). An alert whose
  alarm has stopped and whose minutes to the stop + H saw no event closes as `no_episode` (a
  false alarm, no lead time).
- **Webhook** (optional): `WebhookSender` POSTs each opened and closed alert from a background
  thread with a bounded queue and bounded retries; `submit` never waits, so a webhook that
  hangs or fails never slows scoring.

Pure Python (the webhook uses urllib in its own thread): no Ray.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

logger = logging.getLogger(__name__)


def _minute_text(minute: int) -> str:
    from fabray.serve.feed_rows import minute_text

    return minute_text(minute)


# ---------------------------------------------------------------------------- suggestions


def contributions(answer: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Each member's part of the ensemble probability: {model: {score, weight, contribution,
    share}}, largest contribution first (the ensemble pools weight · score)."""
    scores, weights = answer.get("scores") or {}, answer.get("weights") or {}
    parts = {}
    for name, weight in weights.items():
        score = scores.get(name)
        if score is None or not weight:
            continue
        parts[name] = {"score": float(score), "weight": float(weight), "contribution": float(weight) * float(score)}
    total = sum(p["contribution"] for p in parts.values())
    for p in parts.values():
        p["share"] = p["contribution"] / total if total > 0 else 0.0
    return dict(sorted(parts.items(), key=lambda kv: -kv[1]["contribution"]))


def suggest(zone: str, inputs: Mapping[str, Mapping[str, Any]], threshold: float, horizon: int) -> dict[str, Any]:
    """A simple action for a dispatcher, with the facts it rests on.

    `inputs`: zone → {"row": newest observed row {feature: value}, "latest": newest prediction
    summary or None, "plan_ahead": {plan column: next minutes} or None}, for `zone` first and
    then its neighbours. Lend idle vehicles from the neighbour with the most idle vehicles whose
    own risk is below the threshold (half of them, at least one); with no such neighbour, hold
    the zone's planned lot releases for the horizon."""
    own = (inputs.get(zone) or {}).get("row") or {}
    state = (f"{zone}: queue {own.get('queue_len', 0):g}, {own.get('vehicles_down', 0):g} vehicle(s) down, "
             f"{own.get('vehicles_idle', 0):g} idle, utilization {100 * (own.get('vehicle_util') or 0):.0f}%")
    best = None
    for other, info in inputs.items():
        if other == zone:
            continue
        row, latest = info.get("row") or {}, info.get("latest")
        idle = row.get("vehicles_idle") or 0
        risk = latest.get("probability") if latest else None
        if idle < 1 or (risk is not None and risk >= threshold):
            continue
        if best is None or idle > best[1]:
            best = (other, idle, risk)
    if best is not None:
        other, idle, risk = best
        lend = max(1, int(idle) // 2)
        risk_text = f"risk {risk:.2f} < threshold {threshold:.2f}" if risk is not None else "risk not scored yet"
        return {"kind": "lend_vehicles", "action": f"send {lend} idle vehicle(s) from {other} to {zone}",
                "from_zone": other, "vehicles": lend,
                "basis": f"{other} has {idle:g} idle vehicle(s), {risk_text}; {state}"}
    ahead = (inputs.get(zone) or {}).get("plan_ahead") or {}
    planned = sum((ahead.get("lots_planned") or [])[:horizon])
    plan_text = f"; {planned:g} lot(s) planned into it in the next {horizon} min" if ahead else ""
    return {"kind": "hold_releases", "action": f"hold lot releases into {zone} for {horizon} min",
            "from_zone": None, "vehicles": 0,
            "basis": f"no neighbour has idle vehicles at low risk; {state}{plan_text}"}


# ---------------------------------------------------------------------------- the book


class AlertBook:
    """Open and closed alerts (the newest `capacity` kept), and each zone's label run."""

    def __init__(self, capacity: int = 1000, webhook: WebhookSender | None = None) -> None:
        self.capacity = int(capacity)
        self.webhook = webhook
        self._alerts: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._open: dict[str, str] = {}  # zone → alert id
        self._run_start: dict[str, int | None] = {}  # zone → first minute of its current event run
        self._closed_new: list[dict[str, Any]] = []  # closed since the last `drain_closed`
        self._next_number = 1

    def is_open(self, zone: str) -> bool:
        return zone in self._open

    def on_scored(self, zone: str, minute: int, answer: Mapping[str, Any], spec: Any,
                  suggestion_inputs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
        """A scored minute: open an alert when the alarm rises (returned), or note the alarm's
        state on the open one."""
        alert = self._alerts.get(self._open.get(zone, ""))
        decision = bool(answer.get("decision"))
        if alert is not None:
            if decision:
                alert["last_alarm_minute"], alert["alarm_off_minute"] = minute, None
                alert["peak_probability"] = max(alert["peak_probability"], float(answer["probability"]))
            elif alert["alarm_off_minute"] is None:
                alert["alarm_off_minute"] = minute
            return None
        if not decision:
            return None
        alert = {
            "alert_id": uuid.uuid4().hex[:16],
            "number": self._next_number,
            "zone": zone,
            "status": "open",
            "opened_at": _minute_text(minute),
            "opened_minute": int(minute),
            "probability": float(answer["probability"]),
            "peak_probability": float(answer["probability"]),
            "threshold": float(answer.get("threshold", spec.threshold)),
            "horizon_min": int(spec.horizon),
            "model_version": answer.get("model_version"),
            "prediction_id": answer.get("prediction_id"),
            "degraded": bool(answer.get("degraded")),
            "rules_fired": list(answer.get("rules_fired") or []),
            "contributions": contributions(answer),
            "suggestion": suggest(zone, suggestion_inputs, spec.threshold, spec.horizon),
            "last_alarm_minute": int(minute),
            "alarm_off_minute": None,
            "episode_start": None,
            "episode_end": None,
            "closed_at": None,
            "outcome": None,
            "lead_min": None,
        }
        self._next_number += 1
        self._alerts[alert["alert_id"]] = alert
        self._open[zone] = alert["alert_id"]
        self._trim()
        self._notify("alert_opened", alert)
        return alert

    def on_labels(self, labels: Sequence[tuple[str, int, float]], horizon: int) -> list[dict[str, Any]]:
        """Minute labels (zone, minute, 1/0, NaN unknown) in minute order per zone: episodes
        start and end; the alerts they close (returned)."""
        closed = []
        for zone, minute, label in labels:
            event = label == 1.0  # NaN (a gap) breaks a run like a 0
            if event and self._run_start.get(zone) is None:
                self._run_start[zone] = minute
            alert = self._alerts.get(self._open.get(zone, ""))
            if alert is not None and minute >= alert["opened_minute"]:
                if event and alert["episode_start"] is None:
                    alert["episode_start"] = self._run_start[zone]
                elif not event and alert["episode_start"] is not None:
                    closed.append(self._close(alert, minute, "episode", episode_end=minute - 1))
                elif (not event and alert["alarm_off_minute"] is not None
                      and minute >= alert["alarm_off_minute"] + horizon):
                    closed.append(self._close(alert, minute, "no_episode"))
            if not event:
                self._run_start[zone] = None
        return closed

    def _close(self, alert: dict[str, Any], minute: int, outcome: str, episode_end: int | None = None) -> dict[str, Any]:
        alert["status"] = "closed"
        alert["outcome"] = outcome
        alert["closed_at"] = _minute_text(minute)
        if episode_end is not None:
            alert["episode_end"] = episode_end
            alert["lead_min"] = alert["episode_start"] - alert["opened_minute"]
        self._open.pop(alert["zone"], None)
        self._closed_new.append(dict(alert))
        self._notify("alert_closed", alert)
        return alert

    def _trim(self) -> None:
        while len(self._alerts) > self.capacity:
            alert_id, alert = self._alerts.popitem(last=False)
            if self._open.get(alert["zone"]) == alert_id:
                self._open.pop(alert["zone"])

    def _notify(self, kind: str, alert: Mapping[str, Any]) -> None:
        if self.webhook is not None:
            self.webhook.submit({"event": kind, "alert": public(alert)})

    # ------------------------------------------------------------------ reading

    def list(self, zone: str | None = None, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Alerts, newest first."""
        out = []
        for alert in reversed(self._alerts.values()):
            if (zone is None or alert["zone"] == zone) and (status is None or alert["status"] == status):
                out.append(public(alert))
                if len(out) >= limit:
                    break
        return out

    def summary(self) -> dict[str, Any]:
        closed = [a for a in self._alerts.values() if a["status"] == "closed"]
        leads = sorted(a["lead_min"] for a in closed if a["lead_min"] is not None)
        return {"open": len(self._open), "closed": len(closed),
                "episodes": len(leads), "no_episode": sum(a["outcome"] == "no_episode" for a in closed),
                "median_lead_min": leads[len(leads) // 2] if leads else None}

    # ------------------------------------------------------------------ persistence

    # Closed alerts never change again: they are persisted once, appended to a log
    # (`drain_closed`); the state written every minute holds only the open ones (`to_state`).

    def to_state(self) -> dict[str, Any]:
        """The open alerts and each zone's event run (small: written with every observe call)."""
        return {"open": [self._alerts[i] for i in self._open.values() if i in self._alerts],
                "run_start": self._run_start, "next_number": self._next_number}

    def drain_closed(self) -> list[dict[str, Any]]:
        """Alerts closed since the last call (to append to the closed-alerts log)."""
        out, self._closed_new = self._closed_new, []
        return out

    def all_alerts(self) -> list[dict[str, Any]]:
        """Every alert kept, oldest first (open and closed)."""
        return [dict(a) for a in self._alerts.values()]

    def load_state(self, data: Mapping[str, Any], closed: Sequence[Mapping[str, Any]] = ()) -> None:
        """Back from `to_state` and the closed-alerts log (an alert in both is closed: the log
        is appended before the state is written)."""
        alerts = {a["alert_id"]: dict(a) for a in data.get("open", [])}
        alerts.update({a["alert_id"]: dict(a) for a in closed})
        self._alerts = OrderedDict(sorted(alerts.items(), key=lambda kv: kv[1]["number"]))
        self._trim()
        self._next_number = max([int(data.get("next_number", 1)),
                                 *(a["number"] + 1 for a in self._alerts.values())])
        self._open = {a["zone"]: a["alert_id"] for a in self._alerts.values() if a["status"] == "open"}
        self._run_start = {str(k): (None if v is None else int(v)) for k, v in (data.get("run_start") or {}).items()}


def public(alert: Mapping[str, Any]) -> dict[str, Any]:
    """An alert as clients see it: times as ISO minutes."""
    out = {k: v for k, v in alert.items() if k not in ("opened_minute", "last_alarm_minute", "alarm_off_minute")}
    for key in ("episode_start", "episode_end"):
        out[key] = None if alert.get(key) is None else _minute_text(alert[key])
    out["alarm_until"] = _minute_text(alert["last_alarm_minute"])
    return out


# ---------------------------------------------------------------------------- webhook


class WebhookSender:
    """POSTs JSON events to a URL from one background thread (see the module doc).

    Args:
        url: where to POST.
        timeout_s: per attempt.
        retries: attempts after the first one fails (bounded), with backoff_s · 2^k between.
        queue_size: events waiting; when full, the new event is dropped (counted), never waited for.
    """

    def __init__(self, url: str, timeout_s: float = 2.0, retries: int = 3, backoff_s: float = 0.5,
                 queue_size: int = 1000, headers: Mapping[str, str] | None = None) -> None:
        self.url = url
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.headers = {"Content-Type": "application/json", **dict(headers or {})}
        self.stats = {"sent": 0, "failed": 0, "dropped": 0, "attempts": 0}
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=int(queue_size))
        self._thread = threading.Thread(target=self._run, name="fabray-webhook", daemon=True)
        self._thread.start()

    def submit(self, event: Mapping[str, Any]) -> bool:
        """Queue an event; False (and counted as dropped) when the queue is full. Never blocks."""
        try:
            self._queue.put_nowait(dict(event))
            return True
        except queue.Full:
            self.stats["dropped"] += 1
            logger.warning("webhook queue full: alert event dropped")
            return False

    def pending(self) -> int:
        return self._queue.qsize()

    def close(self, timeout_s: float = 1.0) -> None:
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            body = json.dumps(event).encode()
            for attempt in range(self.retries + 1):
                self.stats["attempts"] += 1
                try:
                    request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
                    with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                        if 200 <= response.status < 300:
                            self.stats["sent"] += 1
                            break
                except (urllib.error.URLError, OSError, ValueError) as err:
                    logger.debug("webhook attempt %d failed: %s", attempt + 1, err)
                if attempt < self.retries:
                    time.sleep(self.backoff_s * (2 ** attempt))
            else:
                self.stats["failed"] += 1
                logger.warning("webhook %s: event %s not delivered after %d attempts",
                               self.url, event.get("event"), self.retries + 1)


def sender_from_config(cfg: Any) -> WebhookSender | None:
    """A `WebhookSender` for `ServeFeed` settings (None without a webhook URL)."""
    if not getattr(cfg, "webhook_url", None):
        return None
    return WebhookSender(cfg.webhook_url, timeout_s=cfg.webhook_timeout_s, retries=cfg.webhook_retries,
                         queue_size=cfg.webhook_queue_size)


__all__ = ["AlertBook", "WebhookSender", "contributions", "public", "sender_from_config", "suggest"]
