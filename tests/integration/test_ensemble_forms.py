"""`fabray ensemble` chooses among forms and members on validation; `fabray evaluate` replays the
served ensemble from its fitted state through the code serving uses.

On the session's tiny run with its fitted ensemble (`tiny_ensemble_run`: lstm and rule, Tune
trials on the session's local Ray), tested on a tiny fab simulated with another seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fabray.cli import main

pytestmark = pytest.mark.ray

@pytest.fixture(scope="module")
def fitted(tiny_ensemble_run, tmp_path_factory) -> dict[str, Path]:
    """The session's tiny run with its fitted ensemble (read-only), and another tiny fab to test on."""
    from fabray.data.io import write_table
    from fabray.data.simulate import simulate_preset

    d = tmp_path_factory.mktemp("forms")
    write_table(simulate_preset("tiny", seed=13), d / "test.parquet")
    return {"run": tiny_ensemble_run, "test": d / "test.parquet", "dir": d}


def test_the_served_ensemble_is_never_worse_than_its_best_member_on_validation(fitted):
    doc = json.loads((fitted["run"] / "ensemble.json").read_text())
    assert doc["form"] in ("member", "static", "dynamic", "gate")
    assert doc["state"]["kind"] == "fabray-served-ensemble" and doc["state"]["members"] == doc["members"]
    val = doc["validation"]
    # the served ensemble (calibrated, under its alarm policy) against each model under its own
    # fitted alarm policy: the same footing (the search itself compares bare thresholds)
    served = val["served"]["lead_score"]
    assert all(served >= m["lead_score"] - 1e-9 for m in val["models"].values()), (served, val["models"])
    assert set(val["best_by_form"]) >= {"member", "static", "gate"}
    assert doc["calibration"]["chosen"] in ("identity", "platt", "isotonic")
    assert set(doc["calibration"]["brier_cv"]) == {"identity", "platt", "isotonic"}
    if doc["form"] == "member":
        assert len(doc["members"]) == 1 and any("single member" in n for n in doc["notes"])


def test_evaluate_replays_the_served_ensemble_from_its_fitted_state(fitted, tmp_path):
    from fabray.data.validate import load_validated
    from fabray.data.windows import ends_with_target
    from fabray.ensemble.served import run_online
    from fabray.metrics import event_metrics
    from fabray.predictor import RunPredictor
    from fabray.run_data import segment_codes

    out, report = tmp_path / "m.json", tmp_path / "report"
    assert main(["evaluate", "--run", str(fitted["run"]), "--data", str(fitted["test"]), "--json", str(out),
                 "--report", str(report)]) == 0
    result = json.loads(out.read_text())
    info = result["ensemble_info"]["served"]
    doc = json.loads((fitted["run"] / "ensemble.json").read_text())
    assert info["start"] == "fitted state" and info["form"] == doc["form"] and info["members"] == doc["members"]
    assert result["ensemble"]["threshold"] == pytest.approx(doc["state"]["threshold"])
    assert (report / "reliability.png").stat().st_size > 10_000

    # The same numbers from the object serving loads (predictor.new_ensemble, the fitted state).
    predictor = RunPredictor.load(fitted["run"], warm_up=False)
    prepared = predictor.prepare(load_validated(fitted["test"]), None)
    ends = np.asarray(ends_with_target(prepared, prepared.splits["all"]))
    scores = predictor.score_prepared(prepared, ends)
    matrix = np.stack([scores[n] for n in predictor.model_names], axis=1)
    served = predictor.new_ensemble()
    first_zone = prepared.zones[prepared.zone_codes[ends[0]]]
    fitted_weights = served.weights(first_zone, served.context_from_rows(prepared.features[ends[:1]])
                                    [0] if served.form == "gate" else None)
    target = prepared.target[ends].astype(float)
    prob, weights = run_online(served, [prepared.zones[c] for c in prepared.zone_codes[ends]], matrix, target,
                               doc["feedback_lag"], served.context_from_rows(prepared.features[ends]))
    assert weights[0].tolist() == pytest.approx([fitted_weights[n] for n in predictor.model_names])
    # the served decision is the ensemble's alarm policy over each zone's minutes (fabray.alarm)
    alarm = served.alarm.alarms(prob, segment_codes(prepared, ends))
    mine = event_metrics(target, prob, served.threshold, alarm=alarm)
    assert mine["f1"] == pytest.approx(result["ensemble"]["f1"]) and mine["pr_auc"] == pytest.approx(
        result["ensemble"]["pr_auc"])
