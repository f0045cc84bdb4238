"""`fabray ensemble` (Ray Tune on the session's local Ray) and `fabray evaluate` on a tiny run.

The session's tiny run (two small models, trained once for every module: `tiny_ensemble_run` in
tests/integration/conftest.py) gets its ensemble from a Tune step of a few trials; evaluate
scores a fab simulated with another seed and writes JSON and a report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _tiny_run import TINY_MODELS

from fabray.cli import main

pytestmark = pytest.mark.ray

MODELS = TINY_MODELS
PLOTS = ("leaderboard.png", "pr_curves.png", "timeline.png", "weights.png", "lead_times.png")


@pytest.fixture(scope="module")
def files(tiny_data, tmp_path_factory) -> dict[str, Path]:
    from fabray.data.io import write_table
    from fabray.data.simulate import simulate_preset

    test = tmp_path_factory.mktemp("ens_data") / "test.parquet"
    write_table(simulate_preset("tiny", seed=5), test)  # a fab the run never saw
    return {"train": tiny_data, "test": test}


@pytest.fixture(scope="module")
def fitted_run(tiny_ensemble_run) -> Path:
    """The session's tiny run (trained on `files["train"]`) with its ensemble fitted."""
    return tiny_ensemble_run


def test_ensemble_writes_winner_state_and_trials_into_the_manifest(fitted_run):
    import pandas as pd

    from fabray.files import sha256_file
    from fabray.predictor import RunPredictor

    doc = json.loads((fitted_run / "ensemble.json").read_text())
    assert doc["model_names"] == list(MODELS)
    assert doc["feedback_lag"] == 10
    assert len(doc["params"]["base_weights"]) == 2
    assert doc["form"] in ("member", "static", "dynamic", "gate") and doc["state"]["form"] == doc["form"]
    assert doc["static_params"]["half_life"] == "inf"
    assert {t["zone"] for t in doc["state"]["inner"]["trackers"]} == {"Z01", "Z02", "Z03", "Z04"}
    assert set(doc["model_thresholds"]) == set(MODELS)
    val = doc["validation"]
    assert 0 < val["dynamic"]["f1"] <= 1 and val["dynamic"]["threshold"] == doc["params"]["threshold"]
    # Ranked and thresholded by the headline lead score (the default ensemble.tune_metric).
    assert doc["search"]["metric"] == "lead_score" and doc["search"]["tie_breaker"] == "f1"
    assert "best_lead_threshold" in doc["search"]["threshold"]
    assert val["dynamic"]["lead_score"] is not None and val["dynamic"]["lead_score"] <= 100

    trials = pd.read_csv(fitted_run / "ensemble_trials.csv")
    fixed = {"static_uniform", "static_winner_base", "static_all", "gate_all", *(f"member_{m}" for m in MODELS)}
    tune_rows = trials[~trials["trial"].isin(fixed)]
    assert len(tune_rows) == 4 and (tune_rows["status"] == "ok").all()
    candidates = trials[~trials["trial"].isin({"static_uniform", "static_winner_base"})]
    assert doc["winner"] in set(candidates["trial"])
    best = candidates.sort_values(["lead_score", "f1"], ascending=False).iloc[0]
    verdict = doc["clear_win"]  # a combination is served only if it beats the best member clearly
    if any("under its alarm policy" in n for n in doc["notes"]):
        # the search's winner, as served, lost to a member under that member's own alarm policy
        assert doc["form"] == "member" and doc["winner"] == f"member_{doc['members'][0]}"
        assert val["served"]["lead_score"] >= max(m["lead_score"] for m in val["models"].values()) - 1e-9
    elif verdict is None or verdict["clear"]:
        assert best["lead_score"] == pytest.approx(val["served_uncalibrated"]["lead_score"])
    else:
        assert doc["form"] == "member" and doc["winner"] == verdict["best_member"]
        challenger = candidates[candidates["trial"] == verdict["challenger"]].iloc[0]
        assert best["lead_score"] == pytest.approx(challenger["lead_score"])

    manifest = json.loads((fitted_run / "manifest.json").read_text())
    entry = manifest["ensemble"]
    assert entry["file"] == "ensemble.json" and entry["trials"] == "ensemble_trials.csv"
    for rel, digest in entry["checksums"].items():
        assert sha256_file(fitted_run / rel) == digest
    predictor = RunPredictor.load(fitted_run, warm_up=False)
    assert predictor.ensemble is not None and predictor.new_ensemble().model_names == MODELS


