"""The fabray Ray Serve application (DESIGN §6): real-time, feedback, batch and retraining.

    HTTP ──▶ Ingress (FastAPI: checks, auth, errors; no TensorFlow)
               ├──▶ Predictor × N   every model of the live version; @serve.batch groups
               │        │            concurrent windows into one model call per model
               │        └──▶ EnsembleKeeper × 1   the dynamic ensemble's online weights,
               │                                  pending predictions, persisted to the store
               ├──▶ EnsembleKeeper   /v1/feedback moves the weights; /v1/observe: the live
               │        │            feed's buffers, derived outcomes and alerts (feed.py,
               │        │            alerts.py) live beside the weights they move
               │        └──▶ Predictor   scores the feed's windows
               └──▶ JobManager × 1   batch jobs (Ray Data) and retraining (a Ray task), the
                        │            periodic scheduler; job status lives in the store
                        └──▶ BatchScorer × 1   the predictor class again, warm, apart from the
                                               real-time replicas: Ray Data's tasks gather the
                                               windows and call it

Model versions live in a `ModelStore`. Promotion rewrites the store's LIVE.json atomically
after the new version has been verified (checksums) and loaded on a predictor replica; each
replica polls LIVE.json and swaps its in-memory bundle between two batches, so requests never
fail during a swap and a damaged version never replaces a working one.

`build_app(args)` is the typed application builder: `serve run fabray.serve.app:build_app
store=... run=...`, `serve deploy cluster/serve.yaml`, or `fabray serve --run RUN`.
"""

# No `from __future__ import annotations` here: Ray Serve reads build_app's annotation at run
# time to validate the arguments of `serve deploy` against ServeArgs.

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application

from fabray.config import EnsembleConfig, ServeConfig, ServeLimits, load_config
from fabray.errors import BadInputError
from fabray.files import utc_now
from fabray.serve.auth import load_token
from fabray.serve.http import ApiError, HttpSettings, Unavailable, build_http_app
from fabray.serve.jobs import count_active, new_job, public_error, recover_interrupted, redact_paths, root_cause
from fabray.serve.alerts import AlertBook, sender_from_config
from fabray.serve.feed import FeedDesk, FeedSpec
from fabray.serve.keeper import EnsembleKeeper
from fabray.serve.monitor import FeedMonitor
from fabray.serve.paths import resolve_under
from fabray.serve.schemas import BatchIn, ImportIn, PromoteIn, RetrainIn, RollbackIn
from fabray.serve.store import ModelStore, UnknownVersionError

logger = logging.getLogger(__name__)

KEEPER = "EnsembleKeeper"
PREDICTOR = "Predictor"
BATCH_SCORER = "BatchScorer"
JOBS = "JobManager"
INGRESS = "Ingress"


class ServeArgs(BaseModel):
    """Arguments of `build_app` (the `args:` of an application in a Serve config file)."""

    model_config = ConfigDict(extra="forbid")

    store: str = Field(description="Model store directory (created if missing).")
    run: Optional[str] = Field(
        None, description="Run directory to import into the store and make live before starting.",
    )
    promote_run: Literal["always", "if_no_live"] = Field(
        "always", description="'always': `run` becomes live (`fabray serve --run`); 'if_no_live': only "
        "when the store has no live version yet, so redeploying never undoes a promotion made since.",
    )
    config: Optional[str] = Field(
        None, description="fabray YAML config; its `serve` and `ensemble` sections are used.",
    )
    serve: dict[str, Any] = Field(
        default_factory=dict, description="Values overriding the config's `serve` section.",
    )


def _count_windows(items: list) -> int:
    return sum(len(item["zones"]) for item in items)


def _metric(kind: str, name: str, description: str, tag_keys: tuple[str, ...] = (), **kwargs: Any) -> Any:
    """A Ray metric exported to Prometheus, or None where metrics are unavailable."""
    try:
        from ray.serve import metrics

        return getattr(metrics, kind)(name, description=description, tag_keys=tag_keys, **kwargs)
    except Exception as err:  # noqa: BLE001 - metrics are never worth failing a request
        logger.warning("metric %s unavailable: %s", name, err)
        return None


def _record(metric: Any, method: str, value: float, tags: Optional[dict] = None) -> None:
    """Update a metric; a counter is only increased by a positive amount; never raises."""
    if metric is None or (method == "inc" and value <= 0):
        return
    try:
        getattr(metric, method)(value, tags=tags)
    except Exception:  # noqa: BLE001 - metrics are never worth failing a request
        logger.debug("metric update failed", exc_info=True)


