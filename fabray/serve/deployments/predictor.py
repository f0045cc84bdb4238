"""The Predictor deployment: the application's HTTP ingress AND the live version's models, N
replicas (issue 13, item 5: one hop, one call); and the BatchScorer, the same models warm for
batch jobs.

    HTTP proxy ──▶ Predictor replica: FastAPI (checks, auth: ingress.py's HttpFront), the zoo in
                   one compiled call (@serve.batch groups concurrent windows), the deadline
                   (deadline.py), the ensemble combined with the replica's local copy of the
                   keeper's weights (local_ensemble.py); the pending prediction is queued for
                   the keeper and sent in the background, never awaited by the request.

So /v1/predict makes no second Serve hop. The other routes stay composed: /v1/feedback,
/v1/observe, /v1/alerts, /v1/weights, /v1/feed go on to the EnsembleKeeper, the jobs to the
JobManager; the keeper's live feed scores its windows through `score_raw` here and combines them
with its own (authoritative) weights.

Each replica polls the store's LIVE.json and swaps its in-memory bundle between two batches.
The BatchScorer (`ModelHost` without the HTTP front) is called by the batch jobs' Ray Data tasks.

Why one file of ~430 lines: `ModelHost` (loading, swaps, scoring) and the two deployments built
on it share the replica's state (bundles, the batch queue, the lane timer); the pure parts live
beside it (`deadline.py`, `local_ensemble.py`, `answers.py`).
"""

import asyncio
import logging
import os
import time
from typing import Any, Optional

import numpy as np
from ray import serve

from fabray import schema
from fabray.config import EnsembleConfig, ServeConfig
from fabray.errors import BadInputError
from fabray.serve.answers import ScoredBatch, answer
from fabray.serve.deadline import ZooLane
from fabray.serve.deployments import BATCH_SCORER, PREDICTOR
from fabray.serve.deployments.ingress import HttpFront
from fabray.serve.deployments.metrics import _metric, _record
from fabray.serve.local_ensemble import LocalEnsembles
from fabray.serve.store import ModelStore

logger = logging.getLogger(__name__)

__all__ = ["BATCH_SCORER", "PREDICTOR", "BatchScorerDeployment", "ModelHost", "PredictorDeployment"]


def _count_windows(items: list) -> int:
    return sum(len(item["zones"]) for item in items)


class ModelHost:
    """The models of the live version (and the previous and a candidate one): loading, hot
    swaps on promotion, scoring; shared by the Predictor and the BatchScorer."""

    async def _init_models(self, store_dir: str, ensemble_cfg: dict, serve_cfg: dict, keeper: Any) -> None:
        self.cfg = ServeConfig.model_validate(serve_cfg)
        # before TensorFlow is imported (it is, lazily, by the first load below)
        os.environ["OMP_NUM_THREADS"] = str(self.cfg.model_threads or os.cpu_count() or 1)
        self.ensemble_cfg = EnsembleConfig.model_validate(ensemble_cfg)
        self.store = ModelStore(store_dir)
        self.keeper = keeper
        self.bundle = None
        self._bundles: dict[str, Any] = {}  # version → ServingBundle: live, previous, candidate
        self._metas: dict[str, dict] = {}
        self.refused: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self.stats = {"batches": 0, "windows": 0, "largest_batch": 0}
        self._version_gauge = _metric("Gauge", "fabray_model_version", "Store version number served by the replica.")

    # ------------------------------------------------------------------ loading and swapping

    async def _load(self, version: str) -> Any:
        from fabray.serve.bundle import ServingBundle

        bundle = await asyncio.to_thread(ServingBundle.load, self.store, version, self.ensemble_cfg)
        await self._loaded(bundle)
        return bundle

    async def _loaded(self, bundle: Any) -> None:
        """A hook: what a replica does with a freshly loaded version before using it."""

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
        self._metas = {v: m for v, m in self._metas.items() if v in keep}
        _record(self._version_gauge, "set", int(bundle.version[1:]))
        if previous is not None and previous.version != bundle.version:
            logger.info("hot swap %s → %s", previous.version, bundle.version)

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.model_poll_interval_s)
            try:
                await self._follow_live()
            except Exception:  # noqa: BLE001 - keep serving what we have
                logger.exception("checking the store for a new live version failed")

    async def refresh(self) -> dict:
        """Swap to the store's live version if it is not the one served (and not refused); the
        replica's info."""
        await self._follow_live()
        return await self.info()

    async def _follow_live(self) -> None:
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

    def _meta_of(self, bundle: Any) -> dict:
        meta = self._metas.get(bundle.version)
        if meta is None:
            meta = bundle.meta()
            meta["horizon"] = bundle.predictor.horizon  # the live feed derives outcomes with it
            meta["scaler"] = bundle.predictor.scaler.to_dict()  # the feed monitor's training statistics
            self._metas[bundle.version] = meta
        return meta

    async def meta(self) -> dict:
        """The served version's request contract (http.py checks requests against it)."""
        return self._meta_of(self.bundle)

    async def info(self) -> dict:
        meta = dict(self._meta_of(self.bundle))
        meta["refused"] = dict(self.refused)
        meta["batching"] = dict(self.stats)
        meta["replica"] = serve.get_replica_context().replica_id.unique_id
        return meta

    async def rules_fired(self, windows: np.ndarray) -> list:
        """The rules of the served rules model that fire on raw windows [K, L, F]: per window
        [{"rule", "activation"}] with activation >= 0.5, strongest first."""
        bundle = self.bundle
        _, fired = await asyncio.to_thread(bundle.score_fast, windows)
        return bundle.rules_fired(fired)

    def check_health(self) -> None:
        if self.bundle is None:
            raise RuntimeError("no model version loaded")

    async def score_batch(self, version: str, windows: np.ndarray) -> dict:
        """Batch jobs: scores of raw windows [B, L, F] by `version`, the version the job pinned:
        {"scores": [B, M], "rules": [B]}."""
        bundle = self._bundles.get(version)
        if bundle is None:
            await self.prepare(version)
            bundle = self._bundles[version]
        scores, rules = await asyncio.to_thread(bundle.score, windows)
        self.stats["batches"] += 1
        self.stats["windows"] += len(rules)
        return {"scores": scores, "rules": rules, "models": list(bundle.model_names)}


