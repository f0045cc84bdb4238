"""The HTTP front's service (`HttpFront`): request checks in http.py, auth in http_guard.py,
errors in http_errors.py; every route but the scoring itself, which calls the EnsembleKeeper and
JobManager deployments. Not a deployment of its own since issue 13 item 5: the Predictor
deployment (predictor.py) inherits it and is the application's HTTP ingress, so /v1/predict is
validated, scored and combined in the replica the HTTP proxy hands it to (one Serve hop)."""

import asyncio
import logging
from pathlib import Path
from typing import Any, Optional

import numpy as np

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

logger = logging.getLogger(__name__)


class HttpFront:
    """The FastAPI front's service (http.py's `Service`) for every route but the scoring itself:
    the Predictor deployment (predictor.py) inherits it, so a request reaches the replica that
    scores it in one Serve hop. Expects `self.cfg`, `self.store`, `self.keeper`, `self.jobs` and
    the replica's own `meta`, `info`, `prepare`, `refresh`, `flush_pending`, `sync_ensembles`."""

    def _init_front(self, store_dir: str, jobs: Any) -> None:
        self.limits = self.cfg.limits
        self.data_dirs = data_dirs(self.limits, self.cfg, store_dir)
        self.jobs = jobs
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
        self._requests = _metric("Counter", "fabray_http_requests", "HTTP requests.", ("route", "status"))
        self._latency = _metric("Histogram", "fabray_http_latency_ms", "HTTP latency, ms.", ("route",),
                                boundaries=[1, 2, 5, 10, 20, 40, 80, 160, 320, 640, 1280])
        logger.info("fabray front: mutating endpoints %s", "enabled" if token else "disabled (no token)")

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

    async def feedback(self, items: list) -> dict:
        await self.flush_pending()  # the predictions this replica answered reach the keeper first
        out = await self._call(self.keeper.feedback.remote(items))
        await self.sync_ensembles()  # this replica's next answers use the moved weights
        return out

    async def observe_feed(self, rows: list) -> dict:
        meta = await self.meta()
        out = await self._call(self.keeper.observe.remote(rows, meta))
        await self.sync_ensembles()
        return out

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
        serving = await self.info()
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
            new_meta = await self.prepare(version)
        except BadInputError as err:
            await asyncio.to_thread(self.store.mark, version, refused=str(err))
            raise ApiError(409, f"refused: version {version} cannot be served: {err}") from err
        changes = contract_change(live_meta, new_meta)
        if changes and not body.force:
            raise ApiError(409, f"refused: version {version} changes the request contract ({'; '.join(changes)}); "
                                "promote with force=true once clients send the new shape")
        pointer = await asyncio.to_thread(self.store.promote, version, body.reason)
        await self.refresh()  # this replica at once; the others at their next poll of LIVE.json
        return {"live": pointer["live"], "history": pointer.get("history", [])}

    async def rollback(self, body: RollbackIn) -> dict:
        pointer = await asyncio.to_thread(self.store.rollback, body.reason)
        await self.refresh()
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
        info = await self.info()
        live = self.store.live()
        return True, {
            "status": "ok" if info["version"] == live else "degraded",
            "live": live, "serving": info["version"],
            "refused": {v: redact_paths(str(m)) for v, m in info.get("refused", {}).items()},
            "mutations_enabled": self.settings.api_token is not None,
        }
