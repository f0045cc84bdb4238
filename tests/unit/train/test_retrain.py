"""`fabray retrain`'s Ray-free half: reading the parent, the scaler policy, replay and budget
bookkeeping, and what is refused before anything runs. The parent run is written here by hand
(what `fabray train` lands), so no training is needed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from fabray.config import FabrayConfig
from fabray.errors import BadInputError
from fabray.files import atomic_write_json, sha256_file
from fabray import run as rd

TASK = {"lookback": 20, "horizon": 5}
MODELS = {"lstm": {"lstm_units": [4], "head_units": [4]}, "rule": {"lstm_units": 2, "head_units": [2]}}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    from fabray.data.io import write_table
    from fabray.data.simulate import simulate_preset

    root = tmp_path_factory.mktemp("data")
    return {"old": write_table(simulate_preset("tiny", seed=1), root / "old.parquet"),
            "new": write_table(simulate_preset("tiny", seed=2), root / "new.parquet")}


def _write_parent(run: Path, data: Path, config: FabrayConfig) -> Path:
    """A run directory as `fabray train` leaves it (untrained weights: only shapes matter here)."""
    import keras

    from fabray.data.validate import load_validated
    from fabray.data.windows import prepare
    from fabray.models import build_model
    from fabray.train.landing import preprocessing_dict
    from fabray.train.prepare import data_info, effective_overrides

    df = load_validated(data)
    prepared = prepare(df, config.task, config.split)
    overrides = effective_overrides(config, list(config.train.models))
    rd.create_run_dir(run)
    atomic_write_json(run / "config.json", config.model_dump(mode="json"))
    entries = {}
    for name in config.train.models:
        out = rd.model_dir(run, name)
        model = build_model(name, config.task.lookback, 12, overrides[name], prepared.scaler)
        out.mkdir(parents=True)
        model.save(out / "model.keras")
        atomic_write_json(out / "preprocessing.json", preprocessing_dict(prepared, config))
        atomic_write_json(out / "config.json", {"model": name, "overrides": overrides[name]})
        atomic_write_json(out / "history.json", {"epochs": []})
        entries[name] = {"status": "ok", "params": int(model.count_params()),
                         **{k: f"models/{name}/{k}.json" for k in ("history", "preprocessing", "config")},
                         "model": f"models/{name}/model.keras"}
    keras.backend.clear_session()
    rd.write_manifest(run, {"format": rd.MANIFEST_FORMAT, "format_version": rd.MANIFEST_VERSION,
                            "run_id": run.name, "status": "complete",
                            "config": "config.json", "data": data_info(data, df, prepared),
                            "task": config.task.model_dump(), "models": entries})
    return run


@pytest.fixture(scope="module")
def parent(files, tmp_path_factory) -> Path:
    config = FabrayConfig.model_validate({
        "task": TASK, "train": {"models": list(MODELS), "model_overrides": MODELS},
        "retrain": {"replay_ratio": 0.25, "budget_minutes": 30},
    })
    return _write_parent(tmp_path_factory.mktemp("runs") / "parent", files["old"], config)


def test_keeps_the_parents_scaler_and_draws_replay_from_its_data(parent, files, tmp_path):
    from fabray.data.validate import load_validated
    from fabray.data.windows import prepare
    from fabray.train.retrain import KEPT, prepare_retrain

    started = time.time()
    job = prepare_retrain(parent, files["new"], tmp_path / "r2", started_unix=started)
    prep = json.loads((parent / "models/lstm/preprocessing.json").read_text())
    assert job.prepared.scaler.to_dict() == prep["scaler"]  # kept, not refitted on the new data
    assert job.prepared.nominal_s == prep["nominal_s"]
    assert job.config.task.lookback == 20 and job.config.train.models == ("lstm", "rule")
    assert job.config.train.epochs == job.config.retrain.epochs  # retrain's epochs drive training
    n_new = len(job.prepared.splits["train"])
    series = job.train_series()
    assert series.replay_windows == round(0.25 * n_new)
    assert len(series.train_ends) == n_new + series.replay_windows
    # validation: the new data's split, then as many of the history's validation windows
    n_val = len(job.prepared.splits["val"])
    assert series.val_ends[:n_val].tolist() == job.prepared.splits["val"].tolist()
    assert series.replay_val_windows == len(series.val_ends) - n_val == n_val  # replay_val_ratio 1
    replayed = series.val_ends[n_val:]
    assert replayed.min() >= len(job.prepared.features)  # in the history's rows, after the new data's
    old = prepare(load_validated(files["old"]), job.config.task, job.config.split, scaler=job.prepared.scaler,
                  nominal_s=job.prepared.nominal_s, context=job.prepared.context)
    offset = len(job.prepared.features)
    assert set((replayed - offset).tolist()) <= set(old.splits["val"].tolist())  # from its validation split
    np.testing.assert_array_equal(series.target[replayed], old.fit_target[replayed - offset])
    assert job.warm_start == {n: parent / f"models/{n}/model.keras" for n in MODELS}
    assert job.deadline_unix == pytest.approx(started + 30 * 60)
    assert job.carry_over and not (tmp_path / "r2").exists()  # nothing written yet
    extra = job.manifest_extra
    assert extra["parent"]["run_id"] == "parent" and extra["parent"]["path"] == str(parent)
    retrain = extra["retrain"]
    assert retrain["scaler_policy"] == KEPT
    assert retrain["replay"]["sources"][0]["path"] == str(files["old"].resolve())
    assert retrain["replay"]["sources"][0]["windows_drawn"] == series.replay_windows
    assert retrain["replay"]["sources"][0]["val_windows_drawn"] == series.replay_val_windows
    assert retrain["replay"]["val_windows"] == series.replay_val_windows
    # the child's history: the new data first, then what the parent learned from
    assert [h["path"] for h in retrain["replay"]["history"]] == [str(files["new"].resolve()),
                                                                  str(files["old"].resolve())]


def test_refit_scaler_fits_the_new_data_and_the_models_are_built_with_it(parent, files, tmp_path):
    from fabray.train.retrain import REFIT, prepare_retrain

    config = FabrayConfig.model_validate({"train": {"models": list(MODELS)}, "retrain": {"refit_scaler": True}})
    job = prepare_retrain(parent, files["new"], tmp_path / "r2", config)
    prep = json.loads((parent / "models/lstm/preprocessing.json").read_text())
    assert job.prepared.scaler.to_dict() != prep["scaler"]
    assert "feature_mean" not in job.overrides["rule"]  # the statistics are the first layer's, not an override
    assert job.overrides["lstm"] == MODELS["lstm"]
    assert job.config.task.lookback == 20  # the parent's task, though this config did not say
    assert job.manifest_extra["retrain"]["scaler_policy"] == REFIT and not job.carry_over


def test_a_missing_history_file_is_skipped_and_said(parent, files, tmp_path):
    from fabray.train.retrain import prepare_retrain

    moved = tmp_path / "parent-moved"
    import shutil

    shutil.copytree(parent, moved)
    manifest = json.loads((moved / "manifest.json").read_text())
    manifest["data"]["path"] = str(tmp_path / "gone.parquet")
    (moved / "manifest.json").write_text(json.dumps(manifest))
    job = prepare_retrain(moved, files["new"], tmp_path / "r2")
    replay = job.manifest_extra["retrain"]["replay"]
    assert job.train_series().replay_windows == 0 and replay["windows"] == 0
    assert replay["skipped"] == [{"path": str(tmp_path / "gone.parquet"),
                                  "fingerprint": manifest["data"]["fingerprint"], "reason": "file not found"}]


def test_bad_input_is_refused_before_anything_is_written(parent, files, tmp_path):
    from fabray.train.retrain import prepare_retrain

    other_task = FabrayConfig.model_validate({"task": {"lookback": 30}})
    with pytest.raises(BadInputError, match="keeps the parent's task"):
        prepare_retrain(parent, files["new"], tmp_path / "a", other_task)
    wider = FabrayConfig.model_validate({"task": TASK, "train": {"model_overrides": {"lstm": {"lstm_units": [9]}}}})
    # architecture comes from the parent's own overrides, so another config cannot change it
    job = prepare_retrain(parent, files["new"], tmp_path / "b", wider)
    assert job.overrides["lstm"]["lstm_units"] == [4]
    with pytest.raises(BadInputError, match="not empty"):
        prepare_retrain(parent, files["new"], parent)  # never overwrite, least of all the parent
    with pytest.raises(BadInputError, match="manifest"):
        prepare_retrain(tmp_path, files["new"], tmp_path / "c")  # not a run
    with pytest.raises(BadInputError, match="retrain options"):
        prepare_retrain(parent, files["new"], tmp_path / "d", budget_minutes=0)
    assert not any((tmp_path / n).exists() for n in "acd")


def test_models_not_selected_are_carried_over_and_refit_needs_them_all(parent, files, tmp_path):
    from fabray.train.retrain import prepare_retrain

    job = prepare_retrain(parent, files["new"], tmp_path / "r2", models=["rule"])
    assert job.carry_models == {"lstm"} and job.config.train.models == ("lstm", "rule")
    assert job.manifest_extra["retrain"]["models"] == ["rule"]
    with pytest.raises(BadInputError, match="models of the parent"):
        prepare_retrain(parent, files["new"], tmp_path / "r3", models=["gru"])
    refit = FabrayConfig.model_validate({"retrain": {"refit_scaler": True}})
    with pytest.raises(BadInputError, match="every model must"):
        prepare_retrain(parent, files["new"], tmp_path / "r4", refit, models=["rule"])


def test_changed_parameter_count_is_refused(parent, files, tmp_path):
    import shutil

    from fabray.train.retrain import prepare_retrain

    edited = tmp_path / "edited"
    shutil.copytree(parent, edited)
    cfg = json.loads((edited / "models/lstm/config.json").read_text())
    cfg["overrides"]["lstm_units"] = [5]  # no longer the architecture of the stored model
    (edited / "models/lstm/config.json").write_text(json.dumps(cfg))
    with pytest.raises(BadInputError, match="cannot warm-start"):
        prepare_retrain(edited, files["new"], tmp_path / "r2")


def test_budget_line_says_what_a_person_needs():
    from fabray.train.retrain import budget_line

    line = budget_line({"parent": {"run_id": "r1"}, "retrain": {
        "seconds_used": 41.0, "budget_minutes": 110.0, "replay": {"windows": 1234},
        "scaler_policy": "kept_parent", "stopped_by_budget": ["lstm"], "carried_over": [],
        "ensemble": {"refit": False, "reason": "time budget spent"}}})
    assert line == ("parent r1; 41.0 s of a 110-minute budget; replay 1,234 windows; scaler kept_parent; "
                    "stopped by budget: lstm; ensemble not re-fitted (time budget spent)")


def test_until_trains_on_the_rows_before_it_and_the_manifest_says_so(parent, files, tmp_path):
    """Serving's retrain names the data file it was given and a cut (`until`), and writes no
    copy of the rows before it: the retrain, its manifest and the next retrain's replay of this
    history all read the same rows."""
    import shutil

    import pandas as pd

    from fabray.data.validate import load_validated
    from fabray.train.parent import load_parent
    from fabray.train.retrain import prepare_retrain

    df = load_validated(files["new"])
    until = df["timestamp"].min() + (df["timestamp"].max() - df["timestamp"].min()) * 0.8
    full = prepare_retrain(parent, files["new"], tmp_path / "full")
    job = prepare_retrain(parent, files["new"], tmp_path / "r2", until=until)
    info = job.data_info
    assert info["until"] == until.isoformat() and info["fingerprint"] == sha256_file(files["new"])
    assert info["rows"] == int((df["timestamp"] < until).sum()) < full.data_info["rows"]
    assert pd.Timestamp(info["last_timestamp"]) < until
    assert 0 < len(job.prepared.splits["train"]) < len(full.prepared.splits["train"])
    assert job.manifest_extra["retrain"]["replay"]["history"][0] == {
        "path": str(files["new"].resolve()), "fingerprint": info["fingerprint"], "until": until.isoformat()}

    # a parent that learned from the rows before a cut is replayed from those rows only
    cut_parent = tmp_path / "cut-parent"
    shutil.copytree(parent, cut_parent)
    manifest = json.loads((cut_parent / "manifest.json").read_text())
    old = load_validated(files["old"])
    manifest["data"]["until"] = rd.until_text(old["timestamp"].min() + (old["timestamp"].max() - old["timestamp"].min()) / 2)
    (cut_parent / "manifest.json").write_text(json.dumps(manifest))
    assert load_parent(cut_parent).history()[0]["until"] == manifest["data"]["until"]
    whole = full.manifest_extra["retrain"]["replay"]["sources"][0]
    halved = prepare_retrain(cut_parent, files["new"], tmp_path / "r3").manifest_extra["retrain"]["replay"]["sources"][0]
    assert halved["until"] == manifest["data"]["until"]
    assert 0 < halved["train_windows"] < whole["train_windows"]


def _ensemble_run(run: Path, models: list[str], with_ensemble: bool) -> Path:
    """A run directory's manifest and, optionally, a fitted ensemble (what `fabray ensemble` writes)."""
    run.mkdir(parents=True)
    manifest = {"format": rd.MANIFEST_FORMAT, "run_id": run.name, "status": "complete",
                "models": {n: {"status": "ok"} for n in models}}
    if with_ensemble:
        atomic_write_json(run / "ensemble.json", {"model_names": models, "form": "dynamic", "state": {"z": [1, 2]}})
        (run / "ensemble_trials.csv").write_text("trial,score\n1,0.5\n")
        manifest["ensemble"] = {"file": "ensemble.json", "winner": "abc", "form": "dynamic",
                                "checksums": {"ensemble.json": sha256_file(run / "ensemble.json")}}
    rd.write_manifest(run, manifest)
    return run


