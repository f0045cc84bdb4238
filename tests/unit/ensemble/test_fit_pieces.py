"""The pure pieces of `fabray ensemble` (the Tune run itself is in tests/integration)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fabray.config import EnsembleConfig
from fabray.ensemble import EnsembleParams, replay
from fabray.metrics import best_lead_threshold, best_threshold, event_metrics, lead_metrics
from fabray.ensemble import objective as obj
from fabray.ensemble import selection as sel
from fabray.ensemble import tune as te


def _validation(n_per_zone: int = 300, seed: int = 0) -> obj.ValidationScores:
    """Two zones; model 'good' tracks the outcome, 'bad' is noise."""
    rng = np.random.default_rng(seed)
    y = (rng.random(2 * n_per_zone) < 0.2).astype(float)
    good = np.clip(0.7 * y + 0.15 + 0.1 * rng.standard_normal(y.size), 0, 1)
    bad = rng.random(y.size)
    return obj.ValidationScores(
        model_names=("good", "bad"), scores=np.stack([good, bad], axis=1), outcomes=y,
        zone_codes=np.repeat([0, 1], n_per_zone), zone_names=("Z01", "Z02"), feedback_lag=10,
    )


def _episodes_validation(n_per_zone: int = 400, seed: int = 1) -> obj.ValidationScores:
    """Two zones with 8-minute delay episodes; 'early' rises 4 minutes before each episode,
    'echo' rises only once it is under way (a detector); each row's own delay is late from s + 2."""
    rng = np.random.default_rng(seed)
    n = 2 * n_per_zone
    y = np.zeros(n)
    starts = [s for s in range(30, n - 30, 60) if s % n_per_zone < n_per_zone - 30]
    for s in starts:
        y[s:s + 8] = 1
    early = 0.1 + 0.05 * rng.random(n)
    echo = early.copy()
    delay = np.zeros(n)
    for s in starts:
        early[s - 4:s + 8] = 0.6
        echo[s + 1:s + 9] = 0.9
        delay[s + 2:s + 9] = 120.0
    return obj.ValidationScores(
        model_names=("early", "echo"), scores=np.stack([early, echo], axis=1), outcomes=y,
        zone_codes=np.repeat([0, 1], n_per_zone), zone_names=("Z01", "Z02"), feedback_lag=10,
        segments=np.repeat([0, 1], n_per_zone), minute_delay_s=delay, sla_delay_s=60.0, horizon=10,
    )


def test_candidate_metrics_solve_the_threshold_for_the_lead_score_by_default():
    data = _episodes_validation()
    params = EnsembleParams.static([1.0, 1.0])
    metrics, fitted = obj.candidate_metrics(params, data)
    prob, _ = replay(data.scores, data.outcomes, data.zone_codes, params, data.feedback_lag)
    thr, score = best_lead_threshold(data.outcomes, prob, data.segments, data.minute_delay_s, 60.0, 10)
    assert fitted.threshold == pytest.approx(thr) == pytest.approx(metrics["threshold"])
    assert metrics["lead_score"] == pytest.approx(score)
    for key in obj.LEAD_KEYS:
        assert key in metrics, key
    assert metrics["lead_score"] >= lead_metrics(data.outcomes, prob >= 0.5, *data.lead_inputs())["lead_score"]


def test_model_thresholds_prefer_early_warnings_over_echoes():
    data = _episodes_validation()
    policies, metrics = sel.model_alarms(data)
    assert metrics["early"]["warned_at_start_fraction"] == 1.0
    assert metrics["echo"]["warned_at_start_fraction"] == 0.0
    assert metrics["early"]["lead_score"] > metrics["echo"]["lead_score"]
    assert metrics["early"]["alarm_policy"] == policies["early"].to_dict()
    f1_policies, _ = sel.model_alarms(data, "f1")
    assert f1_policies["echo"].plain
    assert f1_policies["echo"].threshold == pytest.approx(best_threshold(data.outcomes, data.scores[:, 1])[0])
    plain, _ = sel.model_alarms(data, hysteresis=False)
    assert all(p.plain for p in plain.values())