# ---------------------------------------------------------------------------- ensemble keeper


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
        return await self._predictor_handle().predict.remote({"zones": zones, "windows": windows, "reasons": reasons})

    async def _explain(self, windows: np.ndarray) -> list:
        return await self._predictor_handle().rules_fired.remote(windows)

    async def observe(self, rows: list, meta: dict) -> dict:
        """One /v1/observe call (feed.py's `FeedDesk.observe`); its state is on disk before
        the answer leaves (the feed's, and the ensemble weights its outcomes moved)."""
        spec = FeedSpec.from_meta(meta, self.degraded)
        await self._ensure_live(spec.version)
        async with self._feed_lock:
            out = await self.desk.observe(rows, spec, self._score, self._explain)
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


# ---------------------------------------------------------------------------- predictor


@serve.deployment(name=PREDICTOR)
class PredictorDeployment:
    """Every model of the live version; scores batches of windows; hot-swaps on promotion."""

    async def __init__(self, store_dir: str, ensemble_cfg: dict, serve_cfg: dict, keeper: Any) -> None:
        self.cfg = ServeConfig.model_validate(serve_cfg)
        # before TensorFlow is imported (it is, lazily, by the first load below)
        os.environ["OMP_NUM_THREADS"] = str(self.cfg.model_threads or os.cpu_count() or 1)
        self.ensemble_cfg = EnsembleConfig.model_validate(ensemble_cfg)
        self.store = ModelStore(store_dir)
        self.keeper = keeper
        self.bundle = None
        self._bundles: dict[str, Any] = {}  # version → ServingBundle: live, previous, candidate
        self.refused: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self.stats = {"batches": 0, "windows": 0, "largest_batch": 0}
        self._scored = _metric("Counter", "fabray_windows_scored", "Windows scored.", ("degraded",))
        self._version_gauge = _metric("Gauge", "fabray_model_version", "Store version number served by the replica.")
        self._batch_windows = _metric("Histogram", "fabray_batch_windows", "Windows per model call.",
                                      boundaries=[1, 2, 4, 8, 16, 32, 64, 128, 256])
        self._score.set_max_batch_size(self.cfg.max_batch_size)
        self._score.set_batch_wait_timeout_s(self.cfg.batch_wait_timeout_s)
        await self._load_first()
        self._poller = asyncio.create_task(self._poll_loop())

    # ------------------------------------------------------------------ loading and swapping

    async def _load(self, version: str) -> Any:
        from fabray.serve.bundle import ServingBundle

        bundle = await asyncio.to_thread(ServingBundle.load, self.store, version, self.ensemble_cfg)
        await self.keeper.ensure.remote(version, bundle.fitted_state, bundle.ensemble_params,
                                        list(bundle.model_names))
        return bundle

    async def _load_first(self) -> None:
        """The live version, or else the newest earlier one that loads (the champion keeps serving)."""
        for version in self.store.fallbacks():
            try:
                self._swap(await self._load(version))
                return
            except BadInputError as err:
                logger.error("version %s refused: %s", version, err)
                self.refused[version] = str(err)
        raise RuntimeError(f"no model version in {self.store.root} can be loaded: {self.refused or 'none stored'}")

    def _swap(self, bundle: Any) -> None:
        previous = self.bundle
        self.bundle = bundle  # one reference assignment: a batch uses the bundle it started with
        keep = {bundle.version} | ({previous.version} if previous is not None else set())
        self._bundles = {v: b for v, b in {**self._bundles, bundle.version: bundle}.items() if v in keep}
        _record(self._version_gauge, "set", int(bundle.version[1:]))
        if previous is not None and previous.version != bundle.version:
            logger.info("hot swap %s → %s", previous.version, bundle.version)

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.model_poll_interval_s)
            try:
                await self.refresh()
            except Exception:  # noqa: BLE001 - keep serving what we have
                logger.exception("checking the store for a new live version failed")

    async def refresh(self) -> dict:
        """Swap to the store's live version if it is not the one served (and not refused)."""
        live = self.store.live()
        if live and live != self.bundle.version and live not in self.refused:
            async with self._lock:
                if live != self.bundle.version:
                    try:
                        bundle = self._bundles.get(live) or await self._load(live)
                    except BadInputError as err:
                        logger.error("live version %s refused, still serving %s: %s", live, self.bundle.version, err)
                        self.refused[live] = str(err)
                    else:
                        self._swap(bundle)
        return await self.info()

    async def prepare(self, version: str) -> dict:
        """Load `version` (checksums, models, warm-up) without serving it; its meta. A damaged or
        incompatible version raises BadInputError and changes nothing."""
        async with self._lock:
            bundle = self._bundles.get(version)
            if bundle is None:
                bundle = await self._load(version)
                self._bundles[version] = bundle
        self.refused.pop(version, None)
        return bundle.meta()

    async def info(self) -> dict:
        meta = self.bundle.meta()
        meta["horizon"] = self.bundle.predictor.horizon  # the live feed derives outcomes with it
        meta["scaler"] = self.bundle.predictor.scaler.to_dict()  # the feed monitor's training statistics
        meta["refused"] = dict(self.refused)
        meta["batching"] = dict(self.stats)
        meta["replica"] = serve.get_replica_context().replica_id.unique_id
        return meta

    async def rules_fired(self, windows: np.ndarray) -> list:
        """The rules of the served `rule` model that fire on raw windows [K, L, F]: per window
        [{"rule", "activation"}] with activation >= 0.5, strongest first (empty lists when the
        version has no rule model)."""
        return await asyncio.to_thread(_rules_fired, self.bundle, windows)

    async def ensure_ensemble(self) -> None:
        """Hand the served version's ensemble to the keeper (a restarted keeper asks)."""
        bundle = self.bundle
        await self.keeper.ensure.remote(bundle.version, bundle.fitted_state, bundle.ensemble_params,
                                        list(bundle.model_names))

    def check_health(self) -> None:
        if self.bundle is None:
            raise RuntimeError("no model version loaded")

    async def score_batch(self, version: str, windows: np.ndarray, scaled: bool) -> dict:
        """Batch jobs: scores of windows [B, L, F] (raw, or already scaled with the version's
        scaler) by `version`, the version the job pinned: {"scores": [B, M], "rules": [B]}."""
        bundle = self._bundles.get(version)
        if bundle is None:
            await self.prepare(version)
            bundle = self._bundles[version]
        score = bundle.score_scaled if scaled else bundle.score
        scores, rules = await asyncio.to_thread(score, windows)
        self.stats["batches"] += 1
        self.stats["windows"] += len(rules)
        return {"scores": scores, "rules": rules, "models": list(bundle.model_names)}

    # ------------------------------------------------------------------ scoring

    async def predict(self, item: dict) -> list:
        """item: {"zones": [B], "windows": [B, L, F] float32 (checked), "reasons": [B]} → B answers.
        Split into pieces of at most max_batch_size windows, each joining the shared batches."""
        step = self.cfg.max_batch_size
        n = len(item["zones"])
        if n <= step:
            return await self._score(item)
        parts = await asyncio.gather(*(
            self._score({key: item[key][i:i + step] for key in ("zones", "windows", "reasons")})
            for i in range(0, n, step)
        ))
        return [answer for part in parts for answer in part]

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002, batch_size_fn=_count_windows)
    async def _score(self, items: list) -> list:
        """One model call for the windows of every waiting request. Nothing here fails the
        group: a request whose windows do not fit, or a window no model scored finitely (even
        the rules), gets {"error": ...} in its place; the ingress answers that request alone 503."""
        bundle = self.bundle
        expected = (bundle.predictor.lookback, bundle.predictor.n_features)
        fits = [tuple(item["windows"].shape[1:]) == expected for item in items]
        good = [item for item, ok in zip(items, fits) if ok]
        answers: list = []
        if good:
            try:
                answers = await self._answer(bundle, good)
            except Exception:  # noqa: BLE001 - answered per request, never a failed batch
                logger.exception("scoring a batch of %d requests failed", len(good))
                answers = [{"error": "the models could not score this window; retry"}
                           for item in good for _ in item["zones"]]
        out, start = [], 0
        for item, ok in zip(items, fits):
            n = len(item["zones"])
            if ok:
                out.append(answers[start:start + n])
                start += n
            else:
                message = (f"windows must be {expected[0]} minutes × {expected[1]} features for model "
                           f"version {bundle.version} (it was just swapped in); retry")
                out.append([{"error": message}] * n)
        return out

    async def _answer(self, bundle: Any, items: list) -> list:
        zones = [zone for item in items for zone in item["zones"]]
        reasons = [tuple(r) for item in items for r in item["reasons"]]
        windows = np.concatenate([item["windows"] for item in items])  # [B, L, F]
        scores, rules = await asyncio.to_thread(bundle.score, windows)  # [B, M], [B]
        scores = np.asarray(scores, dtype=np.float64)
        rules = np.asarray(rules, dtype=np.float64)
        names = bundle.model_names
        finite = np.isfinite(scores)  # [B, M]
        for i in np.flatnonzero(~finite.all(axis=1)):  # a model answered NaN/inf: the rules decide
            bad = [names[m] for m in np.flatnonzero(~finite[i])]
            reasons[i] = (*reasons[i], f"model output: no finite score from {', '.join(bad)}")
        degraded = [bool(r) for r in reasons]
        unscorable = [d and not np.isfinite(r) for d, r in zip(degraded, rules)]
        safe_scores = np.where(finite, scores, 0.0)
        safe_rules = np.where(np.isfinite(rules), rules, 0.0)
        predictor = getattr(bundle, "predictor", None)  # [B, F] last minutes, scaled: the learned gate's context
        last_rows = None if predictor is None else predictor.scaler.transform(windows[:, -1, :])
        combined = await self.keeper.combine.remote(bundle.version, zones, safe_scores, safe_rules, degraded, last_rows)
        if combined is None:
            await self.keeper.ensure.remote(bundle.version, bundle.fitted_state, bundle.ensemble_params,
                                            list(bundle.model_names))
            combined = await self.keeper.combine.remote(bundle.version, zones, safe_scores, safe_rules, degraded,
                                                        last_rows)
        answers = []
        for zone, row, ok, c, why, lost in zip(zones, scores, finite, combined, reasons, unscorable):
            probability = float(c["probability"])
            if lost or not np.isfinite(probability):
                answers.append({"error": "the models gave no finite score for this window; retry or check "
                                         "its values"})
                continue
            answers.append({
                "prediction_id": c["prediction_id"],
                "zone": zone,
                "model_version": bundle.version,
                "run_id": bundle.run_id,
                "scores": {name: (float(v) if good else None) for name, v, good in zip(names, row, ok)},
                "probability": probability,
                "decision": probability >= bundle.threshold,
                "threshold": bundle.threshold,
                "weights": c["weights"],
                "degraded": bool(why),
                "degraded_reasons": list(why),
            })
        self.stats["batches"] += 1
        self.stats["windows"] += len(answers)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(answers))
        n_degraded = sum(degraded)
        _record(self._scored, "inc", len(answers) - n_degraded, {"degraded": "false"})
        _record(self._scored, "inc", n_degraded, {"degraded": "true"})
        _record(self._batch_windows, "observe", len(answers))
        return answers


