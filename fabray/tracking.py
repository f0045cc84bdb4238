"""MLflow tracking (the optional `fabray[mlflow]` extra): a run directory and an evaluation, logged.

`log_training_run(run_dir, uri)` reads what `fabray train` wrote (manifest.json, config.json and
each model's history.json, config.json, model.keras) and logs one MLflow *parent* run for the
training run and one *child* run per model (tag `mlflow.parentRunId`): the model's parameters
(hyper-parameter overrides, training settings, parameter count), its per-epoch metrics (step =
epoch), its best-epoch validation metrics, and its files (`model.keras`, history, preprocessing,
config) as artifacts; the parent holds the data fingerprint and period and the run's
manifest.json and config.json. A failed model's child run ends FAILED with its error as a tag.
`log_evaluation(...)` logs `fabray evaluate`'s metrics (per candidate: lead score, F1, PR-AUC,
...), its JSON and report directory as one run linked to the training run (tag
`fabray.train_run_id`; not nested, so the training parent keeps exactly one child per model).

Why the driver and MlflowClient, not Ray's `ray.air.integrations.mlflow`: `MLflowLoggerCallback`
is a Tune `LoggerCallback`, and fabray's trainers are Ray Train V2 `TensorflowTrainer`s whose
`RunConfig(callbacks=...)` accepts only `ray.train.UserCallback`s; `setup_mlflow` is made for code
inside a worker (rank 0), which would need the tracking store reachable from every node and
still could not log the landed float32 `model.keras` (the driver lands it after `fit`). Logging
from the run directory on the driver works with a local file or SQLite store on a multi-node
cluster, touches no global MLflow state (no `mlflow.set_tracking_uri`, no active run), and a run
can be logged again later (`log_training_run` on any finished run directory).

The pure parts (`model_params`, `epoch_metrics`, `evaluation_metrics`) import no MLflow.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabray.errors import BadInputError
from fabray import run as rd

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'fabray[mlflow]'"
#: Keys of a history entry that are not metrics (counters, flags, labels).
_NOT_METRICS = frozenset({"model", "epoch", "epochs", "best_epoch", "precision", "improved",
                          "stopped_early", "stopped_by_budget", "resumed_from_epoch", "warm_start"})
#: Per-candidate metrics `log_evaluation` logs (`<candidate>/<metric>`); lead ones from "lead".
EVAL_METRICS = ("lead_score", "f1", "pr_auc", "precision", "recall", "roc_auc", "threshold")
EVAL_LEAD_METRICS = ("warned_at_start_fraction", "warned_before_onset", "warned_5min_before_onset",
                     "median_lead_min", "false_alarm_runs_per_zone_day", "episodes")
MAX_PARAM_CHARS = 500  # MLflow's limit on a param value (older stores: 250 is enforced by some)


@dataclass(frozen=True)
class TrackedRun:
    """What `log_training_run` logged: the parent run and one child per model."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    child_run_ids: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        return (f"mlflow: run {self.parent_run_id} with {len(self.child_run_ids)} model runs in "
                f"experiment {self.experiment_id} at {self.tracking_uri}")


# ---------------------------------------------------------------------------- pure helpers


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{"a": {"b": 1}} → {"a.b": "1"}; lists as JSON; values cut to MLflow's param length."""
    out: dict[str, str] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            out[name] = text[:MAX_PARAM_CHARS]
    return out


def model_params(entry: Mapping[str, Any], model_config: Mapping[str, Any]) -> dict[str, str]:
    """A child run's parameters: the model's overrides and training settings as it trained
    (`models/<name>/config.json`), its parameter count and precision (manifest entry)."""
    params = {"model": str(model_config.get("model", "")), "params": entry.get("params"),
              "precision": entry.get("precision"), "resources": model_config.get("resources")}
    params = {k: v for k, v in params.items() if v is not None}
    return {
        **flatten(params),
        **flatten(model_config.get("overrides") or {}, "overrides."),
        **flatten(model_config.get("train") or {}, "train."),
        **flatten(model_config.get("task") or {}, "task."),
    }


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def epoch_metrics(history: Iterable[Mapping[str, Any]]) -> list[tuple[int, dict[str, float]]]:
    """[(epoch, {metric: value})] from a history.json's "epochs": finite numbers only."""
    out = []
    for item in history:
        epoch = int(item.get("epoch", len(out) + 1))
        values = {k: v for k, v in ((k, _number(v)) for k, v in item.items() if k not in _NOT_METRICS)
                  if v is not None}
        out.append((epoch, values))
    return out


