"""The JobManager deployment: one replica starting batch jobs (Ray Data) and retraining (a Ray
task), tracking them and running the periodic batch scheduler; job status lives in the store
(the job records themselves: fabray/serve/jobs.py).
"""

import asyncio
import logging
from pathlib import Path
from typing import Any, Optional

from ray import serve

from fabray.config import ServeConfig, ServeLimits
from fabray.files import utc_now
from fabray.serve.deployments import PREDICTOR
from fabray.serve.http_errors import ApiError
from fabray.serve.jobs import count_active, new_job, public_error, recover_interrupted, root_cause
from fabray.serve.paths import resolve_under
from fabray.serve.store import ModelStore, UnknownVersionError

logger = logging.getLogger(__name__)

JOBS = "JobManager"


@serve.deployment(name=JOBS, num_replicas=1, max_ongoing_requests=100)
class JobManagerDeployment:
    """Starts batch and retraining jobs as Ray tasks, tracks them, runs the batch scheduler."""

    async def __init__(self, store_dir: str, serve_cfg: dict, ensemble_cfg: dict, keeper: Any, scorer: Any) -> None:
        self.cfg = ServeConfig.model_validate(serve_cfg)
        self.limits = self.cfg.limits
        self.data_dirs = data_dirs(self.limits, self.cfg, store_dir)
        self.ensemble_cfg = ensemble_cfg
        self.store = ModelStore(store_dir)
        recover_interrupted(self.store)  # jobs of an earlier instance died with it
        self.keeper = keeper
        self._predictor: Any = None  # the Predictor (the HTTP front) binds this deployment: found by name
        self.scorer = scorer  # the warm BatchScorer deployment the batch jobs' Ray Data tasks call
        self.refs: dict[str, Any] = {}
        self._last_scheduled: Optional[str] = None
        self._scheduler = asyncio.create_task(self._schedule_loop()) if self.cfg.batch_source else None

    def _predictor_handle(self) -> Any:
        if self._predictor is None:
            self._predictor = serve.get_deployment_handle(PREDICTOR)
        return self._predictor

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
        info = await self._predictor_handle().info.remote()  # the version the real-time path serves now
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
