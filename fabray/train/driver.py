"""`fabray train`: every selected model trains concurrently, each as its own Ray Train
`TensorflowTrainer` with ONE worker, and lands in a run directory with a manifest (DESIGN §4).

Why threads and not a Tune `Tuner` over the model names (both work here, DESIGN §10): a thread
per model calling `trainer.fit()` costs no Tune trial actor (one TensorFlow-importing process
less per model, ~1–1.5 GB each), each model's success or failure arrives as its own return value
or exception, and the run directory stays ours (no Tune experiment layout around Ray Train's).
Train V2's controller actor takes no CPU and runs on the driver's node, so N threads mean N
controllers + N workers; the pool's size (`resources.plan_concurrency`) keeps `reserve_cpus`
free for Ray Data. Progress comes back through a `UserCallback` per trainer (`progress.py`).

Order of work, so that bad input fails before anything is written: read and validate the data,
prepare windows, check models and overrides (`fabray.train.prepare`: each is built once there,
so bad overrides are exit 2, not a worker crash after retries), plan resources; only then create
the run directory. Each model lands (`fabray.train.landing`: best checkpoint copied, history,
preprocessing, config) as soon as it finishes, and the manifest is rewritten atomically after
each landing, listing only files that exist.

The same driver runs `fabray retrain` (`fabray.train.retrain`): a `PreparedRun` may carry its
own `TrainSeries` (new data + replay), parent models to warm-start from, and a deadline. The
landed `model.keras` is always float32 (`precision.float32_copy` when a worker trained under
mixed_float16), so any machine can load it for inference; the Ray checkpoints keep the policy.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fabray.config import FabrayConfig
from fabray.files import atomic_write_json, utc_now
from fabray import run as rd
from fabray.models.gbt import GBT
from fabray.train.budget import budget_summary, model_deadline
from fabray.train.gbt_task import train_gbt_member
from fabray.train.landing import SharedRun, carry_over, land
from fabray.train.spec import SCORE, WorkerSpec
from fabray.train.prepare import PreparedRun, prepare_run
from fabray.train.sampling import EVENT_CUT, validation_sample
from fabray.train.resources import plan_concurrency, plan_resources, resolve_use_gpu

logger = logging.getLogger(__name__)

SUMMARY_METRICS = {"event": ("pr_auc", "f1", "accuracy")}


@dataclass
class RunSummary:
    """What a finished `train_models` call produced."""

    run_dir: Path
    manifest: dict[str, Any]
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def table(self) -> str:
        """A fixed-width table: one row per model."""
        task = self.manifest["task"]["task"]
        metrics = SUMMARY_METRICS[task]
        header = ["model", "status", "epochs", "best", *[f"val_{m}" for m in metrics], "params", "seconds"]
        rows = [header]
        for name, entry in self.manifest["models"].items():
            vals = entry.get("val_metrics") or {}
            rows.append([
                name,
                entry["status"],
                str(entry.get("epochs_run", "—")),
                str(entry.get("best_epoch", "—")),
                *[_fmt(vals.get(m)) for m in metrics],
                f"{entry['params']:,}" if entry.get("params") is not None else "—",
                _fmt(entry.get("train_seconds"), 1),
            ])
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        by_budget = [n for n, e in self.manifest["models"].items() if e.get("stopped_by_budget")]
        if by_budget:
            lines.append(f"stopped by the time budget: {', '.join(by_budget)}")
        for name in self.failed:
            lines.append(f"{name} failed: {self.manifest['models'][name].get('error', '?').splitlines()[0]}")
        return "\n".join(lines)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------------- one model


def _spec(name: str, shared: SharedRun, deadline_unix: float | None = None) -> WorkerSpec:
    """`deadline_unix`: this model's share of the budget (`fabray.train.budget.model_deadline`)."""
    cfg, train = shared.config, shared.config.train
    return WorkerSpec(
        model=name,
        overrides=dict(shared.overrides[name]),
        task=cfg.task.task,
        lookback=cfg.task.lookback,
        n_features=int(shared.prepared.features.shape[1]),
        epochs=train.epochs,
        batch_size=train.batch_size,
        learning_rate=train.learning_rate,
        patience=train.early_stopping_patience,
        precision=train.precision,
        shuffle_buffer=train.shuffle_buffer,
        event_threshold=train.event_threshold,
        seed=train.seed,
        cpus=shared.plan[name].cpus,
        deadline_unix=deadline_unix,
        tensorboard_dir=str(rd.model_dir(shared.run, name) / "tensorboard"),
        windows_per_epoch=train.windows_per_epoch,
        epoch_fraction=train.epoch_fraction,
        scaler=shared.prepared.scaler.to_dict(),
    )


