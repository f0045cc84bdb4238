"""The served ensemble: one object and one code path offline (evaluate) and online (the keeper),
starting from the state fitted on validation; the gate, its cross-fitting; calibration; the form
search never worse than its best member."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fabray.ensemble import EnsembleParams, replay
from fabray.ensemble.calibrate import Calibrator, choose_calibrator, fit_isotonic, fit_platt, reliability
from fabray.ensemble.dynamic import DynamicEnsemble
from fabray.ensemble.gate import Gate, GateParams, context_index, cross_fit, fit_gate, time_blocks
from fabray.ensemble.objective import ValidationScores, evaluate_sample, fit_served, members_of
from fabray.ensemble.replay import lagged_errors
from fabray.ensemble.served import ServedEnsemble, run_online
from fabray.serve.keeper import EnsembleKeeper

NAMES = ("a", "b", "noise")


def _series(n_per_zone: int = 600, seed: int = 0, zones: int = 2) -> ValidationScores:
    """Member 'a' is right when the context is high, 'b' when it is low, 'noise' never; delay
    episodes of 8 minutes; one context column (queue_len)."""
    rng = np.random.default_rng(seed)
    n = zones * n_per_zone
    ctx = np.repeat(np.sin(np.arange(n_per_zone) / 40.0)[None], zones, axis=0).reshape(-1)  # [N]
    y = np.zeros(n)
    for z in range(zones):
        for s in range(20 + 7 * z, n_per_zone - 20, 50):
            y[z * n_per_zone + s:z * n_per_zone + s + 8] = 1
    warn = np.maximum(y, np.r_[y[3:], np.zeros(3)])  # rises 3 minutes before each episode
    good = np.clip(0.8 * warn + 0.1 + 0.05 * rng.standard_normal(n), 0.01, 0.99)
    spikes = np.convolve(rng.random(n) < 0.02, np.ones(6), mode="same") > 0  # false alarms, misses every episode
    bad = np.clip(np.where(spikes & (y == 0), 0.9, 0.1) + 0.05 * rng.standard_normal(n), 0.01, 0.99)
    a = np.where(ctx > 0, good, bad)
    b = np.where(ctx > 0, bad, good)
    noise = rng.random(n)
    return ValidationScores(
        model_names=NAMES, scores=np.stack([a, b, noise], axis=1), outcomes=y,
        zone_codes=np.repeat(np.arange(zones), n_per_zone), zone_names=tuple(f"Z{z:02d}" for z in range(zones)),
        feedback_lag=10, segments=np.repeat(np.arange(zones), n_per_zone), minute_delay_s=np.where(y == 1, 120.0, 0.0),
        sla_delay_s=60.0, horizon=10, context=ctx[:, None], context_names=("queue_len",), context_index=(0,),
        times=np.tile(np.arange(n_per_zone, dtype=float), zones),
    )


# ---------------------------------------------------------------------------- one code path


def test_run_online_equals_the_vectorized_replay_for_the_dynamic_form():
    data = _series()
    params = EnsembleParams(base_weights=(1.0, 2.0, 1.0), half_life=15.0, temperature=0.02, step_cap=0.1, floor=0.05)
    served = ServedEnsemble.from_params(params, NAMES)
    prob, weights = run_online(served, data.row_zones(), data.scores, data.outcomes, 10)
    ref_prob, ref_w = replay(data.scores, data.outcomes, data.zone_codes, params, 10)
    np.testing.assert_allclose(prob, ref_prob, rtol=0, atol=1e-12)
    np.testing.assert_allclose(weights, ref_w, rtol=0, atol=1e-12)
    # After the replay the object has learned every outcome (the fitted state).
    assert served.inner.to_state()["trackers"][0]["updates"] == 600


def test_test_replay_starts_from_the_fitted_state_and_matches_the_keeper_window_by_window(tmp_path):
    val, test = _series(seed=0), _series(seed=1)
    sample = {"form": "dynamic", "members": ["a", "b"], "half_life": 20.0, "temperature": 0.02, "step_cap": 0.2,
              "floor_share": 0.0}
    served, _, _ = fit_served(sample, val)
    state = json.loads(json.dumps(served.to_state()))  # through JSON, as ensemble.json
    fitted = ServedEnsemble.from_state(state)
    base = ServedEnsemble.from_state(state).inner.params.base_weights
    # Offline (evaluate): the first test prediction uses the fitted weights, not the base ones.
    offline = ServedEnsemble.from_state(state)
    prob, weights = run_online(offline, test.row_zones(), test.scores, test.outcomes, 10)
    first = fitted.weights("Z00")
    assert weights[0].tolist() == [first[n] for n in NAMES]
    assert abs(first["a"] - base[0] / sum(base)) > 0.05 and first["noise"] == 0.0
    # Online (the serving keeper), fed the same minutes and the same feedback: the same numbers.
    keeper = EnsembleKeeper(tmp_path)
    keeper.ensure("v1", state, served.params.to_dict(), NAMES)
    pending: dict[str, list[str]] = {}
    for i, zone in enumerate(test.row_zones()):
        ids = pending.setdefault(zone, [])
        if len(ids) >= 10:
            keeper.feedback([{"prediction_id": ids[-10], "outcome": test.outcomes[i - 10]}])
        out = keeper.combine("v1", [zone], test.scores[i:i + 1], np.zeros(1), [False])[0]
        assert out["probability"] == pytest.approx(prob[i], abs=1e-12)
        assert [out["weights"][n] for n in NAMES] == pytest.approx(weights[i].tolist(), abs=1e-12)
        ids.append(out["prediction_id"])


def test_old_dynamic_states_still_load_as_the_dynamic_form():
    ens = DynamicEnsemble(EnsembleParams(base_weights=(1.0, 1.0, 1.0), threshold=0.3), NAMES)
    ens.update("Z01", [0.9, 0.1, 0.5], 1.0)
    served = ServedEnsemble.from_state(ens.to_state())
    assert served.form == "dynamic" and served.members == NAMES and served.threshold == 0.3
    assert served.weights("Z01") == ens.weights("Z01")
    assert served.combine("Z01", [0.2, 0.4, 0.6])[0] == pytest.approx(ens.combine("Z01", [0.2, 0.4, 0.6])[0])


def test_a_member_form_serves_that_member_alone_and_reports_its_weight():
    data = _series()
    served, metrics, _ = fit_served({"form": "member", "members": ["b"]}, data)
    assert served.form == "member" and served.members == ("b",)
    prob, w = served.combine("Z00", [0.1, 0.7, 0.3])
    assert w == {"a": 0.0, "b": 1.0, "noise": 0.0}
    assert prob == pytest.approx(float(served.calibrator(0.7)))
    with pytest.raises(ValueError, match="one model"):
        ServedEnsemble("member", NAMES, ("a", "b"), 0.5, DynamicEnsemble(EnsembleParams.static([1, 1]), ("a", "b")))


# ---------------------------------------------------------------------------- the gate


def test_lagged_errors_equal_the_online_trackers():
    data = _series(n_per_zone=200)
    errors = lagged_errors(data.scores, data.outcomes, data.zone_codes, 12.0, "brier", 10)
    online = DynamicEnsemble(EnsembleParams(base_weights=(1, 1, 1), half_life=12.0, temperature=1.0, floor=0.0,
                                            step_cap=1.0), NAMES)
    zones = data.row_zones()
    for i in range(len(zones)):
        if i % 200 >= 10:
            online.update(zones[i], data.scores[i - 10], data.outcomes[i - 10])
        np.testing.assert_allclose(errors[i], online.errors(zones[i]), atol=1e-12)


def test_the_gate_follows_the_context_and_beats_equal_weights():
    data = _series()
    errors = lagged_errors(data.scores, data.outcomes, data.zone_codes, 30.0, "brier", 10)
    gate = fit_gate(data.scores, data.outcomes, data.context, errors, GateParams(30.0, 1e-3), ("queue_len",))
    w = gate.weights(np.array([[1.0], [-1.0]]), np.zeros((2, 3)))
    assert w[0, 0] > 0.6 and w[1, 1] > 0.6  # 'a' when the context is high, 'b' when low
    assert w[:, 2].max() < 0.2  # noise is switched down
    gated = evaluate_sample({"form": "gate", "gate_half_life": 30.0, "gate_l2": 1e-3}, data)
    static = evaluate_sample({"form": "static"}, data)
    assert gated["log_loss"] < static["log_loss"] and gated["lead_score"] >= static["lead_score"]
    again = Gate.from_dict(json.loads(json.dumps(gate.to_dict())))
    np.testing.assert_array_equal(again.weights(data.context, errors), gate.weights(data.context, errors))


def test_cross_fitting_never_scores_a_row_with_a_gate_fitted_on_it():
    data = _series()
    errors = np.zeros_like(data.scores)
    times = data.row_times()
    args = (data.scores, data.outcomes, data.context, errors, times, GateParams(30.0, 1e-3), ("queue_len",))
    prob, _ = cross_fit(*args, k=4, purge=20.0)
    blocks = time_blocks(times, 4)
    # Flip the outcomes of block 2 (and its purge margin): block 2's out-of-fold scores do not move.
    lo, hi = times[blocks == 2].min(), times[blocks == 2].max()
    near = (times >= lo - 20.0) & (times <= hi + 20.0)
    flipped = np.where(near, 1.0 - data.outcomes, data.outcomes)
    prob2, _ = cross_fit(data.scores, flipped, *args[2:], k=4, purge=20.0)
    np.testing.assert_allclose(prob2[blocks == 2], prob[blocks == 2], atol=1e-12)
    assert not np.allclose(prob2[blocks == 0], prob[blocks == 0])  # other blocks learned from it


def test_the_served_gate_uses_serving_context_through_the_keeper(tmp_path):
    data = _series()
    served, _, _ = fit_served({"form": "gate", "gate_half_life": 30.0, "gate_l2": 1e-3}, data)
    assert served.form == "gate" and served.gate.context_names == ("queue_len",)
    keeper = EnsembleKeeper(tmp_path)
    keeper.ensure("v1", served.to_state(), served.params.to_dict(), NAMES)
    scores = np.array([[0.9, 0.1, 0.5], [0.9, 0.1, 0.5]])
    high, low = keeper.combine("v1", ["Z00", "Z00"], scores, np.zeros(2), [False, False],
                               last_rows=np.array([[1.0], [-1.0]]))
    assert high["weights"]["a"] > high["weights"]["b"] and low["weights"]["b"] > low["weights"]["a"]
    assert high["probability"] > low["probability"]
    expected, _ = ServedEnsemble.from_state(served.to_state()).combine("Z00", scores[0], np.array([1.0]))
    assert high["probability"] == pytest.approx(expected)
    keeper.save(force=True)
    again = EnsembleKeeper(tmp_path)  # a replica restart restores the gate and its trackers
    again.ensure("v1", None, served.params.to_dict(), NAMES)
    assert again.combine("v1", ["Z00"], scores[:1], np.zeros(1), [False], last_rows=np.array([[1.0]]))[0][
        "probability"] == pytest.approx(high["probability"])


def test_context_index_takes_the_gate_columns_the_run_has():
    names, index = context_index(["requests", "queue_len", "vehicle_util", "cal_to_shift_h"])
    assert names == ("vehicle_util", "queue_len", "cal_to_shift_h") and index == (2, 1, 3)


# ---------------------------------------------------------------------------- calibration


def test_platt_and_isotonic_fix_a_miscalibrated_probability_and_round_trip():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.99, 20000)
    true = 1 / (1 + np.exp(-(2.0 * np.log(p / (1 - p)) - 1.0)))
    y = (rng.random(p.size) < true).astype(float)
    platt = fit_platt(p, y)
    assert platt.params["a"] == pytest.approx(2.0, abs=0.15) and platt.params["b"] == pytest.approx(-1.0, abs=0.15)
    iso = fit_isotonic(p, y)
    assert np.all(np.diff(iso(np.linspace(0, 1, 50))) >= 0)
    blocks = np.arange(p.size) % 5
    cal, report = choose_calibrator(p, y, blocks)
    assert report["chosen"] in ("platt", "isotonic")
    assert report["brier_cv"][report["chosen"]] < report["brier_cv"]["identity"]
    again = Calibrator.from_dict(json.loads(json.dumps(cal.to_dict())))
    np.testing.assert_allclose(again(p[:100]), cal(p[:100]))
    rel = reliability(cal(p), y)
    assert sum(rel["count"]) == p.size


def test_an_already_calibrated_probability_is_served_as_it_is():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.0, 1.0, 3000)
    y = (rng.random(p.size) < p).astype(float)
    cal, report = choose_calibrator(p, y, np.arange(p.size) // 600)
    assert report["chosen"] == "identity" and cal.method == "identity"
    assert cal(0.3) == pytest.approx(0.3)


# ---------------------------------------------------------------------------- the form search


def test_the_search_never_picks_worse_than_its_best_member_on_validation():
    from fabray.ensemble.selection import rank_key, search_candidates

    data = _series(n_per_zone=2400)  # ~100 episodes: enough for the gate's lead to be clear
    candidates, winner, verdict = search_candidates(data, [], "lead_score")
    assert verdict["clear"] and verdict["difference"] > verdict["standard_error"] > 0
    best_member = max((m for n, (m, _) in candidates.items() if n.startswith("member_")),
                      key=lambda m: rank_key(m, "lead_score"))
    assert rank_key(candidates[winner][0], "lead_score") >= rank_key(best_member, "lead_score")
    assert {"member_a", "member_b", "member_noise", "static_all", "gate_all"} <= set(candidates)
    assert candidates[winner][0]["form"] == "gate"  # the context decides who is right here


def test_a_lone_member_that_wins_is_what_is_served():
    from fabray.ensemble.selection import search_candidates

    data = _series()
    rng = np.random.default_rng(3)
    warn = np.maximum(data.outcomes, np.r_[data.outcomes[3:], np.zeros(3)])
    scores = np.stack([0.1 + 0.8 * warn, rng.random(warn.size), rng.random(warn.size)], axis=1)  # 'a' is perfect
    only_a = ValidationScores(**{**data.__dict__, "scores": scores})
    candidates, winner, _ = search_candidates(only_a, [], "lead_score")
    assert winner == "member_a", {n: round(m["lead_score"], 1) for n, (m, _) in candidates.items()}
    served, metrics, _ = fit_served(candidates[winner][1], only_a)
    assert served.form == "member" and served.members == ("a",) and metrics["lead_score"] == pytest.approx(100.0)


def test_members_of_reads_flags_or_lists():
    assert members_of({"use_a": False, "use_noise": False}, NAMES) == ("b",)
    assert members_of({"use_a": False, "use_b": False, "use_noise": False}, NAMES) == NAMES  # none = all
    assert members_of({"members": ["noise", "a"]}, NAMES) == ("a", "noise")
    with pytest.raises(ValueError, match="not models"):
        members_of({"members": ["x"]}, NAMES)


# ---------------------------------------------------------------------------- diversity


def test_error_correlation_and_leave_one_out():
    from fabray.ensemble.diversity import diversity_report, error_correlation

    data = _series()
    twin = np.stack([data.scores[:, 0], data.scores[:, 0], data.scores[:, 2]], axis=1)
    corr = error_correlation(twin, data.outcomes)
    assert corr[0, 1] == pytest.approx(1.0) and corr[0, 2] < 0.8  # residuals share −y, so not 0
    report = diversity_report({"form": "static"}, data)
    json.dumps(report)
    loo = report["leave_one_out"]
    assert set(loo["without"]) == set(NAMES)
    assert loo["without"]["noise"]["delta_lead_score"] <= 0  # dropping the noise member costs nothing
    assert loo["without"]["a"]["delta_lead_score"] > 0  # dropping a member that knows costs


def test_a_combination_that_wins_by_noise_is_not_served():
    from fabray.ensemble.objective import clear_win
    from fabray.ensemble.selection import search_candidates

    data = _series()
    rng = np.random.default_rng(5)
    warn = np.maximum(data.outcomes, np.r_[data.outcomes[3:], np.zeros(3)])
    a = np.clip(0.1 + 0.8 * warn + 0.25 * rng.standard_normal(warn.size), 0.01, 0.99)
    twin = np.clip(a + 0.02 * rng.standard_normal(warn.size), 0.01, 0.99)  # a near copy: nothing to add
    noisy = ValidationScores(**{**data.__dict__, "scores": np.stack([a, twin, rng.random(warn.size)], axis=1)})
    verdict = clear_win(noisy, {"form": "static", "members": ["a", "b"]}, {"form": "member", "members": ["a"]})
    assert not verdict["clear"]
    candidates, winner, verdict = search_candidates(noisy, [], "lead_score")
    assert candidates[winner][0]["form"] == "member"
    assert verdict is None or not verdict["clear"]


def test_the_configured_point_covers_every_dimension_of_the_tune_space():
    """Optuna's warm start refuses a point that lacks a dimension of the space."""
    from fabray.config import EnsembleConfig
    from fabray.ensemble.selection import configured_point
    from fabray.ensemble.tune import tune_space

    names = ("lstm", "gru", "rule")
    point = configured_point(EnsembleConfig(), names)
    assert set(point) == set(tune_space(names))
    assert point["form"] == "dynamic" and all(point[f"use_{n}"] for n in names)


