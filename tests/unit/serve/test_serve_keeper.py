"""The ensemble keeper: weights used, feedback by prediction id, persistence (fabray.serve.keeper)."""

from __future__ import annotations

import numpy as np
import pytest

from fabray.ensemble import EnsembleParams
from fabray.serve.keeper import EnsembleKeeper

NAMES = ["lstm", "rule"]
PARAMS = EnsembleParams(base_weights=(1.0, 1.0), half_life=5.0, floor=0.05, step_cap=0.2,
                        temperature=0.05).to_dict()


def keeper_with_v1(state_dir=None) -> EnsembleKeeper:
    keeper = EnsembleKeeper(state_dir, pending_capacity=100)
    keeper.ensure("v1", None, PARAMS, NAMES)
    return keeper


def predict(keeper, scores, zone="Z01", degraded=False, rule_score=0.3):
    return keeper.combine("v1", [zone], np.array([scores]), np.array([rule_score]), [degraded])[0]


def test_combine_gives_the_weighted_mean_the_weights_and_an_id():
    keeper = keeper_with_v1()
    out = predict(keeper, [0.8, 0.2])
    assert out["weights"] == pytest.approx({"lstm": 0.5, "rule": 0.5})
    assert out["probability"] == pytest.approx(0.5)
    assert len(out["prediction_id"]) == 32


def test_feedback_moves_weights_towards_the_model_that_was_right():
    keeper = keeper_with_v1()
    ids = [predict(keeper, [0.9, 0.1])["prediction_id"] for _ in range(5)]
    result = keeper.feedback([{"prediction_id": pid, "outcome": 1.0} for pid in ids])
    assert result["applied"] == 5 and result["unknown"] == []
    weights = result["weights"]["v1"]["Z01"]
    assert weights["lstm"] > 0.6 > weights["rule"]
    assert predict(keeper, [0.9, 0.1])["weights"] == pytest.approx(weights)
    assert keeper.weights("v1", ["Z02"])["Z02"] == pytest.approx({"lstm": 0.5, "rule": 0.5})  # other zones untouched


def test_each_prediction_takes_feedback_once_and_unknown_ids_are_reported():
    keeper = keeper_with_v1()
    pid = predict(keeper, [0.9, 0.1])["prediction_id"]
    assert keeper.feedback([{"prediction_id": pid, "outcome": 1}])["applied"] == 1
    again = keeper.feedback([{"prediction_id": pid, "outcome": 1}, {"prediction_id": "nope", "outcome": 0}])
    assert again["applied"] == 0 and again["unknown"] == [pid, "nope"]


def test_a_degraded_window_is_the_rules_score_and_its_feedback_moves_nothing():
    keeper = keeper_with_v1()
    out = predict(keeper, [0.9, 0.1], degraded=True, rule_score=0.7)
    assert out["probability"] == pytest.approx(0.7)
    assert out["weights"] == {"lstm": 0.0, "rule": 1.0}
    result = keeper.feedback([{"prediction_id": out["prediction_id"], "outcome": 1}])
    assert result == {"applied": 0, "skipped_degraded": 1, "unknown": [], "weights": {}}


def test_the_pending_buffer_forgets_the_oldest_first():
    keeper = EnsembleKeeper(None, pending_capacity=3)
    keeper.ensure("v1", None, PARAMS, NAMES)
    ids = [predict(keeper, [0.5, 0.5])["prediction_id"] for _ in range(4)]
    result = keeper.feedback([{"prediction_id": pid, "outcome": 0} for pid in ids])
    assert result["unknown"] == ids[:1] and result["applied"] == 3


def test_state_survives_a_new_keeper(tmp_path):
    keeper = keeper_with_v1(tmp_path)
    ids = [predict(keeper, [0.9, 0.1])["prediction_id"] for _ in range(4)]
    keeper.feedback([{"prediction_id": pid, "outcome": 1} for pid in ids[:3]])
    weights = keeper.weights("v1", ["Z01"])
    assert keeper.save() == ["v1"]
    assert keeper.save() == []  # nothing changed since

    restarted = keeper_with_v1(tmp_path)  # e.g. after a replica restart
    assert restarted.weights("v1", ["Z01"]) == weights
    assert restarted.feedback([{"prediction_id": ids[3], "outcome": 1}])["applied"] == 1  # pending kept


def test_fitted_state_is_used_when_nothing_was_persisted(tmp_path):
    donor = keeper_with_v1()
    pid = predict(donor, [0.9, 0.1])["prediction_id"]
    donor.feedback([{"prediction_id": pid, "outcome": 1}])
    fitted = donor._ensembles["v1"].to_state()
    keeper = EnsembleKeeper(tmp_path, 10)
    keeper.ensure("v1", fitted, PARAMS, NAMES)
    assert keeper.weights("v1", ["Z01"]) == donor.weights("v1", ["Z01"])


def test_versions_have_separate_ensembles():
    keeper = keeper_with_v1()
    keeper.ensure("v2", None, PARAMS, NAMES)
    ids = [predict(keeper, [0.9, 0.1])["prediction_id"] for _ in range(3)]
    keeper.feedback([{"prediction_id": pid, "outcome": 1} for pid in ids])
    assert keeper.weights("v2", ["Z01"])["Z01"] == pytest.approx({"lstm": 0.5, "rule": 0.5})
    assert not keeper.has("v3")
