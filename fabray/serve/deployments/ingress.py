"""The Ingress deployment: the FastAPI front (request checks in http.py, auth in http_guard.py,
errors in http_errors.py; no TensorFlow) calling the Predictor, EnsembleKeeper and JobManager
deployments."""

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
from ray import serve

from fabray.config import ServeConfig
from fabray.errors import BadInputError
from fabray.serve.auth import load_token
from fabray.serve.deployments.jobs import data_dirs
from fabray.serve.deployments.metrics import _metric, _record
from fabray.serve.http import build_http_app
from fabray.serve.http_errors import ApiError, Unavailable
from fabray.serve.http_guard import HttpSettings
from fabray.serve.jobs import public_error, redact_paths, root_cause
from fabray.serve.paths import resolve_under
from fabray.serve.schemas import BatchIn, ImportIn, PromoteIn, RetrainIn, RollbackIn
from fabray.serve.store import ModelStore

logger = logging.getLogger(__name__)

INGRESS = "Ingress"


@serve.deployment(name=INGRESS, max_ongoing_requests=2048)
@serve.ingress()
class Ingress:
    """The FastAPI front: request checks and auth (http.py, http_guard.py), then the deployments behind it."""

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