def _rules_fired(bundle: Any, windows: np.ndarray) -> list:
    from fabray.models.rule import RuleScore
    from fabray.serve.keeper import RULE_MODEL

    if RULE_MODEL not in bundle.model_names:
        return [[] for _ in windows]
    layer = next((l for l in bundle.predictor.model(RULE_MODEL).layers if isinstance(l, RuleScore)), None)
    if layer is None:
        return [[] for _ in windows]
    x = bundle.predictor.scaler.transform(np.asarray(windows, dtype=np.float32))  # [K, L, F] scaled
    activations = np.asarray(layer.rule_activations(x), dtype=np.float64)  # [K, R]
    names = [rule["name"] for rule in layer.rules]
    return [[{"rule": names[r], "activation": round(float(row[r]), 3)}
             for r in np.argsort(-row) if row[r] >= 0.5] for row in activations]


# ---------------------------------------------------------------------------- jobs


@serve.deployment(name=JOBS, num_replicas=1, max_ongoing_requests=100)
class JobManagerDeployment:
    """Starts batch and retraining jobs as Ray tasks, tracks them, runs the batch scheduler."""

    async def __init__(self, store_dir: str, serve_cfg: dict, ensemble_cfg: dict, keeper: Any, predictor: Any,
                       scorer: Any) -> None:
        self.cfg = ServeConfig.model_validate(serve_cfg)
        self.limits = self.cfg.limits
        self.data_dirs = data_dirs(self.limits, self.cfg, store_dir)
        self.ensemble_cfg = ensemble_cfg
        self.store = ModelStore(store_dir)
        recover_interrupted(self.store)  # jobs of an earlier instance died with it
        self.keeper = keeper
        self.predictor = predictor
        self.scorer = scorer  # the warm BatchScorer deployment the batch jobs' Ray Data tasks call
        self.refs: dict[str, Any] = {}
        self._last_scheduled: Optional[str] = None
        self._scheduler = asyncio.create_task(self._schedule_loop()) if self.cfg.batch_source else None

    def _new_job(self, kind: str, **fields: Any) -> dict:
        return new_job(self.store, kind, **fields)

    def _check_capacity(self, kind: str, limit: int) -> None:
        active = count_active(self.store, kind)
        if active >= limit:
            raise ApiError(429, f"{active} {kind} job(s) already pending or running (at most {limit}); "
                                "retry when one has ended")

    async def submit_batch(self, spec: dict) -> dict:
        import ray

        from fabray.serve.batch import run_batch_job

        if spec.get("path") is not None:  # a client mistake is 422 before anything else
            path = resolve_under(spec["path"], self.data_dirs, kind="file", what="batch path")
            spec = {**spec, "path": str(path)}
        self._check_capacity("batch", self.limits.max_active_batch_jobs)  # early: no work when full
        info = await self.predictor.info.remote()  # the version the real-time path serves now
        version = info["version"]
        weights = await self.keeper.weights.remote(version, [*info["zones"], "*"])
        source = spec["path"] if spec.get("path") is not None else f"{len(spec['zones'])} windows from the request"
        if spec.get("path") is None:
            spec = {**spec, "windows": [ray.put(spec["windows"])]}
        # again, with no await until the job's status exists: concurrent submissions each see
        # the ones before them (one event loop), so the limit holds under a flood
        self._check_capacity("batch", self.limits.max_active_batch_jobs)
        status = self._new_job("batch", model_version=version, source=source,
                               scheduled=bool(spec.get("scheduled")))
        job = ray.remote(run_batch_job).options(num_cpus=0, name=f"fabray-{status['job_id']}")
        self.refs[status["job_id"]] = job.remote(
            str(self.store.root), status["job_id"], version, spec, weights, info["threshold"],
            info["models"], self.scorer, self.cfg.batch_size_windows,
        )
        return status

    async def submit_retrain(self, body: dict) -> dict:
        import ray

        from fabray.serve.retrain import run_retrain_job

        data = resolve_under(body["data"], self.data_dirs, kind="file", what="retrain data")
        self._check_capacity("retrain", self.limits.max_active_retrains)
        champion = self.store.live()
        status = self._new_job("retrain", model_version=champion, source=str(data),
                               epochs=body.get("epochs"))
        job = ray.remote(run_retrain_job).options(num_cpus=0, name=f"fabray-{status['job_id']}")
        self.refs[status["job_id"]] = job.remote(
            str(self.store.root), status["job_id"], champion, str(data), body.get("epochs"),
            bool(body.get("promote", True)), self.cfg.model_dump(mode="json"), self.ensemble_cfg,
        )
        return status

    async def status(self, job_id: str) -> dict:
        import ray

        path = self.store.job_dir(job_id) / "status.json"
        status = self.store.read_json(path)
        if status is None:
            raise UnknownVersionError(f"no job {job_id!r}")
        ref = self.refs.get(job_id)
        if ref is not None and status.get("status") in ("pending", "running"):
            done, _ = ray.wait([ref], timeout=0)
            if done:
                try:
                    ray.get(done[0])
                except Exception as err:  # noqa: BLE001 - the task died before writing its status
                    logger.warning("job %s ended with %s", job_id, type(root_cause(err)).__name__)
                    status = self.store.read_json(path) or status
                    if status.get("status") in ("pending", "running"):
                        status.update(status="failed", finished_at=utc_now(),
                                      error=public_error(err, self.store.root))
                        self.store.write_json(path, status)
                self.refs.pop(job_id, None)
                status = self.store.read_json(path) or status
        return public_status(status, self.store.root)

    async def _schedule_loop(self) -> None:
        """Score the latest window of every zone of `batch_source` now and every interval."""
        while True:
            try:
                last = self._last_scheduled
                busy = last is not None and (await self.status(last)).get("status") in ("pending", "running")
                if busy:
                    logger.warning("scheduled batch %s still running: skipping this period", last)
                elif count_active(self.store, "batch") >= self.limits.max_active_batch_jobs:
                    logger.warning("%d batch jobs active: skipping this period", self.limits.max_active_batch_jobs)
                else:
                    status = await self.submit_batch({"path": self.cfg.batch_source, "scheduled": True})
                    self._last_scheduled = status["job_id"]
            except Exception:  # noqa: BLE001 - try again next period
                logger.exception("scheduled batch failed to start")
            await asyncio.sleep(self.cfg.batch_interval_s)


