"""`fabray backtest`: two rolling-origin folds of the tiny fab, each trained, ensembled (Ray Tune)
and evaluated for real on its own unseen test block, on the session's local Ray."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_two_folds_train_fit_and_evaluate_on_consecutive_unseen_blocks(ray_cluster, tiny_data, tmp_path, capsys):
    import yaml
    from _tiny_run import TINY_CONFIG

    from fabray.cli import main

    config = tmp_path / "one_epoch.yaml"  # the tiny run's models, one epoch per fold
    config.write_text(yaml.safe_dump({"train": {**TINY_CONFIG["train"], "epochs": 1}}))
    out = tmp_path / "bt"
    code = main(["backtest", "--data", str(tiny_data), "--folds", "2", "--config", str(config),
                 "--trials", "2", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "ensemble − best member: lead score" in printed and "/2 folds" in printed

    doc = json.loads((out / "backtest.json").read_text())
    assert doc["status"] == "complete" and doc["folds_done"] == 2
    folds = doc["folds"]
    assert folds[0]["end"] == folds[1]["origin"]  # the origin moved by one test block
    for fold in folds:
        evaluation = json.loads((out / f"fold{fold['index']}" / "evaluation.json").read_text())
        tested = evaluation["data"]
        # scored on the fold's own test split only, which lies inside its test block
        assert tested["windows_used"] == "test split of the training file"
        assert np.datetime64(tested["first_timestamp"]) >= np.datetime64(fold["origin"])
        assert np.datetime64(tested["last_timestamp"]) < np.datetime64(fold["end"])
        manifest = json.loads((out / f"fold{fold['index']}" / "run" / "manifest.json").read_text())
        assert manifest["status"] == "complete"
    summary = doc["summary"]
    ens = summary["candidates"]["ensemble"]["lead_score"]["per_fold"]
    assert len(ens) == 2
    for f, rows in enumerate(ens):
        evaluation = json.loads((out / f"fold{f}" / "evaluation.json").read_text())
        assert rows == pytest.approx(evaluation["ensemble"]["lead_score"], nan_ok=True)
    assert {"lstm", "rule", "ensemble", "static_ensemble", "persistence"} <= set(summary["candidates"])
    assert (out / "backtest.png").stat().st_size > 5_000

    # a second backtest into the same directory is refused before any work
    assert main(["backtest", "--data", str(tiny_data), "--folds", "2", "--out", str(out)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
