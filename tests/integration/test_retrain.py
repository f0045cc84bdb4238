"""`fabray retrain` on the session's local Ray: warm start beats a cold start, a fine-tuning that
only loses keeps the parent's weights, the run records its parent, replay and budget, and a spent
budget carries the parent's models over.

Data: two simulated fabs with the same physics and different seeds, "old" (the parent's) and
"new". All runs use the same nominal transport times (fixed in the config), so every run's
labels on the new data are the same events and their scores compare directly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fabray.cli import main

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PARENT_EPOCHS = 3
OVERRIDES = {"lstm": {"lstm_units": [8], "head_units": [8]}, "rule": {"lstm_units": 4, "head_units": [4]}}


def _config(nominal: dict[str, float], **retrain) -> dict:
    return {
        "task": {"nominal_transport_time_s": nominal},
        # the 12 observed features only: this module measures warm starts, and the context inputs
        # make one cold epoch learn much more (retraining with context runs in test_serve)
        "site": {"calendar": False, "plan": False, "neighbours": False},
        "train": {
            "models": list(OVERRIDES), "epochs": PARENT_EPOCHS, "batch_size": 128,
            "early_stopping_patience": PARENT_EPOCHS, "resources": {"cpus": 0.5},
            "shuffle_buffer": 1000, "model_overrides": OVERRIDES, "seed": 0,
        },
        "retrain": {"epochs": 1, "refit_ensemble": False, "replay_ratio": 0.5, **retrain},
    }


@pytest.fixture(scope="module")
def world(ray_cluster, tmp_path_factory) -> dict:
    """The data files, the config, and a parent run trained on the old data."""
    from fabray.config import FabrayConfig, SplitConfig, TaskConfig
    from fabray.data.io import write_table
    from fabray.data.simulate import simulate_preset
    from fabray.data.windows import prepare
    from fabray.train.driver import train_models

    root = tmp_path_factory.mktemp("retrain")
    old, new = simulate_preset("tiny", seed=11), simulate_preset("tiny", seed=12)
    nominal = prepare(old, TaskConfig(), SplitConfig()).nominal_s
    files = {"old": write_table(old, root / "old.parquet"), "new": write_table(new, root / "new.parquet")}
    config = FabrayConfig.model_validate(_config(nominal))
    parent = train_models(files["old"], root / "parent", config)
    assert parent.ok, parent.table()
    return {"root": root, **files, "nominal": nominal, "config": config, "parent": parent.run_dir}


def _test_pr_auc(run: Path, data: Path, model: str) -> float:
    """PR-AUC of a run's model on the data's TEST split, prepared with the run's own scaler."""
    import keras

    import fabray.models  # noqa: F401 - registers the custom layers
    from fabray.config import SplitConfig, TaskConfig
    from fabray.data.context import ContextSpec
    from fabray.data.scaler import Scaler
    from fabray.data.validate import load_validated
    from fabray.data.windows import gather_windows, prepare
    from fabray.metrics import event_metrics

    prep = json.loads((run / f"models/{model}/preprocessing.json").read_text())
    prepared = prepare(load_validated(data), TaskConfig(**prep["task"]), SplitConfig(),
                       scaler=Scaler.from_dict(prep["scaler"]), nominal_s=prep["nominal_s"],
                       context=ContextSpec.stored(prep))
    ends = prepared.splits["test"]
    logits = keras.saving.load_model(run / f"models/{model}/model.keras", compile=False).predict(
        gather_windows(prepared.features, ends, prepared.lookback), batch_size=512, verbose=0)
    prob = 1.0 / (1.0 + np.exp(-logits.reshape(-1).astype(np.float64)))
    return float(event_metrics(prepared.target[ends], prob)["pr_auc"])


@pytest.fixture(scope="module")
def one_epoch_runs(world) -> dict:
    """Three one-epoch LSTM runs on the new data, trained at the same time (one trainer each):
    "warm" and "cold" (from the parent's weights / from scratch, at training's learning rate,
    replay off) and "wrecked" (a retrain at a learning rate that ruins the LSTM in one epoch).
    The rule model is not selected in the retrains: it is carried over."""
    from concurrent.futures import ThreadPoolExecutor

    from fabray.config import FabrayConfig
    from fabray.train.driver import train_models
    from fabray.train.prepare import apply_cli_overrides
    from fabray.train.retrain import retrain_run

    # training's learning rate for both (a retrain's default is a tenth of it)
    config = FabrayConfig.model_validate(_config(world["nominal"], replay_ratio=0.0, learning_rate=1e-3))
    wrecking = FabrayConfig.model_validate(_config(world["nominal"], learning_rate=5.0))
    root = world["root"]
    with ThreadPoolExecutor(3) as pool:
        futures = {
            "warm": pool.submit(retrain_run, world["parent"], world["new"], root / "warm", config, models=["lstm"]),
            "cold": pool.submit(train_models, world["new"], root / "cold",
                                apply_cli_overrides(config, models=["lstm"], epochs=1)),
            "wrecked": pool.submit(retrain_run, world["parent"], world["new"], root / "wrecked", wrecking,
                                   models=["lstm"]),
        }
        return {name: f.result() for name, f in futures.items()}


