"""`fabray train --mlflow` and `fabray evaluate --mlflow` into a real SQLite MLflow store, read back
through MlflowClient: one parent run, one child per model (the tiny run's two) with its
parameters, per-epoch metrics and model.keras; the evaluation run with its metrics and report.

The training data comes from a SQLite database table (`--data sqlite:///fab.db --table oht`), so
the same run also checks a SQL source end to end (snapshot beside the run, source in the
manifest). One tiny run (the session tiny run's models and widths, `_tiny_run.TINY_CONFIG`, 2
epochs) on the session's local Ray; skipped without the `mlflow` extra. (The logging code is the
same for every model kind; all six kinds train end to end in test_multinode.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from _tiny_run import TINY_CONFIG, TINY_EPOCHS, TINY_MODELS

from fabray.cli import main

pytestmark = [pytest.mark.ray, pytest.mark.slow]
mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed (pip install 'fabray[mlflow]')")

EPOCHS = TINY_EPOCHS
SAMPLED, VAL_SAMPLE = 3000, 800  # train.windows_per_epoch, train.val_windows


@pytest.fixture(scope="module")
def logged(ray_cluster, tmp_path_factory):
    import sqlalchemy as sa

    from fabray.data.io import write_table
    from fabray.data.simulate import simulate_preset

    work = tmp_path_factory.mktemp("mlflow")
    engine = sa.create_engine(f"sqlite:///{work / 'fab.db'}")
    simulate_preset("tiny", seed=3).to_sql("oht", engine, index=False)
    engine.dispose()
    write_table(simulate_preset("tiny", seed=5), work / "test.parquet")
    # sampled epochs and a validation sample (issue 14) ride along: the tiny file has ~11.7k
    # training and ~2.2k validation windows
    config = {"train": {**TINY_CONFIG["train"], "epochs": EPOCHS, "early_stopping_patience": EPOCHS,
                        "windows_per_epoch": SAMPLED, "val_windows": VAL_SAMPLE},
              "tracking": {"experiment": "fabray-it"}}
    (work / "tiny.yaml").write_text(yaml.safe_dump(config))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    run = work / "r1"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)  # MLflow's default artifact root (./mlruns) lands under work/
        assert main(["train", "--data", f"sqlite:///{work / 'fab.db'}", "--table", "oht", "--out", str(run),
                     "--config", str(work / "tiny.yaml"), "--mlflow", uri]) == 0
        assert main(["evaluate", "--run", str(run), "--data", str(work / "test.parquet"),
                     "--config", str(work / "tiny.yaml"), "--report", str(work / "report"),
                     "--mlflow", uri]) == 0
    return run, mlflow.MlflowClient(tracking_uri=uri), list(TINY_MODELS), work


def test_one_parent_and_a_child_per_model_with_metrics_and_artifacts(logged):
    run, client, models, work = logged
    experiment = client.get_experiment_by_name("fabray-it")
    train_runs = client.search_runs([experiment.experiment_id], filter_string="tags.`fabray.kind` != 'evaluate'")
    parents = [r for r in train_runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in train_runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == sorted(models) and len(models) == 2
    assert len(train_runs) == 3

    manifest = json.loads((run / "manifest.json").read_text())
    assert parent.info.status == "FINISHED" and manifest["status"] == "complete"
    assert parent.data.params["data.fingerprint"] == manifest["data"]["fingerprint"]
    assert manifest["data"]["source"] == {"url": f"sqlite:///{work / 'fab.db'}", "table": "oht"}
    assert manifest["data"]["path"] == str(work / "r1.data.parquet")  # the validated snapshot
    assert parent.data.params["data.source.table"] == "oht"
    assert "manifest.json" in {f.path for f in client.list_artifacts(parent.info.run_id)}
    for child in children:
        name = child.info.run_name
        assert child.info.status == "FINISHED", name
        assert child.data.params["params"] == str(manifest["models"][name]["params"])
        assert child.data.params["train.epochs"] == str(EPOCHS)
        losses = client.get_metric_history(child.info.run_id, "loss")
        history = json.loads((run / "models" / name / "history.json").read_text())["epochs"]
        assert sorted(m.step for m in losses) == [e["epoch"] for e in history], name
        assert any(k.startswith("val_") for k in child.data.metrics), name
        local = client.download_artifacts(child.info.run_id, "model.keras", str(work / "dl" / name))
        assert Path(local).read_bytes() == (run / "models" / name / "model.keras").read_bytes()


def test_sampled_epochs_fit_and_are_scored_on_their_samples(logged):
    run, _, models, _ = logged
    manifest = json.loads((run / "manifest.json").read_text())
    scored = manifest["validation_windows"]
    assert scored["scored"] == VAL_SAMPLE and scored["of"] > VAL_SAMPLE
    for name in models:
        epochs = json.loads((run / "models" / name / "history.json").read_text())["epochs"]
        assert epochs and all(e["epoch_windows"] == SAMPLED for e in epochs), name
        assert all(e["val_n"] == VAL_SAMPLE for e in epochs), name  # the worker scored the sample
        assert manifest["models"][name]["val_metrics"]["n"] == VAL_SAMPLE, name


def test_evaluation_is_logged_with_its_report(logged):
    run, client, models, _ = logged
    experiment = client.get_experiment_by_name("fabray-it")
    (evaluation,) = client.search_runs([experiment.experiment_id], filter_string="tags.`fabray.kind` = 'evaluate'")
    assert evaluation.data.tags["fabray.run_dir"] == str(run.resolve())
    assert {f"{m}/lead_score" for m in models} | {"ensemble/lead_score"} <= set(evaluation.data.metrics)
    assert "report/report.md" in {f.path for f in client.list_artifacts(evaluation.info.run_id, "report")}


def test_the_report_carries_the_model_card(logged):
    run, _, models, work = logged
    report = (work / "report" / "report.md").read_text()
    card = json.loads((work / "report" / "model_card.json").read_text())
    assert "## Model card" in report and "### Per zone" in report and "### Per shift" in report
    assert card["training_data"]["source"]["table"] == "oht"
    assert card["training_data"]["fingerprint"] == json.loads((run / "manifest.json").read_text())["data"]["fingerprint"]
    assert {r["group"] for r in card["per_zone"]} == set(card["test_data"]["zones"])
    assert sum(r["windows"] for r in card["per_shift"]) == card["test_data"]["windows"]