def public_status(status: dict, store_root: Path) -> dict:
    """A job status as clients see it: the output relative to the store, no traceback."""
    out = {k: v for k, v in status.items() if k not in ("traceback", "source")}
    output = out.get("output")
    if isinstance(output, str) and output.startswith(str(store_root) + "/"):
        out["output"] = output[len(str(store_root)) + 1:]
    return out


def data_dirs(limits: ServeLimits, cfg: ServeConfig, store_dir: str) -> list[str]:
    """The folders clients may name files in (see `serve.limits.data_dirs`)."""
    if limits.data_dirs is not None:
        return [str(Path(d).expanduser().resolve()) for d in limits.data_dirs]
    dirs = [str(Path(store_dir).expanduser().resolve().parent)]
    if cfg.batch_source:
        dirs.append(str(Path(cfg.batch_source).expanduser().resolve().parent))
    return dirs


# ---------------------------------------------------------------------------- ingress


@serve.deployment(name=INGRESS, max_ongoing_requests=2048)
@serve.ingress()
class Ingress:
    """The FastAPI front: request checks and auth (http.py), then the deployments behind it."""

    def __init__(self, store_dir: str, serve_cfg: dict, predictor: Any, keeper: Any, jobs: Any) -> None:
        self.cfg = ServeConfig.model_validate(serve_cfg)
        self.limits = self.cfg.limits
        self.data_dirs = data_dirs(self.limits, self.cfg, store_dir)
        self.store = ModelStore(store_dir)
        self.predictor, self.keeper, self.jobs = predictor, keeper, jobs
        token = load_token(self.cfg.api_token_env, self.cfg.api_token_file)
        self.settings = HttpSettings(
            max_body_bytes=self.cfg.max_body_bytes,
            max_windows_per_request=self.cfg.max_windows_per_request,
            degraded=self.cfg.degraded,
            api_token=token,
            api_token_env=self.cfg.api_token_env,
            body_read_timeout_s=self.limits.body_read_timeout_s,
            small_body_bytes=self.limits.small_body_bytes,
            max_observe_rows=self.cfg.feed.max_rows,
        )
        self._meta: Optional[dict] = None
        self._meta_at = 0.0
        self._requests = _metric("Counter", "fabray_http_requests", "HTTP requests.", ("route", "status"))
        self._latency = _metric("Histogram", "fabray_http_latency_ms", "HTTP latency, ms.", ("route",),
                                boundaries=[1, 2, 5, 10, 20, 40, 80, 160, 320, 640, 1280])
        logger.info("fabray ingress: mutating endpoints %s", "enabled" if token else "disabled (no token)")

    def __serve_build_asgi_app__(self) -> Any:
        return build_http_app(self)

    def observe(self, route: str, status: int, seconds: float) -> None:
        _record(self._requests, "inc", 1, {"route": route, "status": str(status)})
        _record(self._latency, "observe", 1000.0 * seconds, {"route": route})

    async def _call(self, response: Any) -> Any:
        """Await a handle call: bad input stays bad input; a dead or overloaded backend is 503."""
        try:
            return await response
        except Exception as err:  # noqa: BLE001 - RayTaskError(cause), RayActorError, BackPressureError, ...
            cause = root_cause(err)  # Ray wraps a remote error with its traceback, pid and node
            if isinstance(cause, (BadInputError, ApiError)):
                raise cause from None
            logger.warning("backend call failed: %s: %s", type(err).__name__, err)
            raise Unavailable(f"backend unavailable, retry ({type(cause).__name__})") from None

    async def meta(self) -> dict:
        now = time.monotonic()
        if self._meta is None or now - self._meta_at > self.cfg.model_poll_interval_s:
            self._meta = await self._call(self.predictor.info.remote())
            self._meta_at = now
        return self._meta

    async def predict(self, zones: list, windows: np.ndarray, reasons: list) -> list:
        answers = await self._call(self.predictor.predict.remote(
            {"zones": zones, "windows": windows, "reasons": reasons}))
        if answers and self._meta is not None and answers[-1].get("model_version") != self._meta["version"]:
            self._meta = None  # a swap happened: refresh the zones and shape on the next call
        return answers

    async def feedback(self, items: list) -> dict:
        return await self._call(self.keeper.feedback.remote(items))

    async def observe_feed(self, rows: list) -> dict:
        meta = await self.meta()
        return await self._call(self.keeper.observe.remote(rows, meta))

    async def alerts(self, zone: Optional[str], status: Optional[str], limit: int) -> dict:
        return await self._call(self.keeper.alerts.remote(zone, status, limit))

    async def weight_history(self, zone: Optional[str], limit: int) -> dict:
        meta = await self.meta()
        if zone is not None and zone not in meta["zones"]:
            raise ApiError(404, f"unknown zone {zone!r}; model version {meta['version']} knows {meta['zones']}")
        return await self._call(self.keeper.weight_history.remote(meta["version"], meta["zones"], zone, limit))

    async def feed_status(self) -> dict:
        return await self._call(self.keeper.feed_status.remote())

    async def models(self) -> dict:
        pointer = self.store.pointer()
        serving = await self._call(self.predictor.info.remote())
        versions = []
        for version in self.store.versions():
            try:
                info = self.store.info(version)
            except BadInputError as err:  # one damaged VERSION.json hides nothing else
                versions.append({"version": version, "state": "damaged", "error": public_error(err, self.store.root)})
                continue
            notes = info.get("notes", {})
            state = ("live" if version == pointer.get("live") else
                     "refused" if version in serving.get("refused", {}) or notes.get("refused") else
                     "previous" if version in pointer.get("history", []) else "available")
            versions.append({
                "version": version, "state": state, "created_at": info.get("created_at"),
                "run_id": info.get("run_id"), "source_run": Path(info.get("source_run") or "").name or None,
                "note": info.get("note"),
                "models": info.get("models"),
                "notes": {k: redact_paths(v) if isinstance(v, str) else v for k, v in notes.items()},
            })
        return {
            "live": pointer.get("live"),
            "history": pointer.get("history", []),
            "serving": {**{k: serving[k] for k in ("version", "run_id", "models", "zones", "lookback", "task",
                                                   "threshold", "replica")},
                        "refused": {v: redact_paths(str(m)) for v, m in serving.get("refused", {}).items()}},
            "ensemble": await self._call(self.keeper.describe.remote()),
            "versions": versions,
            "events": [{**e, "reason": redact_paths(str(e.get("reason") or ""))} for e in pointer.get("events", [])[-10:]],
        }

    async def import_run(self, body: ImportIn) -> dict:
        run = resolve_under(body.run, self.data_dirs, kind="dir", what="run")
        try:
            version = await asyncio.to_thread(self.store.import_run, run, body.note or None)
        except OSError as err:  # unreadable files, a full disk: the client cannot fix it, nor is it a bug
            logger.warning("import of %s failed: %s", run, err)
            raise Unavailable(f"the run could not be copied into the store ({type(err).__name__}); retry") from None
        out = {"version": version, "promoted": False}
        if body.promote:
            out.update(await self.promote(version, PromoteIn(force=body.force, reason=body.note or "imported")))
            out["promoted"] = True
        return out

    async def promote(self, version: str, body: PromoteIn) -> dict:
        from fabray.serve.bundle import contract_change

        await asyncio.to_thread(self.store.verify, version)  # damaged → 409 before any load
        live_meta = await self.meta()
        try:
            new_meta = await self._call(self.predictor.prepare.remote(version))
        except BadInputError as err:
            await asyncio.to_thread(self.store.mark, version, refused=str(err))
            raise ApiError(409, f"refused: version {version} cannot be served: {err}") from err
        changes = contract_change(live_meta, new_meta)
        if changes and not body.force:
            raise ApiError(409, f"refused: version {version} changes the request contract ({'; '.join(changes)}); "
                                "promote with force=true once clients send the new shape")
        pointer = await asyncio.to_thread(self.store.promote, version, body.reason)
        await self._call(self.predictor.refresh.remote())
        self._meta = None
        return {"live": pointer["live"], "history": pointer.get("history", [])}

    async def rollback(self, body: RollbackIn) -> dict:
        pointer = await asyncio.to_thread(self.store.rollback, body.reason)
        await self._call(self.predictor.refresh.remote())
        self._meta = None
        return {"live": pointer["live"], "history": pointer.get("history", [])}

    async def submit_batch(self, body: BatchIn, windows: Optional[np.ndarray], reasons: Optional[list]) -> dict:
        if windows is not None:
            spec = {"zones": [w.zone for w in body.windows], "windows": windows,
                    "degraded": [bool(r) for r in reasons]}
        else:
            spec = {"path": body.path, "all_windows": body.all_windows}
        return await self._call(self.jobs.submit_batch.remote(spec))

    async def submit_retrain(self, body: RetrainIn) -> dict:
        return await self._call(self.jobs.submit_retrain.remote(body.model_dump()))

    async def job(self, job_id: str) -> dict:
        return await self._call(self.jobs.status.remote(job_id))

    async def health(self) -> tuple:
        try:
            info = await asyncio.wait_for(self.predictor.info.remote(), timeout=5.0)
        except Exception as err:  # noqa: BLE001 - unhealthy, not an error
            return False, {"status": "unavailable", "error": f"predictor not answering ({type(root_cause(err)).__name__})",
                           "live": self.store.live()}
        live = self.store.live()
        return True, {
            "status": "ok" if info["version"] == live else "degraded",
            "live": live, "serving": info["version"],
            "refused": {v: redact_paths(str(m)) for v, m in info.get("refused", {}).items()},
            "mutations_enabled": self.settings.api_token is not None,
        }