def test_lead_inputs_fall_back_to_zones_without_segments():
    data = _validation()
    segments, delay, sla, horizon = data.lead_inputs()
    np.testing.assert_array_equal(segments, data.zone_codes)
    assert not delay.any() and (sla, horizon) == (60.0, 10)


def test_candidate_metrics_solve_the_threshold_for_f1():
    data = _validation()
    params = EnsembleParams(base_weights=(1.0, 1.0), half_life=20.0, temperature=0.05, step_cap=0.1)
    metrics, fitted = obj.candidate_metrics(params, data, "f1")
    prob, _ = replay(data.scores, data.outcomes, data.zone_codes, params, data.feedback_lag)
    thr, f1 = best_threshold(data.outcomes, prob)
    assert fitted.threshold == pytest.approx(thr) == pytest.approx(metrics["threshold"])
    assert metrics["f1"] == pytest.approx(f1)
    assert metrics["f1"] >= event_metrics(data.outcomes, prob, 0.5)["f1"]
    assert fitted.half_life == params.half_life  # only the threshold changes


def test_dynamic_weights_beat_uniform_static_when_one_model_is_noise():
    data = _validation()
    dynamic, _ = obj.candidate_metrics(EnsembleParams(base_weights=(1.0, 1.0), half_life=20.0,
                                                     temperature=0.02, floor=0.0, step_cap=1.0), data, "f1")
    static, _ = obj.candidate_metrics(EnsembleParams.static([1.0, 1.0]), data, "f1")
    assert dynamic["f1"] > static["f1"]


def test_rank_and_objective_put_the_primary_metric_first():
    a = {"f1": 0.60, "pr_auc": 0.10}
    b = {"f1": 0.59, "pr_auc": 0.90}
    c = {"f1": 0.60, "pr_auc": 0.20}
    assert sorted([a, b, c], key=lambda m: sel.rank_key(m, "f1"), reverse=True) == [c, a, b]
    assert sorted([a, b, c], key=lambda m: sel.rank_key(m, "pr_auc"), reverse=True)[0] is b
    assert sel.objective(c, "f1") == pytest.approx(0.60 + 1e-3 * 0.20)
    assert sel.rank_key({"f1": math.nan, "pr_auc": 0.5}, "f1")[0] == -math.inf
    # The headline: lead_score first, F1 breaks ties.
    d = {"lead_score": 40.0, "f1": 0.2}
    e = {"lead_score": 40.0, "f1": 0.3}
    f = {"lead_score": 39.0, "f1": 0.9}
    assert sorted([d, e, f], key=lambda m: sel.rank_key(m, "lead_score"), reverse=True) == [e, d, f]
    assert sel.objective(e, "lead_score") == pytest.approx(40.0 + 1e-3 * 0.3)
    assert EnsembleConfig().tune_metric == "lead_score"


def test_configured_point_lies_in_the_space_and_keeps_weight_ratios():
    from fabray.ensemble import search_space

    cfg = EnsembleConfig(base_weights={"a": 4.0, "b": 1.0}, half_life=1e6, step_cap=0.05)
    point = sel.configured_point(cfg, ["a", "b", "c"])
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
    state = sel.fitted_state(params, data)
    trackers = {t["zone"]: t for t in state["trackers"]}
    assert set(trackers) == {"Z01", "Z02"}
    assert trackers["Z01"]["updates"] == 300
    assert trackers["Z01"]["weights"][0] > 0.8  # "good" dominates after 300 outcomes


def test_static_candidates_add_the_winner_base_only_when_it_differs():
    data = _validation()
    assert set(sel.static_candidates(data, (1.0, 1.0))) == {"static_uniform"}
    both = sel.static_candidates(data, (3.0, 1.0))
    assert set(both) == {"static_uniform", "static_winner_base"}
    assert both["static_winner_base"].is_static
