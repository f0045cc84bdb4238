"""The EnsembleKeeper deployment: one replica, the single holder of the online state.

    Predictor ──▶ EnsembleKeeper   the dynamic ensemble's online weights (keeper.py) and
                                   pending predictions, persisted to the store: `sync` hands
                                   a replica the weights when they changed, `record` takes the
                                   pending predictions it combined itself (local_ensemble.py),
                                   in the background; /v1/feedback moves the weights;
                       │           /v1/observe: the live feed's buffers, derived outcomes and
                       │           alerts (feed.py, alerts.py) live beside the weights they move
                       └──▶ Predictor   `score_raw` scores the feed's windows (found by name); the
                                        keeper combines them with its own weights
"""

import asyncio
import logging
from typing import Any, Optional

import numpy as np
from ray import serve

from fabray.config import ServeConfig
from fabray.serve.alerts import AlertBook, sender_from_config
from fabray.serve.answers import answer
from fabray.serve.deployments.metrics import _metric, _record
from fabray.serve.deployments import PREDICTOR
from fabray.serve.feed import FeedDesk
from fabray.serve.feed_rows import FeedSpec
from fabray.serve.keeper import EnsembleKeeper
from fabray.serve.monitor import FeedMonitor
from fabray.serve.store import ModelStore

logger = logging.getLogger(__name__)

KEEPER = "EnsembleKeeper"