def _fit(name: str, shared: SharedRun, deadline_unix: float | None = None) -> Any:
    """Build and fit the model's single-worker TensorflowTrainer; returns its Result."""
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer

    from fabray.train.backend import TensorflowBackendConfig
    from fabray.train.loop import train_loop_per_worker
    from fabray.train.ray_windows import window_index_dataset

    train, res = shared.config.train, shared.plan[name]
    trainer = TensorflowTrainer(
        train_loop_per_worker,
        tensorflow_config=TensorflowBackendConfig(),  # Ray's own imports TensorFlow in the controller
        train_loop_config={
            "spec": _spec(name, shared, deadline_unix).to_dict(),
            "arrays": shared.array_refs,
            "init_model": [shared.init_refs[name]] if name in shared.init_refs else None,
        },
        scaling_config=ScalingConfig(
            num_workers=1, use_gpu=res.use_gpu, resources_per_worker=res.ray_resources()
        ),
        run_config=RunConfig(
            name=name,  # unique within the run's storage path
            storage_path=str(shared.run / "ray"),
            failure_config=FailureConfig(max_failures=train.max_failures),
            checkpoint_config=CheckpointConfig(
                num_to_keep=train.checkpoints_to_keep,
                checkpoint_score_attribute=SCORE,
                checkpoint_score_order="max",
            ),
            callbacks=[shared.monitor.callback(name)],
            logging_config=LoggingConfig(log_level="WARNING"),  # progress comes from our callback
        ),
        datasets={"train": window_index_dataset(shared.train_ends, seed=train.seed)},
    )
    return trainer.fit()


def _run_threads(names: Sequence[str], work: Any, concurrency: int) -> None:
    """`work(name)` for every name, `concurrency` at a time, in order, on daemon threads.

    Daemon threads (not a ThreadPoolExecutor, whose threads the interpreter joins at exit): after
    Ctrl-C a thread still blocked in `trainer.fit()` must not keep the process alive.
    """
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for name in names:
        todo.put(name)
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            try:
                name = todo.get_nowait()
            except queue.Empty:
                return
            work(name)

    threads = [threading.Thread(target=worker, name=f"fabray-train-{i}", daemon=True)
               for i in range(min(concurrency, len(names)))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.5)  # short joins: Ctrl-C reaches the main thread
    except BaseException:
        stop.set()
        raise


