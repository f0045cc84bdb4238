"""fabray.tracking: what a run directory and an evaluation become in a real MLflow store.

The MLflow tests write a real SQLite tracking store under tmp_path (artifacts in tmp_path/mlruns,
MLflow's default root relative to the working directory) and read it back with MlflowClient.
They are skipped when the `mlflow` extra is not installed; the pure helpers are always tested.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from fabray import tracking
from fabray.errors import BadInputError

MODELS = ("lstm", "rule")


def tracked_run(make_run, root: Path) -> Path:
    """A run directory as `fabray train` lays it out (built with the `make_run` fixture): two
    landed models (2 and 3 epochs) and one failed model; model.keras files are stand-in bytes
    (tracking only copies them)."""
    models, files = {}, {}
    for i, name in enumerate(MODELS):
        d = f"models/{name}"
        epochs = [{"model": name, "epoch": e, "epochs": 3, "loss": 1.0 / e, "val_pr_auc": 0.1 * e + i,
                   "val_f1": float("nan"), "improved": True, "precision": "float32", "epoch_seconds": 2.0}
                  for e in range(1, 3 + i)]
        files[f"{d}/history.json"] = json.dumps({"model": name, "best_epoch": len(epochs), "epochs": epochs})
        files[f"{d}/config.json"] = json.dumps({"model": name, "overrides": {"units": [8, 4]},
                                                "task": {"lookback": 100},
                                                "train": {"epochs": 3, "batch_size": 256}, "resources": {"CPU": 0.5}})
        files[f"{d}/preprocessing.json"] = json.dumps({"lookback": 100})
        files[f"{d}/model.keras"] = b"keras-zip-" + name.encode()
        models[name] = {"status": "ok", "model": f"models/{name}/model.keras",
                        "history": f"models/{name}/history.json", "config": f"models/{name}/config.json",
                        "preprocessing": f"models/{name}/preprocessing.json", "best_epoch": len(epochs),
                        "epochs_run": len(epochs), "val_metrics": {"pr_auc": 0.5 + i, "f1": None},
                        "params": 1000 + i, "precision": "float32", "train_seconds": 4.5}
    models["gru"] = {"status": "failed", "error": "RuntimeError: out of memory", "epochs_run": 0}
    files["config.json"] = json.dumps({"train": {"epochs": 3}})
    manifest = {"run_id": "r1", "status": "partial",
                "data": {"path": "/data/fab.parquet", "fingerprint": "sha256:abc", "rows": 1234,
                         "first_timestamp": "2026-01-01 00:00:00", "last_timestamp": "2026-01-03 23:59:00"},
                "task": {"lookback": 100, "horizon": 10}, "config": "config.json"}
    return make_run(root / "r1", models, files=files, extra=manifest)


EVALUATION = {
    "run": "r1", "headline": "lead_score",
    "data": {"path": "/data/test.parquet", "fingerprint": "sha256:def", "windows": 900,
             "windows_used": "all windows with a defined target"},
    "models": {"lstm": {"lead_score": 41.5, "f1": 0.5, "pr_auc": 0.61, "threshold": 0.4,
                        "lead": {"episodes": 12, "median_lead_min": 3.0, "warned_at_start_fraction": 0.25}}},
    "ensemble": {"lead_score": 45.0, "f1": None, "lead": {"episodes": 12}},
    "static_ensemble": None,
    "baselines": {"persistence": {"lead_score": -3.0, "f1": 0.3}, "gbt": {"skipped": "no lightgbm"}},
    "roi": {"net_value_per_month_krw": 1.5e8, "roi_multiple": 31.0, "parameters": {"gpus": 1}},
}


# ---------------------------------------------------------------------------- pure helpers


def test_epoch_metrics_keeps_finite_numbers_by_epoch():
    history = [{"model": "x", "epoch": 1, "epochs": 2, "loss": 0.5, "val_f1": float("nan"),
                "improved": True, "precision": "float32", "val_pr_auc": 0.2},
               {"model": "x", "epoch": 2, "epochs": 2, "loss": 0.25, "val_pr_auc": 0.3, "stopped_early": False}]
    assert tracking.epoch_metrics(history) == [(1, {"loss": 0.5, "val_pr_auc": 0.2}),
                                               (2, {"loss": 0.25, "val_pr_auc": 0.3})]


def test_flatten_nests_with_dots_and_writes_lists_as_json():
    assert tracking.flatten({"a": {"b": 1, "c": [1, 2]}, "d": "x", "e": {}}) == {
        "a.b": "1", "a.c": "[1, 2]", "d": "x", "e": "{}"}
    assert len(tracking.flatten({"long": "y" * 2000})["long"]) == tracking.MAX_PARAM_CHARS


def test_evaluation_metrics_name_candidate_and_metric():
    metrics = tracking.evaluation_metrics(EVALUATION)
    assert metrics["lstm/lead_score"] == 41.5
    assert metrics["lstm/lead.median_lead_min"] == 3.0
    assert metrics["ensemble/lead_score"] == 45.0
    assert "ensemble/f1" not in metrics  # null (NaN) is not logged
    assert metrics["persistence/lead_score"] == -3.0
    assert not any(k.startswith("gbt/") for k in metrics)  # skipped baseline
    assert metrics["roi/roi_multiple"] == 31.0 and "roi/parameters" not in metrics


def test_tracking_without_the_extra_is_bad_input(monkeypatch):
    from fabray.config import FabrayConfig

    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` raises ImportError
    assert not tracking.mlflow_available()
    with pytest.raises(BadInputError, match=r"fabray\[mlflow\]"):
        tracking.tracking_uri("sqlite:///x.db", FabrayConfig())
    assert tracking.tracking_uri(None, FabrayConfig()) is None  # not asked for: no check


def test_train_refuses_mlflow_without_the_extra_before_any_work(monkeypatch, tmp_path, capsys):
    from fabray.cli import main

    monkeypatch.setitem(sys.modules, "mlflow", None)
    code = main(["train", "--data", str(tmp_path / "none.parquet"), "--out", str(tmp_path / "r"),
                 "--mlflow", f"sqlite:///{tmp_path}/m.db"])
    assert code == 2
    assert "fabray[mlflow]" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------- a real MLflow store


@pytest.fixture()
def store(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed (pip install 'fabray[mlflow]')")
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root ./mlruns lands in tmp_path
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return uri, MlflowClient(tracking_uri=uri)


def _artifacts(client, run_id: str, path: str | None = None) -> set[str]:
    return {f.path for f in client.list_artifacts(run_id, path)}


def test_training_run_is_one_parent_with_a_child_per_model(make_run, store, tmp_path):
    uri, client = store
    run = tracked_run(make_run, tmp_path)
    tracked = tracking.log_training_run(run, uri, experiment="fab-test")

    experiment = client.get_experiment_by_name("fab-test")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == tracked.parent_run_id}
    assert [p.info.run_id for p in parents] == [tracked.parent_run_id]
    assert set(children) == {*MODELS, "gru"} and len(runs) == 4

    parent = parents[0]
    assert parent.data.params["data.fingerprint"] == "sha256:abc"
    assert parent.data.tags["fabray.run_dir"] == str(run.resolve())
    assert parent.info.status == "FAILED"  # a partial run (one model failed)
    assert {"manifest.json", "config.json"} <= _artifacts(client, parent.info.run_id)
    assert parent.data.metrics == {"models_ok": 2.0, "models_failed": 1.0}

    rule = children["rule"]
    assert rule.info.status == "FINISHED"
    assert rule.data.params["overrides.units"] == "[8, 4]"
    assert rule.data.params["train.batch_size"] == "256" and rule.data.params["params"] == "1001"
    history = client.get_metric_history(rule.info.run_id, "loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(1, 1.0), (2, 0.5), (3, 1 / 3)]
    assert "val_f1" not in rule.data.metrics  # NaN epochs are not logged
    assert rule.data.metrics["best_val_pr_auc"] == 1.5 and rule.data.metrics["epochs_run"] == 3
    assert {"model.keras", "history.json", "config.json", "preprocessing.json"} <= _artifacts(client, rule.info.run_id)
    local = client.download_artifacts(rule.info.run_id, "model.keras", str(tmp_path))
    assert Path(local).read_bytes() == b"keras-zip-rule"

    gru = children["gru"]
    assert gru.info.status == "FAILED" and "out of memory" in gru.data.tags["fabray.error"]


def test_evaluation_run_links_to_the_training_run(make_run, store, tmp_path):
    uri, client = store
    run = tracked_run(make_run, tmp_path)
    tracked = tracking.log_training_run(run, uri)
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.md").write_text("# report\n")
    run_id = tracking.log_evaluation(run, EVALUATION, uri, report_dir=report)

    logged = client.get_run(run_id)
    assert logged.data.tags["fabray.train_run_id"] == tracked.parent_run_id
    assert "mlflow.parentRunId" not in logged.data.tags  # the training parent keeps one child per model
    assert logged.data.metrics["ensemble/lead_score"] == 45.0
    assert logged.data.params["test.fingerprint"] == "sha256:def"
    assert "evaluation.json" in _artifacts(client, run_id)
    assert "report/report.md" in _artifacts(client, run_id, "report")


def test_config_uri_trains_into_the_store_and_a_failure_does_not_raise(make_run, store, tmp_path):
    from fabray.config import FabrayConfig

    uri, client = store
    run = tracked_run(make_run, tmp_path)
    config = tracking.with_mlflow_uri(FabrayConfig(), uri)
    assert config.tracking.mlflow_uri == uri
    assert tracking.track_training_run(run, config).child_run_ids.keys() == {*MODELS, "gru"}
    assert tracking.track_training_run(tmp_path / "missing", config) is None  # logged, not raised
