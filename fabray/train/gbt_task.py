"""`fabray train`'s LightGBM member: fitted as ONE Ray task (CPUs from `train.resources_per_model
["gbt"]`, else `train.resources`; LightGBM's `n_jobs` = those CPUs) beside the Ray Train trainers,
on the series and windows they get (the same object refs: features, fit target, the validation
windows they score every epoch), then landed in the run like them: `models/gbt/model.txt`
(LightGBM's text format, the best iteration's trees), `history.json` (validation metrics per
boosting round), `preprocessing.json` (the run's shared preprocessing), `config.json` (the
`GBTConfig`, the `LagSpec`, the feature names), and a manifest entry with `"kind": "lightgbm"`
and the checksums of the model and config files (the predictor reads both).

Why a task and not a Ray Train trainer: boosting is one process with its own threads; Train's
worker group, checkpoints and per-epoch reports would add an actor and a TensorFlow import for
nothing. The fit itself is `fabray.models.gbt.fit_member` (pure).

In a retrain the member is refitted on the retrain's series (new data + replay): seconds, and it
never needs the parent's trees (no warm start), so it is never carried over.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from typing import Any

import numpy as np

from fabray import run as rd
from fabray.files import atomic_write_json, sha256_file, utc_now
from fabray.models.gbt import GBT, KIND, MODEL_FILE, FittedMember, LagSpec, fit_member, gbt_config
from fabray.train.landing import SharedRun, preprocessing_dict

logger = logging.getLogger(__name__)


def _fit_task(features: np.ndarray, target: np.ndarray, val_ends: np.ndarray, train_ends: np.ndarray,
              lookback: int, scaler: Any, config: Any, event_threshold: float) -> FittedMember:
    return fit_member(features, target, train_ends, val_ends, lookback, scaler, config,
                      event_threshold=event_threshold)


def fit_remote(shared: SharedRun) -> FittedMember:
    """Run the fit as a Ray task with the member's CPUs; blocks until it returns."""
    import ray

    cpus = float(shared.plan[GBT].cpus)
    cfg = gbt_config(shared.overrides[GBT], n_jobs=max(1, math.floor(cpus)), seed=shared.config.train.seed)
    features_ref, target_ref, val_ref = shared.array_refs[:3]
    task = ray.remote(_fit_task).options(num_cpus=cpus, max_retries=shared.config.train.max_failures)
    return ray.get(task.remote(features_ref, target_ref, val_ref, np.asarray(shared.train_ends, dtype=np.int64),
                               shared.config.task.lookback, shared.prepared.scaler, cfg,
                               shared.config.train.event_threshold))


def land_member(shared: SharedRun, fitted: FittedMember, started: float) -> dict[str, Any]:
    """Write the member's files and return its manifest entry."""
    out = rd.model_dir(shared.run, GBT)
    out.mkdir(parents=True, exist_ok=True)
    cfg = shared.config
    tmp = out / f".{MODEL_FILE}.tmp"
    tmp.write_text(fitted.model_text)
    tmp.replace(out / MODEL_FILE)
    spec = LagSpec(**{k: tuple(v) for k, v in fitted.spec.items()})
    atomic_write_json(out / "history.json", {"model": GBT, "best_epoch": fitted.best_iteration,
                                             "unit": "boosting round", "epochs": fitted.history})
    atomic_write_json(out / "preprocessing.json", preprocessing_dict(shared.prepared, cfg))
    atomic_write_json(out / "config.json", {
        "model": GBT,
        "kind": KIND,
        "overrides": shared.overrides[GBT],
        "gbt": fitted.config,
        "lag_spec": asdict(spec),
        "lag_features": spec.names(list(shared.prepared.scaler.features)),
        "task": cfg.task.model_dump(),
        "split": cfg.split.model_dump(),
        "train": cfg.train.model_dump(),
        "resources": {"CPU": float(shared.plan[GBT].cpus)},
    })

    def rel(file: str) -> str:
        return str((out / file).relative_to(shared.run))

    return {
        "status": "ok",
        "kind": KIND,
        "model": rel(MODEL_FILE),
        "history": rel("history.json"),
        "preprocessing": rel("preprocessing.json"),
        "config": rel("config.json"),
        "checksums": {rel(MODEL_FILE): sha256_file(out / MODEL_FILE), rel("config.json"): sha256_file(out / "config.json")},
        "best_epoch": fitted.best_iteration,
        "epochs_run": len(fitted.history),
        "stopped_early": len(fitted.history) > fitted.best_iteration,
        "val_metrics": fitted.val_metrics,
        "train_windows": fitted.n_train,
        "params": None,
        "resources": {"CPU": float(shared.plan[GBT].cpus)},
        "train_seconds": round(time.perf_counter() - started, 2),
        "finished_at": utc_now(),
    }


def train_gbt_member(shared: SharedRun, started: float) -> dict[str, Any]:
    """Fit (Ray task) and land the member; the manifest entry."""
    fitted = fit_remote(shared)
    logger.info("gbt: %d rounds (best %d) on %d windows, val PR-AUC %.4f", len(fitted.history),
                fitted.best_iteration, fitted.n_train, fitted.val_metrics.get("pr_auc", float("nan")))
    return land_member(shared, fitted, started)
