"""The Predictor deployment: every model of the live version, N replicas; `@serve.batch` groups
concurrent windows into one model call per model; the EnsembleKeeper combines the scores.

The BatchScorer is this class again (`build_app` binds it under BATCH_SCORER), warm, apart from
the real-time replicas: the batch jobs' Ray Data tasks call it. Each replica polls the store's
LIVE.json and swaps its in-memory bundle between two batches.
"""

import asyncio
import logging
import os
from typing import Any

import numpy as np
from ray import serve

from fabray import schema
from fabray.config import EnsembleConfig, ServeConfig
from fabray.errors import BadInputError
from fabray.serve.deployments.metrics import _metric, _record
from fabray.serve.store import ModelStore

logger = logging.getLogger(__name__)

PREDICTOR = "Predictor"
BATCH_SCORER = "BatchScorer"


def _count_windows(items: list) -> int:
    return sum(len(item["zones"]) for item in items)


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
        fits = [schema.window_shape_problem(item["windows"].shape, *expected, batch=True) is None for item in items]
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
        last_rows = windows[:, -1, :]  # [B, F] last minutes, raw: the learned gate's context
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
    fired = bundle.predictor.rule_activations(windows)  # raw [K, L, F] → (names, [K, R])
    if fired is None:
        return [[] for _ in windows]
    names, activations = fired
    return [[{"rule": names[r], "activation": round(float(row[r]), 3)}
             for r in np.argsort(-row) if row[r] >= 0.5] for row in activations]
