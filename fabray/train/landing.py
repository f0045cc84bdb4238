"""A trained model lands in the run directory: its best checkpoint copied (as float32 when it
trained under mixed precision), history, preprocessing and config written; or, in a retrain, the
parent's model carried over unchanged. Called by the driver (`fabray.train.driver`) as soon as
each model finishes; no Ray calls beyond reading the Result's checkpoints.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fabray import schema
from fabray.config import FabrayConfig
from fabray.files import atomic_copy, atomic_write_json, sha256_file, utc_now
from fabray import run as rd
from fabray.train.spec import MODEL_FILE, SCORE, STATE_FILE
from fabray.train.resources import WorkerResources

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SharedRun:
    """What every model's thread needs."""

    run: Path
    config: FabrayConfig
    prepared: Any  # fabray.data.windows.PreparedData
    array_refs: list  # [features, target, val_ends] object refs
    train_ends: np.ndarray
    plan: dict[str, WorkerResources]
    params: dict[str, int]
    overrides: dict[str, dict]
    monitor: Any  # progress.ProgressMonitor
    init_refs: dict[str, Any] = field(default_factory=dict)  # model → ref of the parent's .keras bytes
    warm_start: dict[str, Path] = field(default_factory=dict)  # model → the parent's model.keras
    deadline_unix: float | None = None



def _read_state(checkpoint: Any) -> dict[str, Any]:
    """{"metrics": ..., "state": ...} stored with a checkpoint by the train loop."""
    with checkpoint.as_directory() as d:
        return _read_state_dir(Path(d))


def _best_checkpoint(result: Any, best_epoch: int) -> Any:
    """The kept checkpoint of the best epoch (1-based), else the highest-scoring kept one."""
    kept = list(result.best_checkpoints or [])
    for checkpoint, metrics in kept:
        if metrics.get("epoch") == best_epoch:
            return checkpoint
    if not kept:
        raise RuntimeError("Ray Train kept no checkpoint")
    logger.warning("best epoch %d's checkpoint is gone; taking the best kept one", best_epoch)
    return max(kept, key=lambda cm: (cm[1].get(SCORE, -math.inf), -cm[1].get("epoch", 0)))[0]


def land(name: str, shared: SharedRun, result: Any, started: float) -> dict[str, Any]:
    """Copy the best model and write history / preprocessing / config; the manifest entry."""
    latest = _read_state(result.checkpoint)
    state = latest["state"]
    history = state["history"]
    best_epoch = int(state["best_epoch"]) + 1  # 1-based
    best = _best_checkpoint(result, best_epoch)
    out = rd.model_dir(shared.run, name)
    with best.as_directory() as d:
        _land_model_file(name, shared, Path(d) / MODEL_FILE, out / MODEL_FILE, state.get("precision"))
        best_metrics = _read_state_dir(Path(d))["metrics"]
    prepared, cfg = shared.prepared, shared.config
    atomic_write_json(out / "history.json", {"model": name, "best_epoch": best_epoch, "epochs": history})
    atomic_write_json(out / "preprocessing.json", preprocessing_dict(prepared, cfg))
    atomic_write_json(out / "config.json", {
        "model": name,
        "overrides": shared.overrides[name],
        "task": cfg.task.model_dump(),
        "split": cfg.split.model_dump(),
        "train": cfg.train.model_dump(),
        "resources": shared.plan[name].ray_resources(),
    })
    def rel(file: str) -> str:
        return str((out / file).relative_to(shared.run))

    return {
        "status": "ok",
        "model": rel(MODEL_FILE),
        "history": rel("history.json"),
        "preprocessing": rel("preprocessing.json"),
        "config": rel("config.json"),
        "ray_checkpoint": _relative_or_absolute(best.path, shared.run),
        "best_epoch": best_epoch,
        "epochs_run": sum(1 for h in history if h.get("epoch", 1) >= 1),  # epoch 0: a warm start, scored
        "stopped_early": bool(state.get("stopped_early")),
        "val_metrics": {k[4:]: v for k, v in best_metrics.items() if k.startswith("val_")},
        "train_loss": best_metrics.get("loss"),
        "params": shared.params[name],
        "precision": state.get("precision"),
        "stored_dtype": "float32",
        "resources": shared.plan[name].ray_resources(),
        "resumed_from": list(state.get("resumed_from") or []),
        "stopped_by_budget": bool(state.get("stopped_by_budget")),
        **({"warm_start": _warm_start_entry(shared.warm_start[name])} if name in shared.warm_start else {}),
        "train_seconds": round(time.perf_counter() - started, 2),
        "finished_at": utc_now(),
    }