def evaluation_metrics(evaluation: Mapping[str, Any]) -> dict[str, float]:
    """`<candidate>/<metric>` for every model, both ensembles and the baselines of an
    `evaluate --json` dict, plus the ROI figures (`roi/<name>`)."""
    candidates: dict[str, Mapping[str, Any]] = dict(evaluation.get("models") or {})
    for name in ("ensemble", "static_ensemble"):
        if evaluation.get(name):
            candidates[name] = evaluation[name]
    candidates.update({n: m for n, m in (evaluation.get("baselines") or {}).items() if "skipped" not in m})
    out: dict[str, float] = {}
    for name, metrics in candidates.items():
        lead = metrics.get("lead") or {}
        pairs = [(k, metrics.get(k)) for k in EVAL_METRICS] + [(f"lead.{k}", lead.get(k)) for k in EVAL_LEAD_METRICS]
        out.update({f"{name}/{k}": v for k, v in ((k, _number(v)) for k, v in pairs) if v is not None})
    roi = evaluation.get("roi") or {}
    out.update({f"roi/{k}": v for k, v in ((k, _number(v)) for k, v in roi.items()) if v is not None})
    return out


# ---------------------------------------------------------------------------- MLflow


def mlflow_available() -> bool:
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return False
    return True


def require_mlflow() -> None:
    """BadInputError (exit 2, before any work) when tracking is asked for without the extra."""
    if not mlflow_available():
        raise BadInputError(f"MLflow tracking needs the mlflow extra: {INSTALL_HINT}")


def _client(uri: str) -> Any:
    require_mlflow()
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _experiment_id(client: Any, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name)


def _log_metrics(client: Any, run_id: str, values: Mapping[str, float], step: int = 0) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(key, float(v), now, step) for key, v in values.items()]
    for i in range(0, len(metrics), 1000):  # MLflow's batch limit
        client.log_batch(run_id, metrics=metrics[i:i + 1000])


def _log_params(client: Any, run_id: str, params: Mapping[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), 100):  # MLflow's batch limit for params
        client.log_batch(run_id, params=items[i:i + 100])


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def log_training_run(run_dir: str | Path, tracking_uri: str, *, experiment: str = "fabray") -> TrackedRun:
    """Log a finished run directory to MLflow: a parent run, one child per model (module doc)."""
    run = Path(run_dir).expanduser().resolve()
    manifest = rd.read_manifest(run)
    client = _client(tracking_uri)
    experiment_id = _experiment_id(client, experiment)
    data = manifest.get("data") or {}
    parent = client.create_run(experiment_id, run_name=str(manifest.get("run_id", run.name)), tags={
        "fabray.kind": "train", "fabray.run_dir": str(run), "fabray.run_id": str(manifest.get("run_id", "")),
        "fabray.status": str(manifest.get("status", "")),
        **({"fabray.parent_run": str(manifest["parent"].get("run_dir", ""))}
           if isinstance(manifest.get("parent"), Mapping) else {}),
    }).info.run_id
    try:
        _log_params(client, parent, flatten({
            "data.fingerprint": data.get("fingerprint"), "data.rows": data.get("rows"),
            "data.first_timestamp": data.get("first_timestamp"), "data.last_timestamp": data.get("last_timestamp"),
            "data.path": data.get("path"), "data.source": data.get("source"),
            "models": list(manifest.get("models", {})), "task": manifest.get("task") or {},
        }))
        client.log_artifact(parent, str(run / rd.MANIFEST))
        if (run / "config.json").is_file():
            client.log_artifact(parent, str(run / "config.json"))
        children = {name: _log_model(client, experiment_id, parent, run, name, entry)
                    for name, entry in manifest.get("models", {}).items()}
        ok = sum(e.get("status") == "ok" for e in manifest.get("models", {}).values())
        _log_metrics(client, parent, {"models_ok": ok, "models_failed": len(children) - ok})
    except BaseException:
        client.set_terminated(parent, status="FAILED")
        raise
    client.set_terminated(parent, status="FINISHED" if manifest.get("status") == "complete" else "FAILED")
    tracked = TrackedRun(tracking_uri, experiment_id, parent, children)
    logger.info("%s", tracked.line())
    return tracked


