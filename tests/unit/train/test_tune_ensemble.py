"""The pure pieces of `fabray ensemble` (the Tune run itself is in tests/integration)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fabray.config import EnsembleConfig
from fabray.ensemble import EnsembleParams, replay
from fabray.metrics import best_threshold, event_metrics
from fabray.train import tune_ensemble as te


def _validation(n_per_zone: int = 300, seed: int = 0) -> te.ValidationScores:
    """Two zones; model 'good' tracks the outcome, 'bad' is noise."""
    rng = np.random.default_rng(seed)
    y = (rng.random(2 * n_per_zone) < 0.2).astype(float)
    good = np.clip(0.7 * y + 0.15 + 0.1 * rng.standard_normal(y.size), 0, 1)
    bad = rng.random(y.size)
    return te.ValidationScores(
        model_names=("good", "bad"), scores=np.stack([good, bad], axis=1), outcomes=y,
        zone_codes=np.repeat([0, 1], n_per_zone), zone_names=("Z01", "Z02"), feedback_lag=10,
    )


def test_candidate_metrics_solve_the_threshold_for_f1():
    data = _validation()
    params = EnsembleParams(base_weights=(1.0, 1.0), half_life=20.0, temperature=0.05, step_cap=0.1)
    metrics, fitted = te.candidate_metrics(params, data)
    prob, _ = replay(data.scores, data.outcomes, data.zone_codes, None, params, data.feedback_lag)
    thr, f1 = best_threshold(data.outcomes, prob)
    assert fitted.threshold == pytest.approx(thr) == pytest.approx(metrics["threshold"])
    assert metrics["f1"] == pytest.approx(f1)
    assert metrics["f1"] >= event_metrics(data.outcomes, prob, 0.5)["f1"]
    assert fitted.half_life == params.half_life  # only the threshold changes


def test_dynamic_weights_beat_uniform_static_when_one_model_is_noise():
    data = _validation()
    dynamic, _ = te.candidate_metrics(EnsembleParams(base_weights=(1.0, 1.0), half_life=20.0,
                                                     temperature=0.02, floor=0.0, step_cap=1.0), data)
    static, _ = te.candidate_metrics(EnsembleParams.static([1.0, 1.0]), data)
    assert dynamic["f1"] > static["f1"]


def test_rank_and_objective_put_the_primary_metric_first():
    a = {"f1": 0.60, "pr_auc": 0.10}
    b = {"f1": 0.59, "pr_auc": 0.90}
    c = {"f1": 0.60, "pr_auc": 0.20}
    assert sorted([a, b, c], key=lambda m: te.rank_key(m, "f1"), reverse=True) == [c, a, b]
    assert sorted([a, b, c], key=lambda m: te.rank_key(m, "pr_auc"), reverse=True)[0] is b
    assert te.objective(c, "f1") == pytest.approx(0.60 + 1e-3 * 0.20)
    assert te.rank_key({"f1": math.nan, "pr_auc": 0.5}, "f1")[0] == -math.inf


def test_configured_point_lies_in_the_space_and_keeps_weight_ratios():
    from fabray.ensemble import search_space

    cfg = EnsembleConfig(base_weights={"a": 4.0, "b": 1.0}, half_life=1e6, step_cap=0.05)
    point = te.configured_point(cfg, ["a", "b", "c"])
    space = search_space(["a", "b", "c"])
    for key, spec in space.items():
        if key in point and spec["type"] in ("uniform", "loguniform"):
            assert spec["low"] <= point[key] <= spec["high"], key
    assert point["base_weight_a"] / point["base_weight_b"] == pytest.approx(4.0)
    assert point["base_weight_a"] == pytest.approx(space["base_weight_a"]["high"])
    assert point["half_life"] == space["half_life"]["high"]  # clipped


def test_tune_space_leaves_the_threshold_to_be_solved():
    space = te.tune_space(["lstm", "rule"])
    assert "threshold" not in space
    assert {"base_weight_lstm", "base_weight_rule", "half_life", "loss"} <= set(space)


def test_fitted_state_has_seen_every_outcome_and_trusts_the_good_model():
    data = _validation()
    params = EnsembleParams(base_weights=(1.0, 1.0), half_life=20.0, temperature=0.02, step_cap=0.1)
    state = te.fitted_state(params, data)
    trackers = {t["zone"]: t for t in state["trackers"]}
    assert set(trackers) == {"Z01", "Z02"}
    assert trackers["Z01"]["updates"] == 300
    assert trackers["Z01"]["weights"][0] > 0.8  # "good" dominates after 300 outcomes


def test_static_candidates_add_the_winner_base_only_when_it_differs():
    data = _validation()
    assert set(te.static_candidates(data, (1.0, 1.0))) == {"static_uniform"}
    both = te.static_candidates(data, (3.0, 1.0))
    assert set(both) == {"static_uniform", "static_winner_base"}
    assert both["static_winner_base"].is_static