def test_models_holding_the_parents_weights_and_what_the_line_says():
    from fabray.train.retrain import budget_line, unchanged_models

    models = {"lstm": {"status": "ok", "best_epoch": 0}, "gru": {"status": "ok", "best_epoch": 2},
              "rule": {"status": "ok", "best_epoch": 0, "carried_over": "not selected (--models)"},
              "spike": {"status": "failed"}}
    assert unchanged_models(models) == ["lstm", "rule"]
    line = budget_line({"parent": {"run_id": "r1"}, "retrain": {
        "seconds_used": 9.0, "budget_minutes": 10.0, "replay": {"windows": 5}, "scaler_policy": "kept_parent",
        "parent_weights_kept": ["lstm"],
        "ensemble": {"refit": False, "reason": "retrain.refit_ensemble is false", "inherited_from": "r1"}}})
    assert "no fine-tuned epoch beat the parent's weights: lstm" in line
    assert line.endswith("ensemble not re-fitted (retrain.refit_ensemble is false; the parent's r1 kept)")


def test_a_child_not_refitted_keeps_the_parents_ensemble(tmp_path):
    from fabray.train.retrain import budget_line, inherit_parent_ensemble

    parent = _ensemble_run(tmp_path / "p", ["lstm", "rule"], with_ensemble=True)
    child = _ensemble_run(tmp_path / "c", ["lstm", "rule"], with_ensemble=False)
    entry = inherit_parent_ensemble(parent, child)
    assert (child / "ensemble.json").read_bytes() == (parent / "ensemble.json").read_bytes()
    assert (child / "ensemble_trials.csv").read_bytes() == (parent / "ensemble_trials.csv").read_bytes()
    assert entry["inherited_from"] == "p" and entry["winner"] == "abc"
    assert entry["checksums"] == {"ensemble.json": sha256_file(child / "ensemble.json"),
                                  "ensemble_trials.csv": sha256_file(child / "ensemble_trials.csv")}
    line = budget_line({"parent": {"run_id": "p"}, "retrain": {"budget_minutes": 9.0, "seconds_used": 500.0,
                        "ensemble": {"refit": False, "reason": "time budget spent", "inherited_from": "p"}}})
    assert line.endswith("ensemble not re-fitted (time budget spent; the parent's p kept)")


def test_no_parent_ensemble_or_other_models_copy_nothing(tmp_path):
    from fabray.train.retrain import inherit_parent_ensemble

    bare = _ensemble_run(tmp_path / "bare", ["lstm", "rule"], with_ensemble=False)
    child = _ensemble_run(tmp_path / "c1", ["lstm", "rule"], with_ensemble=False)
    assert inherit_parent_ensemble(bare, child) is None and not (child / "ensemble.json").exists()
    other = _ensemble_run(tmp_path / "other", ["lstm", "gru"], with_ensemble=True)
    assert inherit_parent_ensemble(other, child) is None and not (child / "ensemble.json").exists()