def test_a_restored_online_state_takes_the_loaded_runs_gate(tmp_path):
    """The gate is fitted, never learned online: a state persisted before a run's gate was
    converted (run format 1 → raw context) is restored with the gate of the run as loaded."""
    from fabray.ensemble.gate import Gate, gate_on_raw_context

    data = _series()
    served, _, _ = fit_served({"form": "gate", "gate_half_life": 30.0, "gate_l2": 1e-3}, data)
    keeper = EnsembleKeeper(tmp_path)
    keeper.ensure("v1", served.to_state(), served.params.to_dict(), NAMES)
    keeper.save(force=True)  # persisted with the gate on z-scored context
    loaded = {**served.to_state(), "gate": gate_on_raw_context(served.gate.to_dict(), [5.0], [2.0])}
    again = EnsembleKeeper(tmp_path)
    again.ensure("v1", loaded, served.params.to_dict(), NAMES)
    assert again._ensembles["v1"].gate.to_dict() == Gate.from_dict(loaded["gate"]).to_dict()
    scores = np.array([[0.9, 0.1, 0.5]])
    raw = again.combine("v1", ["Z00"], scores, np.zeros(1), [False], last_rows=np.array([[5.0 + 2.0 * 1.0]]))[0]
    z = keeper.combine("v1", ["Z00"], scores, np.zeros(1), [False], last_rows=np.array([[1.0]]))[0]
    assert raw["probability"] == pytest.approx(z["probability"])