def _warm_start_entry(parent_model: Path) -> dict[str, Any]:
    return {"from": str(parent_model), "fingerprint": sha256_file(parent_model)}


def _land_model_file(name: str, shared: SharedRun, src: Path, dst: Path, precision: str | None) -> None:
    """Copy the checkpoint's model, as float32 when it was trained under another policy."""
    if precision in (None, "float32"):
        atomic_copy(src, dst)
        return
    import keras

    import fabray.models  # noqa: F401 - registers the custom layers
    from fabray.models import build_model
    from fabray.train.precision import float32_copy

    trained = keras.saving.load_model(src, compile=False)
    n_features = int(shared.prepared.features.shape[1])
    clean = float32_copy(
        trained, lambda: build_model(name, shared.config.task.lookback, n_features, shared.overrides[name],
                                     shared.prepared.scaler)
    )
    tmp = dst.with_name(f".{dst.stem}.float32.keras")
    dst.parent.mkdir(parents=True, exist_ok=True)
    clean.save(tmp)
    tmp.replace(dst)
    logger.info("%s: trained under %s, stored as float32 for inference anywhere", name, precision)


def carry_over(name: str, shared: SharedRun, reason: str) -> dict[str, Any]:
    """Land the parent's model unchanged: in a retrain, a model not selected (`--models`) or one
    the budget left no time to start. Only valid when the run keeps the parent's preprocessing."""
    parent_model = shared.warm_start[name]
    out = rd.model_dir(shared.run, name)
    atomic_copy(parent_model, out / MODEL_FILE)
    cfg = shared.config
    atomic_write_json(out / "history.json", {"model": name, "best_epoch": 0, "epochs": [],
                                                "carried_over": reason})
    atomic_write_json(out / "preprocessing.json", preprocessing_dict(shared.prepared, cfg))
    atomic_write_json(out / "config.json", {
        "model": name, "overrides": shared.overrides[name], "task": cfg.task.model_dump(),
        "split": cfg.split.model_dump(), "train": cfg.train.model_dump(), "carried_over": reason,
    })

    def rel(file: str) -> str:
        return str((out / file).relative_to(shared.run))

    logger.warning("%s: carried over from the parent unchanged (%s)", name, reason)
    return {
        "status": "ok", "model": rel(MODEL_FILE), "history": rel("history.json"),
        "preprocessing": rel("preprocessing.json"), "config": rel("config.json"),
        "best_epoch": 0, "epochs_run": 0, "carried_over": reason, "val_metrics": {},
        "params": shared.params[name], "warm_start": _warm_start_entry(parent_model),
        "stored_dtype": "float32", "finished_at": utc_now(),
    }


def _read_state_dir(d: Path) -> dict[str, Any]:
    return json.loads((d / STATE_FILE).read_text())


def _relative_or_absolute(path: str, run: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(run))
    except ValueError:
        return path


def preprocessing_dict(prepared: Any, config: FabrayConfig) -> dict[str, Any]:
    """What a stored model needs to score raw windows: scaler, nominal times, shapes, task."""
    return {
        "features": list(schema.FEATURES),
        "input_columns": list(prepared.input_columns),
        "context": prepared.context.to_dict() if prepared.context is not None else None,
        "scaler": prepared.scaler.to_dict(),
        "nominal_s": dict(prepared.nominal_s),
        "zones": list(prepared.zones),
        "lookback": prepared.lookback,
        "horizon": prepared.horizon,
        "task": config.task.model_dump(),
    }