# ---------------------------------------------------------------------------- builder


def resolve_config(args: ServeArgs) -> tuple[ServeConfig, EnsembleConfig]:
    config = load_config(args.config)
    try:
        serve_cfg = ServeConfig.model_validate({**config.serve.model_dump(), **args.serve})
    except Exception as err:  # noqa: BLE001 - pydantic ValidationError
        raise BadInputError(f"invalid serve settings: {err}") from err
    return serve_cfg, config.ensemble


def build_app(args: ServeArgs) -> Application:
    """The fabray Serve application over the store `args.store` (importing and promoting
    `args.run` first when given)."""
    if not isinstance(args, ServeArgs):
        args = ServeArgs.model_validate(args)
    serve_cfg, ensemble_cfg = resolve_config(args)
    store = ModelStore(args.store)
    if args.run:
        before = set(store.versions())
        version = store.import_run(args.run)
        live = store.live()
        if live is None or (live != version and args.promote_run == "always" and version not in before):
            store.promote(version, reason=f"serve --run {Path(args.run).name}")
        elif live != version:  # a restart with the same run: promotions made since stand
            logger.warning("run %s is stored as %s; %s, promoted since, stays live (promote %s "
                           "explicitly to serve it again)", args.run, version, live, version)
    if store.live() is None:
        raise BadInputError(f"the model store {store.root} has no live version: pass a run to serve")
    store.ensure_intact_live()  # a damaged live version: the newest intact one, or a clear error
    cfg = serve_cfg.model_dump(mode="json")
    ens = ensemble_cfg.model_dump(mode="json")
    root = str(store.root)
    logs = {"logging_config": {"enable_access_log": serve_cfg.access_log}}

    keeper = EnsembleKeeperDeployment.options(ray_actor_options={"num_cpus": 0.05}, **logs).bind(
        root, serve_cfg.state_persist_interval_s, serve_cfg.pending_predictions, cfg)
    if serve_cfg.autoscaling is not None:
        scaling = {"autoscaling_config": {
            "min_replicas": serve_cfg.autoscaling.min_replicas,
            "max_replicas": serve_cfg.autoscaling.max_replicas,
            "target_ongoing_requests": serve_cfg.autoscaling.target_ongoing_requests,
        }}
    else:
        scaling = {"num_replicas": serve_cfg.predictor_replicas}
    predictor = PredictorDeployment.options(
        max_ongoing_requests=serve_cfg.max_ongoing_requests,
        ray_actor_options={"num_cpus": serve_cfg.predictor_num_cpus},
        health_check_period_s=5.0,
        **scaling, **logs,
    ).bind(root, ens, cfg, keeper)
    scorer = PredictorDeployment.options(  # the same class, warm, kept apart from real-time traffic
        name=BATCH_SCORER, num_replicas=1, max_ongoing_requests=8,
        ray_actor_options={"num_cpus": serve_cfg.batch_num_cpus}, health_check_period_s=10.0, **logs,
    ).bind(root, ens, cfg, keeper)
    jobs = JobManagerDeployment.options(ray_actor_options={"num_cpus": 0.05}, **logs).bind(
        root, cfg, ens, keeper, predictor, scorer)
    return Ingress.options(ray_actor_options={"num_cpus": serve_cfg.ingress_num_cpus},
                           max_ongoing_requests=serve_cfg.limits.ingress_max_ongoing_requests, **logs).bind(
        root, cfg, predictor, keeper, jobs)


def default_store(run: str | Path) -> Path:
    """`serve-store` next to the run directory (shared by the runs of one folder)."""
    return Path(run).expanduser().resolve().parent / "serve-store"
