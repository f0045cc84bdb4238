"""`fabray train` with the LightGBM member on the session's local Ray: it is fitted as a Ray task,
lands with its checksums, RunPredictor scores it, and `fabray retrain` refits it (issue 12 item 2).

The run holds the gbt member alone: its path (a Ray task, not a Ray Train trainer) is what this
module checks, and a Keras trainer beside it would cost a training for nothing (every Keras path
runs in the other modules; a Keras model and the gbt member scored side by side, through
RunPredictor and the serving bundle: tests/unit/test_gbt_member.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from _tiny_run import TINY_CONFIG

from fabray.cli import main

pytestmark = pytest.mark.ray
pytest.importorskip("lightgbm")


@pytest.fixture(scope="module")
def gbt_run(ray_cluster, tiny_data, tmp_path_factory):
    cfg = tmp_path_factory.mktemp("gbt_cfg") / "gbt.yaml"
    train = {**TINY_CONFIG["train"], "models": ["gbt"],
             "model_overrides": {**TINY_CONFIG["train"]["model_overrides"], "gbt": {"n_estimators": 30}}}
    cfg.write_text(yaml.safe_dump({"train": train}))
    run = tmp_path_factory.mktemp("gbt_runs") / "g1"
    code = main(["train", "--data", str(tiny_data), "--out", str(run), "--config", str(cfg)])
    return code, run


def test_the_gbt_member_lands_in_the_run_and_scores_through_run_predictor(gbt_run, tiny_data):
    from fabray.data.validate import load_validated
    from fabray.data.windows import gather_windows
    from fabray.models.gbt import window_lag_features
    from fabray.predictor import RunPredictor

    code, run = gbt_run
    assert code == 0
    manifest = json.loads((run / "manifest.json").read_text())
    entry = manifest["models"]["gbt"]
    assert entry["status"] == "ok" and entry["kind"] == "lightgbm"
    assert set(entry["checksums"]) == {"models/gbt/model.txt", "models/gbt/config.json"}
    assert json.loads((run / entry["config"]).read_text())["gbt"]["n_estimators"] == 30
    assert 0 < entry["best_epoch"] <= entry["epochs_run"] <= 30
    assert 0 <= entry["val_metrics"]["pr_auc"] <= 1

    p = RunPredictor.load(run)
    assert p.model_names == ("gbt",) and p.keras_names == ()
    prepared = p.prepare(load_validated(tiny_data))
    ends = prepared.splits["all"][:500]
    scores = p.score_prepared(prepared, ends)
    member = p.model("gbt")
    x = window_lag_features(gather_windows(prepared.features, ends, p.lookback), member.spec, p.scaler)
    np.testing.assert_array_equal(scores["gbt"], member.booster.predict(x))


def test_retrain_refits_the_gbt_member(gbt_run, tiny_data, tmp_path):
    code, run = gbt_run
    assert code == 0
    out = tmp_path / "g2"
    assert main(["retrain", "--run", str(run), "--data", str(tiny_data), "--out", str(out),
                 "--budget-minutes", "30"]) == 0
    entry = json.loads((out / "manifest.json").read_text())["models"]["gbt"]
    assert entry["status"] == "ok" and entry["kind"] == "lightgbm" and "warm_start" not in entry
    assert (out / entry["model"]).is_file()