@serve.deployment(name=BATCH_SCORER)
class BatchScorerDeployment(ModelHost):
    """The live version's models, warm, apart from the real-time replicas (batch jobs)."""

    async def __init__(self, store_dir: str, ensemble_cfg: dict, serve_cfg: dict) -> None:
        await self._init_models(store_dir, ensemble_cfg, serve_cfg, None)
        await self._load_first()
        self._poller = asyncio.create_task(self._poll_loop())


@serve.deployment(name=PREDICTOR)
@serve.ingress()
class PredictorDeployment(ModelHost, HttpFront):
    """The HTTP front and the models: validates, scores and combines /v1/predict in-process."""

    async def __init__(self, store_dir: str, ensemble_cfg: dict, serve_cfg: dict, keeper: Any, jobs: Any) -> None:
        await self._init_models(store_dir, ensemble_cfg, serve_cfg, keeper)
        self._init_front(store_dir, jobs)
        self.local = LocalEnsembles(self.cfg.pending_predictions)
        self._lanes: dict[str, ZooLane] = {}
        self._in_flight = 0  # requests being scored or queued on this replica
        self._flush_lock = asyncio.Lock()
        self._pending_event = asyncio.Event()
        self._scored = _metric("Counter", "fabray_windows_scored", "Windows scored.", ("degraded",))
        self._batch_windows = _metric("Histogram", "fabray_batch_windows", "Windows per model call.",
                                      boundaries=[1, 2, 4, 8, 16, 32, 64, 128, 256])
        self._score.set_max_batch_size(self.cfg.max_batch_size)
        self._score.set_batch_wait_timeout_s(self.cfg.batch_wait_timeout_s)
        await self._load_first()
        self._poller = asyncio.create_task(self._poll_loop())
        self._syncer = asyncio.create_task(self._sync_loop())
        self._flusher = asyncio.create_task(self._flush_loop())

    # ------------------------------------------------------------------ the ensemble's copy

    async def _loaded(self, bundle: Any) -> None:
        await self.keeper.ensure.remote(bundle.version, bundle.fitted_state, bundle.ensemble_params,
                                        list(bundle.model_names))
        self._lanes[bundle.version] = ZooLane(bundle.score_full, bundle.score_fast,
                                              bundle.full_seconds, bundle.fast_seconds)
        await self._sync(bundle.version, bundle)

    async def _sync(self, version: str, bundle: Any = None) -> None:
        """Bring the local copy of `version`'s ensemble up to the keeper's (handing the keeper
        the version first if it lacks it: a restarted keeper)."""
        epoch, generation = self.local.known(version)
        reply = await self.keeper.sync.remote(version, epoch, generation)
        if reply["status"] == "missing":
            bundle = bundle or self._bundles.get(version)
            if bundle is None:
                return
            await self.keeper.ensure.remote(version, bundle.fitted_state, bundle.ensemble_params,
                                            list(bundle.model_names))
            reply = await self.keeper.sync.remote(version, epoch, generation)
        self.local.apply(version, reply)

    async def sync_ensembles(self) -> None:
        """Every served version's copy, now (after this replica forwarded outcomes)."""
        for version in list(self._bundles):
            try:
                await self._sync(version)
            except Exception as err:  # noqa: BLE001 - the periodic sync tries again
                logger.warning("syncing the ensemble of %s failed: %s", version, err)

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.ensemble_refresh_s)
            self.local.keep_only(set(self._bundles))
            self._lanes = {v: lane for v, lane in self._lanes.items() if v in self._bundles}
            await self.sync_ensembles()

    async def ensure_ensemble(self) -> None:
        """Hand the served version's ensemble to the keeper (a restarted keeper asks)."""
        bundle = self.bundle
        await self.keeper.ensure.remote(bundle.version, bundle.fitted_state, bundle.ensemble_params,
                                        list(bundle.model_names))

    # ------------------------------------------------------------------ pending predictions

    async def flush_pending(self) -> None:
        """Send the queued pending predictions to the keeper (put back if it fails)."""
        async with self._flush_lock:
            records = self.local.queue.take()
            if not records:
                return
            try:
                await self.keeper.record.remote(records)
            except Exception:
                self.local.queue.put_back(records)
                raise

    async def _flush_loop(self) -> None:
        while True:
            await self._pending_event.wait()
            self._pending_event.clear()
            try:
                await self.flush_pending()
            except Exception as err:  # noqa: BLE001 - kept queued; try again shortly
                logger.warning("sending %d pending predictions to the keeper failed (retrying): %s",
                               len(self.local.queue), err)
                await asyncio.sleep(0.5)
                self._pending_event.set()

    def _combine(self, version: str, *args: Any) -> list:
        out = self.local.combine(version, *args)
        self._pending_event.set()  # the flusher sends them; the request does not wait
        return out

    # ------------------------------------------------------------------ scoring

    async def predict(self, zones: list, windows: np.ndarray, reasons: list, deadline_ms: Optional[float] = None,
                      started: Optional[float] = None) -> list:
        """/v1/predict: checked windows [B, L, F] float32 → B answers, within the deadline
        (`deadline_ms` from `started`, a time.monotonic(); default serve.deadline_ms from now)."""
        budget_ms = float(deadline_ms if deadline_ms is not None else self.cfg.deadline_ms)
        deadline = (started if started is not None else time.monotonic()) + budget_ms / 1000.0
        batch = await self._scores({"zones": zones, "windows": windows, "deadline": deadline})
        if batch.error is not None:
            return [{"error": batch.error}] * len(zones)
        if not self.local.has(batch.version):  # not synced yet (a keeper down since this version loaded)
            try:
                await self._sync(batch.version)
            except Exception as err:  # noqa: BLE001 - answered 503 below; the sync loop tries again
                logger.warning("no ensemble weights for %s yet: %s", batch.version, err)
            if not self.local.has(batch.version):
                return [{"error": "the ensemble weights are not loaded yet; retry"}] * len(zones)
        answers = answer(batch, zones, reasons, lambda v, *a: self._combine(v, *a), budget_ms)
        n_degraded = sum(1 for a in answers if a.get("degraded"))
        _record(self._scored, "inc", len(answers) - n_degraded, {"degraded": "false"})
        _record(self._scored, "inc", n_degraded, {"degraded": "true"})
        return answers

    async def score_raw(self, item: dict) -> ScoredBatch:
        """The live feed's windows {"zones": [B], "windows": [B, L, F]}, scored by every model
        (no deadline); the keeper combines them with its own weights."""
        return await self._scores({**item, "deadline": None})

    async def _scores(self, item: dict) -> ScoredBatch:
        """Split into pieces of at most max_batch_size windows, each joining the shared batches.
        A request alone on the replica (none other being scored or queued) skips the batch
        queue and its wait (serve.batch_wait_timeout_s): there is nothing to group it with."""
        step = self.cfg.max_batch_size
        n = len(item["zones"])
        if n <= step and self._in_flight == 0:
            self._in_flight += 1
            try:
                return (await self._score_items([item]))[0]
            finally:
                self._in_flight -= 1
        self._in_flight += 1
        try:
            return await self._queued(item, n, step)
        finally:
            self._in_flight -= 1

    async def _queued(self, item: dict, n: int, step: int) -> ScoredBatch:
        if n <= step:
            return await self._score(item)
        parts = await asyncio.gather(*(
            self._score({**item, "zones": item["zones"][i:i + step], "windows": item["windows"][i:i + step]})
            for i in range(0, n, step)
        ))
        bad = next((p for p in parts if p.error is not None or p.version != parts[0].version), None)
        if bad is not None:
            return _failed(parts[0], bad.error or "the model version changed during the request; retry")
        first = parts[0]
        return ScoredBatch(
            version=first.version, run_id=first.run_id, threshold=first.threshold, model_names=first.model_names,
            scores=np.concatenate([p.scores for p in parts]), rules=np.concatenate([p.rules for p in parts]),
            fired=[f for p in parts for f in p.fired], fast=np.concatenate([p.fast for p in parts]),
            last_rows=np.concatenate([p.last_rows for p in parts]), rules_model=first.rules_model)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002, batch_size_fn=_count_windows)
    async def _score(self, items: list) -> list:
        return await self._score_items(items)

    async def _score_items(self, items: list) -> list:
        """One zoo call for the windows of every waiting request (those the deadline lets
        through; the others by the rules model alone). Nothing here fails the group: a request
        whose windows do not fit, or a failed zoo call, gets a ScoredBatch with `error`."""
        bundle = self.bundle
        expected = (bundle.predictor.lookback, bundle.predictor.n_features)
        fits = [schema.window_shape_problem(item["windows"].shape, *expected, batch=True) is None for item in items]
        good = [item for item, ok in zip(items, fits) if ok]
        out: list = []
        scored = None
        if good:
            windows = np.concatenate([item["windows"] for item in good])  # [B, L, F]
            deadlines = [item["deadline"] for item in good for _ in item["zones"]]
            try:
                scored = await self._scored_windows(bundle, windows, deadlines)
            except Exception:  # noqa: BLE001 - answered per request, never a failed batch
                logger.exception("scoring a batch of %d requests failed", len(good))
        start = 0
        for item, ok in zip(items, fits):
            n = len(item["zones"])
            empty = _empty(bundle, n)
            if not ok:
                out.append(_failed(empty, f"windows must be {expected[0]} minutes × {expected[1]} features for "
                                          f"model version {bundle.version} (it was just swapped in); retry"))
            elif scored is None:
                out.append(_failed(empty, "the models could not score this window; retry"))
            else:
                out.append(_slice(scored, start, start + n))
                start += n
        return out

    async def _scored_windows(self, bundle: Any, windows: np.ndarray, deadlines: list) -> ScoredBatch:
        lane = self._lanes.get(bundle.version)
        if lane is None:
            lane = self._lanes[bundle.version] = ZooLane(bundle.score_full, bundle.score_fast,
                                                         bundle.full_seconds, bundle.fast_seconds)
        result = await lane.run(windows, deadlines)
        b, names = len(windows), bundle.model_names
        scores = np.full((b, len(names)), np.nan)
        rules = np.full(b, np.nan)
        fired = np.zeros((b, len(bundle.rule_names)))
        fast = np.zeros(b, dtype=bool)
        if result.full_rows:
            full_scores, full_rules, full_fired = result.full
            scores[result.full_rows], rules[result.full_rows], fired[result.full_rows] = full_scores, full_rules, full_fired
        if result.fast_rows:
            fast_rules, fast_fired = result.fast
            rules[result.fast_rows], fired[result.fast_rows] = fast_rules, fast_fired
            fast[result.fast_rows] = True
            if "rule" in names:  # the run's rule model answered: it is a member
                scores[result.fast_rows, names.index("rule")] = fast_rules
        self.stats["batches"] += 1
        self.stats["windows"] += b
        self.stats["largest_batch"] = max(self.stats["largest_batch"], b)
        _record(self._batch_windows, "observe", b)
        return ScoredBatch(version=bundle.version, run_id=bundle.run_id, threshold=bundle.threshold,
                           model_names=tuple(names), scores=scores, rules=rules, fired=bundle.rules_fired(fired),
                           fast=fast, last_rows=np.asarray(windows[:, -1, :], dtype=np.float64),
                           rules_model="rule" if "rule" in names else "the rules baseline")


def _empty(bundle: Any, n: int) -> ScoredBatch:
    names = tuple(bundle.model_names)
    return ScoredBatch(version=bundle.version, run_id=bundle.run_id, threshold=bundle.threshold, model_names=names,
                       scores=np.full((n, len(names)), np.nan), rules=np.full(n, np.nan), fired=[[] for _ in range(n)],
                       fast=np.zeros(n, dtype=bool), last_rows=np.zeros((n, 0)))


def _failed(batch: ScoredBatch, error: str) -> ScoredBatch:
    return ScoredBatch(**{**batch.__dict__, "error": error})


def _slice(batch: ScoredBatch, start: int, stop: int) -> ScoredBatch:
    return ScoredBatch(version=batch.version, run_id=batch.run_id, threshold=batch.threshold,
                       model_names=batch.model_names, scores=batch.scores[start:stop], rules=batch.rules[start:stop],
                       fired=batch.fired[start:stop], fast=batch.fast[start:stop],
                       last_rows=batch.last_rows[start:stop], rules_model=batch.rules_model)
