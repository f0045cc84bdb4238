"""`fabray train` on the session's local Ray (2 CPUs): two tiny models, half a CPU each, at once.

The checks on what a training run wrote use the session's tiny run (`tiny_run`, trained once for
every module that needs one, tests/integration/conftest.py); the bad-input checks never reach Ray.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from _tiny_run import TINY_EPOCHS, TINY_MODELS

from fabray import schema
from fabray.cli import main

pytestmark = pytest.mark.ray

MODELS = TINY_MODELS


@pytest.fixture(scope="module")
def trained_run(tiny_run):
    """(exit code, run directory) of the session's tiny run (tests/integration/conftest.py)."""
    return tiny_run.code, tiny_run.run


def test_train_writes_every_model_and_a_manifest_whose_paths_exist(trained_run, tiny_data):
    code, run = trained_run
    assert code == 0
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert set(manifest["models"]) == set(MODELS)
    assert manifest["data"]["fingerprint"].startswith("sha256:")
    assert manifest["data"]["path"] == str(tiny_data.resolve())
    assert manifest["code"]["fabray"] and manifest["versions"]["ray"].startswith("2.60")
    assert manifest["cluster"]["concurrent_trainers"] == 2
    assert (run / manifest["config"]).is_file()
    for name, entry in manifest["models"].items():
        assert entry["status"] == "ok", entry
        for key in ("model", "history", "preprocessing", "config", "ray_checkpoint"):
            assert (run / entry[key]).exists(), (name, key, entry[key])
        history = json.loads((run / entry["history"]).read_text())
        assert [h["epoch"] for h in history["epochs"]] == list(range(1, TINY_EPOCHS + 1)) == [1, 2]
        best = max(history["epochs"], key=lambda h: (h["val_score"], -h["epoch"]))
        assert entry["best_epoch"] == best["epoch"]
        assert entry["val_metrics"]["pr_auc"] == pytest.approx(best["val_pr_auc"])
        assert entry["precision"] == "float32"  # no GPU here
        prep = json.loads((run / entry["preprocessing"]).read_text())
        # the 12 observed features, then the context inputs on by default (calendar, plan, ring)
        assert prep["lookback"] == 100 and prep["input_columns"][:12] == list(schema.FEATURES)
        assert len(prep["scaler"]["mean"]) == len(prep["input_columns"]) > 12
        assert prep["context"]["calendar"] and prep["context"]["topology"] == "ring"
        assert prep["context"]["plan_columns"] == ["lots_planned", "pm_planned"]


def test_saved_best_model_reloads_and_reproduces_its_validation_score(trained_run, tiny_data):
    import keras

    import fabray.models  # noqa: F401 - registers the custom layers
    from fabray.config import SplitConfig, TaskConfig
    from fabray.data.context import ContextSpec
    from fabray.data.scaler import Scaler
    from fabray.data.validate import load_validated
    from fabray.data.windows import gather_windows, prepare
    from fabray.metrics import event_metrics

    _, run = trained_run
    manifest = json.loads((run / "manifest.json").read_text())
    entry = manifest["models"]["lstm"]
    prep = json.loads((run / entry["preprocessing"]).read_text())
    prepared = prepare(
        load_validated(tiny_data), TaskConfig(**prep["task"]), SplitConfig(),
        scaler=Scaler.from_dict(prep["scaler"]), nominal_s=prep["nominal_s"],
        context=ContextSpec.stored(prep),
    )
    model = keras.saving.load_model(run / entry["model"])
    ends = prepared.splits["val"]
    logits = model.predict(gather_windows(prepared.features, ends, prepared.lookback), verbose=0)
    prob = 1.0 / (1.0 + np.exp(-logits.reshape(-1).astype(np.float64)))
    assert logits.shape == (len(ends), 1) and np.isfinite(logits).all()
    # validation scores during training are measured on the training label (early warning)
    score = event_metrics(prepared.fit_target[ends], prob)["pr_auc"]
    assert score == pytest.approx(entry["val_metrics"]["pr_auc"], abs=1e-3)


def test_bad_data_file_exits_2_and_creates_no_run(tmp_path, tiny_config, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,zone,requests\n2025-01-01 00:00,Z01,-3\n")
    run = tmp_path / "never"
    code = main(["train", "--data", str(bad), "--out", str(run), "--config", str(tiny_config)])
    assert code == 2
    assert not run.exists()
    assert "bad.csv" in capsys.readouterr().err


def test_existing_run_is_never_overwritten(tmp_path, tiny_data, tiny_config, capsys):
    run = tmp_path / "r1"
    run.mkdir()
    (run / "manifest.json").write_text("{}")
    code = main(["train", "--data", str(tiny_data), "--out", str(run), "--config", str(tiny_config)])
    assert code == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in run.iterdir()] == ["manifest.json"]
    assert (run / "manifest.json").read_text() == "{}"


def test_unknown_model_is_bad_input(tmp_path, tiny_data, tiny_config, capsys):
    run = tmp_path / "r2"
    code = main(["train", "--data", str(tiny_data), "--out", str(run), "--config", str(tiny_config),
                 "--models", "lstm,transformerx"])
    assert code == 2
    assert "transformerx" in capsys.readouterr().err
    assert not run.exists()


def test_a_failed_model_is_recorded_and_the_others_still_land(
    trained_run, tiny_data, tiny_config, tmp_path, monkeypatch
):
    """`rule` fails; `lstm` lands from the trained run's stored Ray result (no second training)."""
    from ray.train import Result

    from fabray.train import driver

    _, done = trained_run

    def fake_fit(name, shared, *deadline):
        if name == "rule":
            raise RuntimeError("injected failure in rule")
        return Result.from_path(done / "ray" / name)

    monkeypatch.setattr(driver, "_fit", fake_fit)
    run = tmp_path / "partial"
    code = main(["train", "--data", str(tiny_data), "--out", str(run), "--config", str(tiny_config)])
    assert code == 1
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "partial"
    failed, landed = manifest["models"]["rule"], manifest["models"]["lstm"]
    assert failed["status"] == "failed" and "injected failure in rule" in failed["error"]
    assert "model" not in failed and not (run / "models" / "rule" / "model.keras").exists()
    assert landed["status"] == "ok" and (run / landed["model"]).is_file()
    assert landed["ray_checkpoint"].startswith(str(done))  # outside this run: kept absolute
