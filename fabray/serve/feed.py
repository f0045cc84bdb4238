"""The live feed (DESIGN §6, issue 13): minute rows in, windows kept server-side, outcomes derived.

A fab's MES sends one row per zone each minute (`POST /v1/observe`). `LiveFeed` keeps each
zone's last `lookback + horizon` minutes (bounded memory) and

- refuses, before changing anything, a request with a row out of order (older than the zone's
  last minute, or older than an earlier row of the same zone in the request) or duplicated
  (a minute already received, or twice in the request): `FeedRefused`, HTTP 409, naming every
  such row; bad values are refused the same way with 422;
- flags gaps (minutes missing between a zone's last row and its new one);
- builds the window ending at each zone's newest minute exactly as `/v1/predict` checks one
  (`check_window`: a short gap is filled and `degraded`, a long one is not scored) with the
  context inputs of training (`window_context`: calendar, plan, the neighbours' windows taken
  from the other zones' buffers);
- H minutes after a prediction, derives its outcome from the observed transport times with the
  training label (`fabray.data.windows.horizon_labels`), and gives every minute's label to the
  alert book (episodes, realised lead times).

`FeedDesk` runs one observe call end to end around a scoring callable: ingest, move the
dynamic weights with the outcomes that came due (`EnsembleKeeper.feedback`, no client call),
score, record the predictions, open and close alerts, feed the monitor (`fabray.serve.monitor`:
rolling per-zone precision/recall, input drift, retrain advised; `monitor` in `status`), and
return the state to persist. Its state (buffers, pending outcomes, open alerts, the monitor's)
is written before the call is answered (`STORE/feed/state.json`; the weight history and closed
alerts are appended to logs beside it), so a restart loses nothing: a new desk reads it back
and continues as if nothing happened (rows sent again are refused as duplicates).

Pure Python + numpy: the Serve deployment in deployments/keeper.py holds one desk in the single-replica
keeper, beside the ensemble it moves. The request's rows are parsed and checked in
`fabray.serve.feed_rows`, the buffers, windows and outcomes kept in `fabray.serve.live_feed`;
this module is the desk.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fabray.serve.feed_rows import FeedSpec, minute_text
from fabray.serve.live_feed import Ingested, LiveFeed
from fabray.serve.monitor import FeedMonitor

logger = logging.getLogger(__name__)


FEED_FORMAT = "fabray-feed"
HISTORY_LOG = "weights.jsonl"
ALERTS_LOG = "alerts.jsonl"


#: score(zones, windows [B, L, F] float32, reasons) → one answer per window (as /v1/predict's)
Scorer = Callable[[list[str], np.ndarray, list[tuple[str, ...]]], Awaitable[list[dict[str, Any]]]]
#: explain(windows [K, L, F] float32) → per window the rules that fired: [{"rule", "activation"}]
Explainer = Callable[[np.ndarray], Awaitable[list[list[dict[str, Any]]]]]


class FeedDesk:
    """One observe call end to end (see the module doc), and the feed's persisted state.

    Args:
        state_path: the JSON document of the feed's state (None: nothing persisted).
        keeper: the `EnsembleKeeper` whose weights the outcomes move.
        alerts: the `AlertBook` (fabray.serve.alerts).
        history_size: weight changes kept (oldest dropped first).
        monitor: the `FeedMonitor` (fabray.serve.monitor) the rows and outcomes feed; None: one
            with the default `serve.monitor` settings.
    """

    def __init__(self, state_path: str | Path | None, keeper: Any, alerts: Any, history_size: int = 5000,
                 monitor: FeedMonitor | None = None) -> None:
        self.state_path = None if state_path is None else Path(state_path)
        self.keeper = keeper
        self.alerts = alerts
        self.monitor = monitor if monitor is not None else FeedMonitor()
        self.feed = LiveFeed()
        self.history: deque[dict[str, Any]] = deque(maxlen=int(history_size))
        self.counts = {"rows": 0, "scored": 0, "outcomes_applied": 0, "outcomes_undefined": 0}
        self._history_new: list[dict[str, Any]] = []  # weight changes since the last snapshot
        self._log_lines = {HISTORY_LOG: 0, ALERTS_LOG: 0}
        self._load()

    # Persistence: `state.json` (buffers, counts, open alerts: small) is rewritten with every
    # call; the weight history and the closed alerts only grow, so they are appended to
    # `weights.jsonl` and `alerts.jsonl` beside it (and compacted when twice their limit).

    def _log(self, name: str) -> Path:
        return self.state_path.parent / name

    def _load(self) -> None:
        if self.state_path is None or not self.state_path.is_file():
            return
        import json

        try:
            data = json.loads(self.state_path.read_text())
            if data.get("format") != FEED_FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            feed = LiveFeed.from_state(data["feed"])
            history = _read_log(self._log(HISTORY_LOG))
            closed = _read_log(self._log(ALERTS_LOG))
            self.alerts.load_state(data.get("alerts") or {}, closed)
        except (OSError, ValueError, KeyError, TypeError) as err:
            logger.error("the live feed's state %s cannot be read (%s): starting empty", self.state_path, err)
            return
        self.feed = feed
        self.history.extend(history)
        self.counts.update(data.get("counts", {}))
        self._log_lines = {HISTORY_LOG: len(history), ALERTS_LOG: len(closed)}
        try:  # a monitor state that cannot be read costs only the monitor's history
            if data.get("monitor"):
                self.monitor.load_state(data["monitor"])
        except (ValueError, KeyError, TypeError) as err:
            logger.error("the feed monitor's state in %s cannot be read (%s): monitoring starts afresh",
                         self.state_path, err)
        logger.info("live feed restored from %s: %d zones, %d alerts", self.state_path, len(feed.zones),
                    len(self.alerts.all_alerts()))

    async def observe(self, rows: Sequence[Mapping[str, Any]], spec: FeedSpec, score: Scorer,
                      explain: Explainer | None = None) -> dict[str, Any]:
        """Ingest `rows`, apply the outcomes that came due, score every zone that got its
        minute, record alerts (asking `explain` which rules fired for the windows that open
        one). The answer; `snapshot()` then holds what to persist."""
        batch = self.feed.ingest(rows, spec)
        self.counts["rows"] += batch.accepted
        self.monitor.training = spec.training
        for row in batch.rows:
            self.monitor.observe_row(row.zone, row.minute, row.values)
        applied = self._apply_outcomes(batch)
        closed = self.alerts.on_labels(batch.labels, spec.horizon)

        answers: list[dict[str, Any]] = []
        if batch.to_score:
            zones = [job["zone"] for job in batch.to_score]
            windows = np.stack([job["window"] for job in batch.to_score])  # [B, L, F]
            try:
                answers = await score(zones, windows, [tuple(job["reasons"]) for job in batch.to_score])
            except Exception as err:  # noqa: BLE001 - the rows stay accepted; the minute is unscored
                logger.warning("scoring the feed's windows failed: %s", err)
                answers = [{"error": f"the models could not score this window ({type(err).__name__}); "
                                     "it is scored again with the zone's next minute"}] * len(zones)
        if explain is not None:
            await self._explain(batch.to_score, answers, explain)
        out_zones, opened = [], []
        for job, answer in zip(batch.to_score, answers):
            zone, minute = job["zone"], job["minute"]
            if answer.get("error"):
                out_zones.append({"zone": zone, "timestamp": minute_text(minute), "status": "unscored",
                                  "reason": answer["error"]})
                continue
            answer = self._decide(spec, zone, minute, answer)
            self.feed.record(zone, minute, answer)
            self.counts["scored"] += 1
            alert = self.alerts.on_scored(zone, minute, answer, spec, self._suggestion_inputs(zone, spec))
            if alert is not None:
                opened.append(alert)
            out_zones.append({"zone": zone, "timestamp": minute_text(minute), "status": "scored",
                              "prediction": answer})
        for item in batch.unscored:
            out_zones.append({"zone": item["zone"], "timestamp": minute_text(item["minute"]),
                              "status": item["status"], "reason": item["reason"]})
        return {
            "accepted": batch.accepted,
            "zones": out_zones,
            "gaps": batch.gaps,
            "outcomes": {"applied": applied, "undefined": batch.undefined_outcomes,
                         "due": len(batch.outcomes)},
            "alerts": {"opened": [a["alert_id"] for a in opened], "closed": [a["alert_id"] for a in closed]},
        }

    def _decide(self, spec: FeedSpec, zone: str, minute: int, answer: dict[str, Any]) -> dict[str, Any]:
        """The zone's decision this minute under the served alarm policy (hysteresis, hold: the
        keeper's `decide`, state kept per zone over consecutive minutes); a degraded answer keeps
        the plain threshold and restarts the zone's alarm state."""
        decide = getattr(self.keeper, "decide", None)
        if decide is None or not self.keeper.has(spec.version):
            return answer
        if answer.get("degraded"):
            self.keeper.forget_alarm(spec.version, zone)
            return answer
        return {**answer, "decision": bool(decide(spec.version, zone, answer["probability"], minute))}

    async def _explain(self, jobs: list[dict[str, Any]], answers: list[dict[str, Any]], explain: Explainer) -> None:
        """`rules_fired` on the answers that will open an alert (an alarm in a zone with none
        open); an explainer that fails leaves them without (the alert says so by an empty list)."""
        rising = [i for i, (job, answer) in enumerate(zip(jobs, answers))
                  if not answer.get("error") and answer.get("decision") and not self.alerts.is_open(job["zone"])]
        if not rising:
            return
        try:
            fired = await explain(np.stack([jobs[i]["window"] for i in rising]))
        except Exception as err:  # noqa: BLE001 - an alert without its rules beats no alert
            logger.warning("which rules fired could not be computed: %s", err)
            return
        for i, rules in zip(rising, fired):
            answers[i] = {**answers[i], "rules_fired": list(rules)}

    def _apply_outcomes(self, batch: Ingested) -> int:
        """Outcomes that came due → the keeper's weights (as /v1/feedback would), and the
        weight history."""
        self.counts["outcomes_undefined"] += batch.undefined_outcomes
        for o in batch.outcomes:  # the monitor's rolling precision / recall, per zone
            self.monitor.observe_outcome(o["zone"], o["minute"], o.get("decision"), o.get("event"))
        items = [{"prediction_id": o["prediction_id"], "outcome": o["outcome"]} for o in batch.outcomes]
        if not items:
            return 0
        result = self.keeper.feedback(items)
        self.counts["outcomes_applied"] += result["applied"]
        if result["applied"]:
            at = minute_text(max(o["minute"] for o in batch.outcomes))
            for version, zones in result["weights"].items():
                for zone, weights in zones.items():
                    entry = {"prediction_minute": at, "version": version, "zone": zone, "weights": weights}
                    self.history.append(entry)
                    self._history_new.append(entry)
        return int(result["applied"])

    def _suggestion_inputs(self, zone: str, spec: FeedSpec) -> dict[str, Any]:
        """What a suggested action looks at: the zone's and its neighbours' newest rows and risks."""
        zones = [zone, *spec.neighbours(zone)]
        return {z: {"row": self.feed.latest_row(z),
                    "latest": self.feed.zones[z].latest if z in self.feed.zones else None,
                    "plan_ahead": self.feed.zones[z].plan_ahead if z in self.feed.zones else None}
                for z in zones}

    # ------------------------------------------------------------------ reading

    def weight_history(self, zone: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        items = [h for h in self.history if zone is None or h["zone"] == zone]
        return items[-limit:]

    def status(self) -> dict[str, Any]:
        return {"zones": self.feed.status(), "counts": dict(self.counts), "monitor": self.monitor_summary()}

    def monitor_summary(self) -> dict[str, Any]:
        """The monitor's summary (`FeedMonitor.summary`): rolling per-zone metrics with the
        alerts' realised leads, input drift, retrain advised."""
        return self.monitor.summary(alerts=self.alerts.all_alerts())

    # ------------------------------------------------------------------ persistence

    def snapshot(self) -> dict[str, Any]:
        """What changed since the last snapshot, JSON-able, for `write` (take it on the event
        loop, after the call that changed it; write it off the loop). Snapshots must be written
        in the order they were taken."""
        history, self._history_new = self._history_new, []
        return {"state": {"format": FEED_FORMAT, "feed": self.feed.to_state(), "counts": dict(self.counts),
                          "alerts": self.alerts.to_state(), "monitor": self.monitor.to_state()},
                "history": history, "closed_alerts": self.alerts.drain_closed()}

    def full_state(self) -> dict[str, Any]:
        """Everything the desk holds (buffers, counts, weight history, every alert kept): what
        a restart must give back."""
        return {"feed": self.feed.to_state(), "counts": dict(self.counts), "history": list(self.history),
                "alerts": self.alerts.all_alerts(), "run_start": self.alerts.to_state()["run_start"],
                "monitor": self.monitor.to_state()}

    def write(self, payload: Mapping[str, Any]) -> None:
        """Persist a `snapshot`: append the logs first, then replace the state (a crash between
        the two leaves an alert both open in the state and closed in the log: read as closed)."""
        if self.state_path is None:
            return
        import json

        from fabray.files import atomic_write_text

        for name, entries, limit in ((HISTORY_LOG, payload["history"], self.history.maxlen),
                                     (ALERTS_LOG, payload["closed_alerts"], self.alerts.capacity)):
            if not entries:
                continue
            path = self._log(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as fh:
                fh.write("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries))
                fh.flush()
                os.fsync(fh.fileno())
            self._log_lines[name] += len(entries)
            if self._log_lines[name] > 2 * limit:  # compact: keep the newest `limit` lines
                kept = _read_log(path)[-limit:]
                atomic_write_text(path, "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in kept))
                self._log_lines[name] = len(kept)
        atomic_write_text(self.state_path, json.dumps(payload["state"], separators=(",", ":")))


def _read_log(path: Path) -> list[dict[str, Any]]:
    """The entries of a JSON-lines log; a torn last line (a crash mid-append) is skipped."""
    import json

    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            logger.warning("%s: skipping a damaged line", path)
    return out