def train_models(
    data: str | Path | PreparedRun,
    out: str | Path | None = None,
    config: FabrayConfig | None = None,
    *,
    can_autoscale: bool = False,
    on_report: Any = None,
) -> RunSummary:
    """Train `config.train.models` on the data file concurrently on the current Ray cluster.

    `data` is a data file (then `out` and `config` are required) or a `prepare_run` result. Ray
    must already be initialized (see `fabray.ray_session.ray_session`). Bad input (data file,
    models, overrides, resources, an existing non-empty `out`) raises BadInputError before
    anything is written. A model that fails is recorded as failed; the others still land.
    `on_report(item)`: called with every epoch report (see `progress.ProgressMonitor`).
    """
    import ray
    import ray.data

    from fabray.train.progress import ProgressMonitor
    from fabray.train.ray_windows import put_series

    if not ray.is_initialized():
        raise RuntimeError("train_models needs Ray: call it inside fabray.ray_session.ray_session()")
    if isinstance(data, PreparedRun):
        job = data
    else:
        if out is None or config is None:
            raise TypeError("train_models(data_path, out, config): out and config are required")
        job = prepare_run(data, out, config)
    config, prepared, train = job.config, job.prepared, job.config.train
    names = list(train.models)
    cluster = ray.cluster_resources()
    use_gpu = resolve_use_gpu(train.use_gpu, float(cluster.get("GPU", 0.0)), can_autoscale=can_autoscale)
    plan = plan_resources(names, train, use_gpu=use_gpu)
    concurrency = plan_concurrency(
        plan, cluster, reserve_cpus=train.reserve_cpus, max_concurrent=train.max_concurrent,
        can_autoscale=can_autoscale,
    )

    run = rd.create_run_dir(job.out)
    atomic_write_json(run / "config.json", config.model_dump(mode="json"))
    manifest: dict[str, Any] = {
        "format": rd.MANIFEST_FORMAT,
        "format_version": rd.MANIFEST_VERSION,
        "run_id": run.name,
        "status": "running",
        "created_at": utc_now(),
        "finished_at": None,
        "code": rd.code_version(),
        "versions": rd.library_versions(),
        "data": job.data_info,
        "config": "config.json",
        "task": config.task.model_dump(),
        "cluster": {"resources": {k: float(v) for k, v in cluster.items() if k in ("CPU", "GPU", "memory")},
                    "use_gpu": use_gpu, "concurrent_trainers": concurrency},
        "models": {n: {"status": "pending", "params": job.params[n]} for n in names},
        **job.manifest_extra,
    }
    lock = threading.Lock()
    with lock:
        rd.write_manifest(run, manifest)
    logger.info("training %s in %s: %d at a time, %s each", names, run, concurrency,
                {n: r.ray_resources() for n, r in plan.items()})

    series = job.train_series()
    val_ends = validation_sample(series.val_ends, series.target, EVENT_CUT, train.val_windows,
                                 train.seed)
    if len(val_ends) < len(series.val_ends):
        manifest["validation_windows"] = {"scored": int(len(val_ends)), "of": int(len(series.val_ends))}
        logger.info("epochs scored on %d of %d validation windows (train.val_windows)",
                    len(val_ends), len(series.val_ends))
    array_refs = [*put_series(series.features, series.target), ray.put(val_ends)]
    if train.windows_per_epoch is not None or train.epoch_fraction is not None:
        array_refs.append(ray.put(np.asarray(series.train_ends, dtype=np.int64)))  # sampled epochs
    # The budget: a retrain's own deadline, else `train.budget_min` from now; each model gets its
    # share when it starts (fabray.train.budget).
    budget_started = time.time()
    run_deadline = job.deadline_unix
    if run_deadline is None and train.budget_min is not None:
        run_deadline = budget_started + 60.0 * train.budget_min
        manifest["budget"] = {"minutes": train.budget_min, "deadline_at": utc_now(run_deadline)}
    not_started = [n for n in names if n not in job.carry_models]  # models that will train
    init_refs = {n: ray.put(path.read_bytes()) for n, path in job.warm_start.items() if n in names}
    ray.data.DataContext.get_current().enable_progress_bars = False  # per-epoch lines instead

    def one(name: str) -> None:
        started = time.perf_counter()
        with lock:
            manifest["models"][name].update(status="running", started_at=utc_now())
            deadline = None
            if name in not_started:
                deadline = model_deadline(time.time(), run_deadline, len(not_started), concurrency)
                not_started.remove(name)
            if deadline is not None:
                manifest["models"][name].update(budget_share_s=round(deadline - time.time(), 1),
                                                deadline_at=utc_now(deadline))
        try:
            if name == GBT:  # LightGBM: one Ray task, refitted even in a retrain (fabray.train.gbt_task)
                entry = train_gbt_member(shared, started)
            elif name in job.carry_models:
                entry = carry_over(name, shared, "not selected for this retrain")
            elif run_deadline is not None and time.time() >= run_deadline:
                if not (job.carry_over and name in job.warm_start):
                    raise RuntimeError("the time budget was spent before this model could start")
                entry = carry_over(name, shared, "time budget spent before it started")
            else:
                result = _fit(name, shared, deadline)
                entry = land(name, shared, result, started)
        except Exception as err:  # noqa: BLE001 - one model's failure must not stop the others
            logger.error("%s failed: %s", name, err)
            logger.debug("%s", traceback.format_exc())
            reports = monitor.reports.get(name, [])
            entry = {
                "status": "failed",
                "error": f"{type(err).__name__}: {err}"[:4000],
                "epochs_run": max((r.get("epoch", 0) for r in reports), default=0),
                "train_seconds": round(time.perf_counter() - started, 2),
                "finished_at": utc_now(),
            }
        with lock:
            manifest["models"][name] = {**manifest["models"][name], **entry}
            rd.write_manifest(run, manifest)

    with ProgressMonitor(on_report=on_report) as monitor:
        shared = SharedRun(run, config, prepared, array_refs, series.train_ends, plan,
                         job.params, job.overrides, monitor, init_refs=init_refs,
                         warm_start=dict(job.warm_start), deadline_unix=job.deadline_unix)
        try:
            _run_threads(names, one, concurrency)
        except KeyboardInterrupt:
            # No waiting for the running trainers: the caller's ray.shutdown() ends them.
            with lock:
                manifest.update(status="interrupted", finished_at=utc_now())
                rd.write_manifest(run, manifest)
            raise

    failed = [n for n, e in manifest["models"].items() if e["status"] != "ok"]
    with lock:
        manifest["status"] = "complete" if not failed else ("failed" if len(failed) == len(names) else "partial")
        manifest["finished_at"] = utc_now()
        if job.deadline_unix is None and train.budget_min is not None:
            manifest["budget"] = budget_summary(train.budget_min, budget_started, time.time(), manifest["models"])
        rd.write_manifest(run, manifest)
    summary = RunSummary(run_dir=run, manifest=manifest, failed=failed)
    logger.info("run %s: %s (%d of %d models failed)", run, manifest["status"], len(failed), len(names))
    if config.tracking.mlflow_uri:
        from fabray.tracking import track_training_run

        track_training_run(run, config)  # MLflow: parent run + one child per model
    return summary