def _log_model(client: Any, experiment_id: str, parent: str, run: Path, name: str,
               entry: Mapping[str, Any]) -> str:
    ok = entry.get("status") == "ok"
    tags = {"mlflow.parentRunId": parent, "fabray.kind": "model", "fabray.model": name}
    if not ok:
        tags["fabray.error"] = str(entry.get("error", entry.get("status", "")))[:5000]
    child = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
    try:
        model_config = _read_json(run / entry["config"]) if entry.get("config") else {}
        _log_params(client, child, model_params(entry, model_config))
        history = _read_json(run / entry["history"]).get("epochs", []) if entry.get("history") else []
        for epoch, values in epoch_metrics(history):
            _log_metrics(client, child, values, step=epoch)
        final = {f"best_val_{k}": v for k, v in ((k, _number(v)) for k, v in (entry.get("val_metrics") or {}).items())
                 if v is not None}
        final.update({k: float(entry[k]) for k in ("best_epoch", "epochs_run", "train_seconds")
                      if _number(entry.get(k)) is not None})
        _log_metrics(client, child, final)
        for key in rd.FILE_KEYS:
            if entry.get(key) and (run / entry[key]).is_file():
                client.log_artifact(child, str(run / entry[key]))
    except BaseException:
        client.set_terminated(child, status="FAILED")
        raise
    client.set_terminated(child, status="FINISHED" if ok else "FAILED")
    return child


def find_training_run(client: Any, experiment_id: str, run_dir: Path) -> str | None:
    """The newest parent run logged for `run_dir` in the experiment, if any."""
    path = str(run_dir).replace("'", "\\'")
    runs = client.search_runs([experiment_id], filter_string=(
        f"tags.`fabray.kind` = 'train' AND tags.`fabray.run_dir` = '{path}'"),
        order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


def log_evaluation(
    run_dir: str | Path, evaluation: Mapping[str, Any], tracking_uri: str, *,
    experiment: str = "fabray", report_dir: str | Path | None = None,
) -> str:
    """Log `fabray evaluate`'s metrics (`evaluation` = `EvaluationResult.to_json()`), the JSON and
    the report directory as one MLflow run; returns its id."""
    run = Path(run_dir).expanduser().resolve()
    client = _client(tracking_uri)
    experiment_id = _experiment_id(client, experiment)
    data = evaluation.get("data") or {}
    tags = {"fabray.kind": "evaluate", "fabray.run_dir": str(run)}
    train_run = find_training_run(client, experiment_id, run)
    if train_run:
        tags["fabray.train_run_id"] = train_run
    run_id = client.create_run(experiment_id, run_name=f"evaluate {evaluation.get('run', run.name)}",
                               tags=tags).info.run_id
    try:
        _log_params(client, run_id, flatten({
            "test.path": data.get("path"), "test.fingerprint": data.get("fingerprint"),
            "test.windows": data.get("windows"), "test.windows_used": data.get("windows_used"),
            "test.first_timestamp": data.get("first_timestamp"), "test.last_timestamp": data.get("last_timestamp"),
            "headline": evaluation.get("headline"),
        }))
        _log_metrics(client, run_id, evaluation_metrics(evaluation))
        with tempfile.TemporaryDirectory(prefix="fabray-mlflow-") as tmp:
            path = Path(tmp) / "evaluation.json"
            path.write_text(json.dumps(evaluation, indent=2))
            client.log_artifact(run_id, str(path))
        if report_dir is not None and Path(report_dir).is_dir():
            client.log_artifacts(run_id, str(report_dir), artifact_path="report")
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    logger.info("mlflow: evaluation run %s in experiment %s at %s", run_id, experiment_id, tracking_uri)
    return run_id


def tracking_uri(flag: str | None, config: Any) -> str | None:
    """The URI to log to: `--mlflow`, else the config's `tracking.mlflow_uri`; checked usable."""
    uri = flag or getattr(getattr(config, "tracking", None), "mlflow_uri", None)
    if uri is not None:
        if not str(uri).strip():
            raise BadInputError(f"--mlflow needs a tracking URI. Received: {uri!r}")
        require_mlflow()
    return uri


def with_mlflow_uri(config: Any, uri: str | None) -> Any:
    """`config` with `tracking.mlflow_uri` set from `--mlflow` (unchanged when `uri` is None)."""
    uri = tracking_uri(uri, config)
    if uri is None or uri == config.tracking.mlflow_uri:
        return config
    return config.model_copy(update={"tracking": config.tracking.model_copy(update={"mlflow_uri": uri})})


def track_training_run(run_dir: str | Path, config: Any) -> TrackedRun | None:
    """After `train_models`: log the run when `config.tracking.mlflow_uri` is set. A tracking
    failure is logged, never raised: the run directory is complete and can be logged again with
    `log_training_run`."""
    uri = config.tracking.mlflow_uri
    if not uri:
        return None
    try:
        return log_training_run(run_dir, uri, experiment=config.tracking.experiment)
    except Exception as err:  # noqa: BLE001 - training succeeded; tracking is a side channel
        logger.error("mlflow: could not log run %s to %s (%s: %s); the run directory is complete, "
                     "log it later with fabray.tracking.log_training_run", run_dir, uri,
                     type(err).__name__, err)
        return None