def test_warm_start_beats_a_cold_start_at_the_same_epoch_budget(world, one_epoch_runs):
    """One epoch on the new data from the parent's weights vs one epoch from scratch, with the
    same settings and seed; replay is off here, so the warm start alone makes the difference."""
    warm, cold = one_epoch_runs["warm"], one_epoch_runs["cold"]
    assert warm.ok and cold.ok
    assert warm.manifest["models"]["lstm"]["epochs_run"] == cold.manifest["models"]["lstm"]["epochs_run"] == 1
    assert warm.manifest["retrain"]["replay"]["windows"] == 0
    assert warm.manifest["retrain"]["carried_over"] == ["rule"]  # not selected: the parent's, unchanged
    # the cold start's scaler is fitted on the new data, its labels are the same (fixed nominal)
    warm_score = _test_pr_auc(warm.run_dir, world["new"], "lstm")
    cold_score = _test_pr_auc(cold.run_dir, world["new"], "lstm")
    parent_score = _test_pr_auc(world["parent"], world["new"], "lstm")
    print(f"test PR-AUC on the new data: warm {warm_score:.4f}, cold {cold_score:.4f}, parent {parent_score:.4f}")
    assert warm_score > cold_score + 0.05, (warm_score, cold_score)


def test_a_retrain_that_only_loses_keeps_the_parents_weights(world, one_epoch_runs):
    """The wrecked LSTM: the warm start, scored and checkpointed as epoch 0 (the parent's
    weights), stays the best epoch, and those weights land in RUN2."""
    import keras

    import fabray.models  # noqa: F401 - registers the custom layers

    run = one_epoch_runs["wrecked"]
    assert run.ok
    entry = run.manifest["models"]["lstm"]
    epochs = json.loads((run.run_dir / entry["history"]).read_text())["epochs"]
    assert [e["epoch"] for e in epochs] == [0, 1] and epochs[0]["warm_start"]
    assert epochs[1]["val_score"] < epochs[0]["val_score"], epochs
    assert entry["best_epoch"] == 0 and entry["epochs_run"] == 1  # epoch 0 is scored, not trained
    assert entry["val_metrics"]["pr_auc"] == epochs[0]["val_pr_auc"]
    assert run.manifest["retrain"]["parent_weights_kept"] == ["lstm"]
    landed = keras.saving.load_model(run.run_dir / entry["model"], compile=False).get_weights()
    parent = keras.saving.load_model(world["parent"] / "models/lstm/model.keras", compile=False).get_weights()
    assert len(landed) == len(parent)
    for mine, theirs in zip(landed, parent):
        np.testing.assert_array_equal(mine, theirs)


def test_cli_retrain_records_parent_replay_scaler_and_budget(world, capsys):
    parent = world["parent"]
    out = world["root"] / "r2"
    code = main(["retrain", "--run", str(parent), "--data", str(world["new"]), "--out", str(out),
                 "--budget-minutes", "30"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "parent parent" in printed and "scaler kept_parent" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    parent_manifest = json.loads((parent / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["parent"]["run_id"] == "parent" and manifest["parent"]["path"] == str(parent)
    assert manifest["data"]["path"] == str(world["new"].resolve())
    retrain = manifest["retrain"]
    assert retrain["scaler_policy"] == "kept_parent" and retrain["budget_minutes"] == 30
    assert retrain["within_budget"] and 0 < retrain["seconds_used"] < 30 * 60
    assert retrain["stopped_by_budget"] == [] and retrain["carried_over"] == []
    replay = retrain["replay"]
    new_train = manifest["data"]["windows"]["train"]
    assert replay["windows"] == round(0.5 * new_train)
    assert replay["val_windows"] == manifest["data"]["windows"]["val"]  # replay_val_ratio 1
    assert replay["sources"][0]["fingerprint"] == parent_manifest["data"]["fingerprint"]
    for name in OVERRIDES:
        entry = manifest["models"][name]
        assert entry["status"] == "ok" and entry["epochs_run"] == 1
        assert entry["warm_start"]["from"] == str(parent / f"models/{name}/model.keras")
        epochs = json.loads((out / entry["history"]).read_text())["epochs"]
        assert [e["epoch"] for e in epochs] == [0, 1]  # the parent's weights, scored first
        best = max(epochs, key=lambda e: (e["val_score"], -e["epoch"]))
        assert entry["best_epoch"] == best["epoch"]
        mine = json.loads((out / entry["preprocessing"]).read_text())
        theirs = json.loads((parent / f"models/{name}/preprocessing.json").read_text())
        assert mine["scaler"] == theirs["scaler"] and mine["nominal_s"] == theirs["nominal_s"]


def test_a_spent_budget_carries_the_parents_models_over(world):
    parent = world["parent"]
    out = world["root"] / "late"
    code = main(["retrain", "--run", str(parent), "--data", str(world["new"]), "--out", str(out),
                 "--budget-minutes", "0.001"])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert sorted(manifest["retrain"]["carried_over"]) == sorted(OVERRIDES)
    assert not manifest["retrain"]["within_budget"]
    assert manifest["retrain"]["ensemble"] == {"refit": False, "reason": "retrain.refit_ensemble is false"}
    for name in OVERRIDES:
        entry = manifest["models"][name]
        assert entry["epochs_run"] == 0 and entry["carried_over"]
        assert (out / entry["model"]).read_bytes() == (parent / f"models/{name}/model.keras").read_bytes()


def test_not_a_run_is_bad_input(world, tmp_path, capsys):
    code = main(["retrain", "--run", str(tmp_path), "--data", str(world["new"]), "--out", str(tmp_path / "x")])
    assert code == 2
    assert "manifest.json" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