@serve.deployment(name=KEEPER, num_replicas=1, max_ongoing_requests=1000)
class EnsembleKeeperDeployment:
    """The single holder of the online state: the dynamic ensemble (keeper.py), and the live
    feed with its alerts (feed.py, alerts.py), which moves the ensemble's weights in-process."""

    async def __init__(self, store_dir: str, persist_interval_s: float, pending_capacity: int,
                       serve_cfg: Optional[dict] = None) -> None:
        store = ModelStore(store_dir)
        self.keeper = EnsembleKeeper(store.state_dir, pending_capacity)
        self.persist_interval_s = persist_interval_s
        cfg = ServeConfig.model_validate(serve_cfg or {})
        self.degraded = cfg.degraded
        self.desk = FeedDesk(store.root / "feed" / "state.json", self.keeper,
                             AlertBook(cfg.feed.alerts_kept, sender_from_config(cfg.feed)),
                             cfg.feed.weights_history, FeedMonitor(cfg.monitor))
        self._feed_lock = asyncio.Lock()  # one observe call at a time: rows apply in order
        self._alerts_raised = _metric("Counter", "fabray_alerts_raised", "Alerts opened by the live feed.", ("zone",))
        self._zone_gauges = {  # the feed monitor (monitor.py), over serve.monitor.window_min; NaN: undefined
            "precision": _metric("Gauge", "fabray_zone_precision", "Rolling precision of the live feed's alarms.",
                                 ("zone",)),
            "recall": _metric("Gauge", "fabray_zone_recall", "Rolling recall of the live feed's alarms.", ("zone",)),
            "f1": _metric("Gauge", "fabray_zone_f1", "Rolling F1 of the live feed's alarms.", ("zone",)),
            "median_lead_min": _metric("Gauge", "fabray_zone_median_lead_min",
                                       "Median realised lead (min) of the zone's recently closed alerts.", ("zone",)),
        }
        self._drift_gauge = _metric("Gauge", "fabray_feature_drift",
                                    "Input drift per raw feature: |recent mean - training mean| / training std.",
                                    ("feature",))
        self._retrain_gauge = _metric("Gauge", "fabray_retrain_advised",
                                      "1 when the feed monitor advises a retrain (drift or recall), else 0.")
        self._feed_unwritten: list = []  # feed snapshots not yet on disk, oldest first
        self._predictor: Any = None
        self._loop = asyncio.create_task(self._persist_loop())

    async def _persist_loop(self) -> None:
        while True:
            await asyncio.sleep(self.persist_interval_s)
            if self._feed_unwritten:  # an earlier write failed
                try:
                    async with self._feed_lock:
                        await asyncio.to_thread(self._write_feed)
                except Exception:  # noqa: BLE001 - keep serving; try again next period
                    logger.exception("persisting the live feed's state failed")
            payloads = self.keeper.snapshot()  # on the loop: consistent, and fast
            if not payloads:
                continue
            try:
                saved = await asyncio.to_thread(self.keeper.write, payloads)  # the disk, off the loop
                logger.debug("persisted the ensemble state of %s", saved)
            except Exception:  # noqa: BLE001 - keep serving; try again next period
                logger.exception("persisting the ensemble state failed")
                self.keeper.mark_dirty(list(payloads))

    async def ensure(self, version: str, fitted_state: Optional[dict], params: dict, model_names: list) -> None:
        self.keeper.ensure(version, fitted_state, params, model_names)

    async def record(self, records: list) -> int:
        return self.keeper.record(records)

    async def sync(self, version: str, epoch: Optional[str], generation: int) -> dict:
        return self.keeper.sync(version, epoch, generation)

    async def combine(self, version: str, zones: list, scores: np.ndarray, rule_scores: np.ndarray,
                      degraded: list, last_rows: Optional[np.ndarray] = None) -> Optional[list]:
        if not self.keeper.has(version):
            return None  # a restarted keeper: the caller sends `ensure` and asks again
        return self.keeper.combine(version, zones, scores, rule_scores, degraded, last_rows)

    async def feedback(self, items: list) -> dict:
        return self.keeper.feedback(items)

    async def weights(self, version: str, zones: list) -> dict:
        return self.keeper.weights(version, zones)

    async def describe(self) -> dict:
        return self.keeper.describe()

    async def save(self) -> list:
        return self.keeper.save(force=True)

    # ------------------------------------------------------------------ the live feed

    def _predictor_handle(self) -> Any:
        if self._predictor is None:  # bound after this deployment: found by name in the app
            self._predictor = serve.get_deployment_handle(PREDICTOR)
        return self._predictor

    async def _ensure_live(self, version: str) -> None:
        """A restarted keeper loads a version's ensemble (and its pending predictions) when a
        predictor hands it over: before the feed applies outcomes, make sure it has."""
        if not self.keeper.has(version):
            await self._predictor_handle().ensure_ensemble.remote()

    async def _score(self, zones: list, windows: np.ndarray, reasons: list) -> list:
        """The feed's windows: scored by a Predictor replica (every model, no deadline), combined
        here with the keeper's own weights (the ones the feed's outcomes move), pending here."""
        batch = await self._predictor_handle().score_raw.remote({"zones": zones, "windows": windows})
        if batch.error is not None:
            return [{"error": batch.error}] * len(zones)
        if not self.keeper.has(batch.version):
            await self._predictor_handle().ensure_ensemble.remote()
        return answer(batch, zones, reasons, self.keeper.combine)

    async def observe(self, rows: list, meta: dict) -> dict:
        """One /v1/observe call (feed.py's `FeedDesk.observe`); its state is on disk before
        the answer leaves (the feed's, and the ensemble weights its outcomes moved)."""
        spec = FeedSpec.from_meta(meta, self.degraded)
        await self._ensure_live(spec.version)
        async with self._feed_lock:
            out = await self.desk.observe(rows, spec, self._score)  # answers name the rules that fired
            opened = set(out["alerts"]["opened"])
            for alert in self.desk.alerts.list(limit=len(opened)) if opened else ():
                if alert["alert_id"] in opened:
                    _record(self._alerts_raised, "inc", 1, {"zone": str(alert["zone"])})
            self._export_monitor()
            self._feed_unwritten.append(self.desk.snapshot())  # snapshots are written in order
            ensemble_state = self.keeper.snapshot()
            try:
                await asyncio.to_thread(self._write_feed)
                await asyncio.to_thread(self.keeper.write, ensemble_state)
            except Exception:  # noqa: BLE001 - answered; the persist loop writes it again
                logger.exception("persisting the live feed's state failed")
                self.keeper.mark_dirty(list(ensemble_state))
        return out

    def _export_monitor(self) -> None:
        """The feed monitor's summary → the Prometheus gauges (None → NaN: undefined, not stale)."""
        try:
            summary = self.desk.monitor_summary()
        except Exception:  # noqa: BLE001 - metrics are never worth failing a request
            logger.exception("the feed monitor's summary failed")
            return

        def value(v: Any) -> float:
            return float("nan") if v is None else float(v)

        for zone, m in summary["zones"].items():
            for key, gauge in self._zone_gauges.items():
                _record(gauge, "set", value(m[key]), {"zone": str(zone)})
        for feature, d in summary["drift"]["features"].items():
            _record(self._drift_gauge, "set", value(d["score"]), {"feature": feature})
        _record(self._retrain_gauge, "set", float(summary["retrain_advised"]))

    def _write_feed(self) -> None:
        while self._feed_unwritten:
            self.desk.write(self._feed_unwritten[0])
            self._feed_unwritten.pop(0)

    async def alerts(self, zone: Optional[str], status: Optional[str], limit: int) -> dict:
        return {"alerts": self.desk.alerts.list(zone, status, limit), "summary": self.desk.alerts.summary()}

    async def weight_history(self, version: str, zones: list, zone: Optional[str], limit: int) -> dict:
        await self._ensure_live(version)
        shown = [zone] if zone is not None else list(zones)
        current = self.keeper.weights(version, shown) if self.keeper.has(version) else {}
        return {"version": version, "current": current, "history": self.desk.weight_history(zone, limit)}

    async def feed_status(self) -> dict:
        return self.desk.status() | {"alerts": self.desk.alerts.summary()}

    def __del__(self) -> None:
        try:
            self.keeper.save()
        except Exception:  # noqa: BLE001 - shutting down
            logger.exception("final save of the ensemble state failed")