def test_evaluate_writes_the_design_json_and_a_report_with_every_plot(fitted_run, files, tmp_path):
    out, report = tmp_path / "metrics.json", tmp_path / "report"
    code = main(["evaluate", "--run", str(fitted_run), "--data", str(files["test"]), "--json", str(out),
                 "--report", str(report)])
    assert code == 0
    result = json.loads(out.read_text())
    assert {"models", "ensemble", "baselines", "static_ensemble", "roi"} <= set(result)
    assert result["headline"] == "lead_score"
    board = result["leaderboard"]
    keys = [(e["lead_score"] if e["lead_score"] is not None else -1e9, e["f1"] or 0) for e in board]
    assert keys == sorted(keys, reverse=True)
    assert {"warned_at_start", "median_lead_min", "false_alarm_runs_per_zone_day", "f1", "pr_auc"} <= set(board[0])
    assert set(result["models"]) == set(MODELS)
    assert set(result["baselines"]) == {"persistence", "rules", "gbt"}
    assert result["data"]["windows_used"].startswith("all windows")
    for metrics in [*result["models"].values(), result["ensemble"], result["static_ensemble"],
                    result["baselines"]["persistence"], result["baselines"]["rules"]]:
        for key in ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "pr_auc", "roc_auc"):
            assert 0.0 <= metrics[key] <= 1.0, key
        lead = metrics["lead"]
        assert lead["episodes"] > 0
        for key in ("warned_at_start", "warned_before_onset", "warned_5min_before_onset", "median_lead_min",
                    "false_alarm_runs_per_zone_day", "lead_score", "lead_score_low_fp", "lead_score_low_fn"):
            assert key in lead, key
        assert lead["warned_at_start"] <= lead["warned_before_onset"] <= lead["episodes"]
        assert metrics["lead_score"] == lead["lead_score"]
    gbt = result["baselines"]["gbt"]
    assert "f1" in gbt or "skipped" in gbt
    assert "lead" in gbt or "skipped" in gbt
    roi = result["roi"]
    lead = result["ensemble"]["lead"]
    assert roi["delays_caught_per_day"] == pytest.approx(lead["warned_at_start"] / lead["episodes"] * 37)
    assert roi["delays_caught_minute_recall_per_day"] == pytest.approx(result["ensemble"]["recall"] * 37)
    text = (report / "report.md").read_text()
    for name in PLOTS:
        png = report / name
        assert png.stat().st_size > 10_000, name  # a drawn figure, not an empty canvas
        assert f"({name})" in text
    assert "net value per month" in text
    assert "lead score" in text and "false-alarm runs" in text
    import pandas as pd

    if "cause" in pd.read_parquet(files["test"]).columns:  # the simulator's diagnostic column
        by_cause = result["ensemble"]["lead_by_cause"]
        assert sum(t["episodes"] for t in by_cause.values()) == result["ensemble"]["lead"]["episodes"]
        assert "### By cause" in text


def test_evaluate_on_the_training_file_scores_its_test_split_only(fitted_run, files, tmp_path):
    out = tmp_path / "same.json"
    assert main(["evaluate", "--run", str(fitted_run), "--data", str(files["train"]), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    manifest = json.loads((fitted_run / "manifest.json").read_text())
    assert result["data"]["windows_used"] == "test split of the training file"
    assert result["data"]["windows"] == manifest["data"]["windows"]["test"]


def test_ensemble_and_evaluate_refuse_a_directory_that_is_no_run(tmp_path, files, capsys):
    assert main(["ensemble", "--run", str(tmp_path), "--trials", "2"]) == 2
    assert "manifest.json" in capsys.readouterr().err
    assert main(["evaluate", "--run", str(tmp_path), "--data", str(files["test"])]) == 2
