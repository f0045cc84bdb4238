"""The dynamic weighted ensemble on hand-built streams: online object and offline replay."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from fabray.ensemble import DynamicEnsemble, EnsembleParams, replay
from fabray.ensemble.weight_rule import floor_weights
from fabray.metrics import probability_losses

LAG = 10


def _right_and_wrong(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Model 0 is always right (0.9 on an event, 0.1 otherwise), model 1 always wrong."""
    y = (np.random.default_rng(seed).random(n) < 0.3).astype(float)  # [N]
    good = np.where(y == 1, 0.9, 0.1)
    return np.stack([good, 1.0 - good], axis=1), y  # [N, 2], [N]


def _random_stream(n: int, m: int, zones: int, seed: int) -> dict[str, np.ndarray]:
    """Models of different quality over interleaved zones, some undefined outcomes."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.25).astype(float)
    noise = np.linspace(0.1, 0.6, m)  # model k's noise level
    scores = np.clip(y[:, None] * 0.7 + 0.15 + rng.normal(0, 1, (n, m)) * noise, 0, 1)
    y[rng.random(n) < 0.05] = np.nan
    return {
        "scores": scores,
        "outcomes": y,
        "zone_codes": rng.integers(0, zones, n),  # zones interleaved in time order
    }


def _online_loop(stream: dict[str, np.ndarray], params: EnsembleParams, lag: int):
    """The reference: for each row, update with the zone's row i − lag, then combine row i."""
    names = [f"m{k}" for k in range(params.n_models)]
    ens = DynamicEnsemble(params, names)
    past: dict[int, list[int]] = {}
    prob, weights = [], []
    for i, zone in enumerate(stream["zone_codes"].tolist()):
        rows = past.setdefault(zone, [])
        if len(rows) >= lag:
            j = rows[-lag]
            ens.update(str(zone), stream["scores"][j], stream["outcomes"][j])
        p, w = ens.combine(str(zone), stream["scores"][i])
        prob.append(p)
        weights.append([w[n] for n in names])
        rows.append(i)
    return np.array(prob), np.array(weights), ens


PARAMS = EnsembleParams(base_weights=(1.0, 1.0), half_life=20.0, floor=0.05, step_cap=0.05, temperature=0.05)


def test_weights_move_to_the_right_model_and_beat_the_static_ensemble():
    scores, y = _right_and_wrong()
    zones = np.zeros(len(y), dtype=int)
    prob, weights = replay(scores, y, zones, PARAMS, LAG)
    static_prob, _ = replay(scores, y, zones, EnsembleParams.static((1.0, 1.0)), LAG)

    # Before any feedback: the base weights.
    np.testing.assert_allclose(weights[:LAG], 0.5)
    # Then the right model's weight only grows, up to 1 − floor.
    assert np.all(np.diff(weights[:, 0]) >= -1e-12)
    assert weights[-1, 0] == pytest.approx(0.95, abs=1e-6)
    dynamic_loss = probability_losses(y, prob)["log_loss"]
    static_loss = probability_losses(y, static_prob)["log_loss"]
    assert static_loss == pytest.approx(math.log(2))  # always 0.5
    assert dynamic_loss < 0.5 * static_loss


def test_equal_errors_keep_the_base_weights():
    rng = np.random.default_rng(1)
    shared = rng.random(300)
    scores = np.stack([shared, shared, shared], axis=1)  # identical models: identical errors
    y = (rng.random(300) < 0.3).astype(float)
    params = EnsembleParams(base_weights=(5.0, 3.0, 2.0), half_life=5.0, floor=0.1, step_cap=0.01,
                            temperature=0.01)
    _, weights = replay(scores, y, np.zeros(300, dtype=int), params, 1)
    np.testing.assert_allclose(weights, np.broadcast_to([0.5, 0.3, 0.2], weights.shape), atol=1e-12)


@pytest.mark.parametrize("loss", ["brier", "log"])
def test_floor_and_cap_hold_at_every_step(loss):
    stream = _random_stream(n=1500, m=4, zones=3, seed=2)
    params = EnsembleParams(base_weights=(1, 1, 1, 1), half_life=10.0, floor=0.05, step_cap=0.02,
                            temperature=0.005, loss=loss)
    _, weights = replay(stream["scores"], stream["outcomes"], stream["zone_codes"], params, 3)
    assert weights.min() >= 0.05 - 1e-12
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-12)
    for zone in range(3):  # consecutive predictions of a zone are one outcome apart
        moves = np.abs(np.diff(weights[stream["zone_codes"] == zone], axis=0))
        assert moves.max() <= 0.02 + 1e-12
    assert weights.min() < 0.06  # the floor is reached, so the check above has teeth

    # Online: check after every single update.
    ens = DynamicEnsemble(params, list("abcd"))
    for i in range(len(stream["outcomes"])):
        zone = str(stream["zone_codes"][i])
        before = np.array(list(ens.weights(zone).values()))
        ens.update(zone, stream["scores"][i], stream["outcomes"][i])
        after = np.array(list(ens.weights(zone).values()))
        assert np.abs(after - before).max() <= 0.02 + 1e-12
        assert after.min() >= 0.05 - 1e-12 and after.sum() == pytest.approx(1.0, abs=1e-12)


def test_one_update_follows_the_documented_rule():
    # half_life 1 → d = 0.5. Brier losses (0, 1) → E = (0, 0.5); temperature 0.5 → w ∝ 2·(1, e^-1).
    params = EnsembleParams(base_weights=(2, 2), half_life=1.0, floor=0.0, step_cap=1.0, temperature=0.5)
    ens = DynamicEnsemble(params, ["a", "b"])
    ens.update("z", [1.0, 0.0], 1.0)
    assert ens.weights("z")["a"] == pytest.approx(1 / (1 + math.exp(-1)))
    # With a cap of 0.1 the same update moves each weight by 0.1 only.
    capped = DynamicEnsemble(replace(params, step_cap=0.1), ["a", "b"])
    capped.update("z", [1.0, 0.0], 1.0)
    assert capped.weights("z") == {"a": pytest.approx(0.6), "b": pytest.approx(0.4)}
    # log-loss of the clipped probabilities, on a non-event: (−log(1 − 1e-4), −log(1e-4)).
    log_params = replace(params, loss="log", temperature=10.0)
    logged = DynamicEnsemble(log_params, ["a", "b"])
    logged.update("z", [0.0, 1.0], 0.0)
    gap = 0.5 * (math.log(1 - 1e-4) - math.log(1e-4))
    assert logged.weights("z")["a"] == pytest.approx(1 / (1 + math.exp(-gap / 10.0)))


def test_floor_weights_projection():
    # Raising .03 and .018 shrinks .052 to ~.049: it is floored in a second round.
    out = floor_weights(np.array([0.9, 0.052, 0.03, 0.018]), 0.05)
    np.testing.assert_allclose(out, [0.85, 0.05, 0.05, 0.05])
    out = floor_weights(np.array([0.9, 0.07, 0.02, 0.01]), 0.05)  # .07 stays free
    np.testing.assert_allclose(out, [0.9 * 0.9 / 0.97, 0.07 * 0.9 / 0.97, 0.05, 0.05])
    np.testing.assert_array_equal(floor_weights(np.array([0.4, 0.6]), 0.1), [0.4, 0.6])


def test_infinite_half_life_is_exactly_the_static_ensemble():
    stream = _random_stream(n=600, m=3, zones=2, seed=3)
    base = np.array([2.0, 1.0, 1.0])
    params = EnsembleParams(base_weights=tuple(base), half_life=math.inf, floor=0.1, step_cap=0.01,
                            temperature=0.01)
    static = (stream["scores"] * (base / base.sum())).sum(axis=1)
    prob, weights = replay(stream["scores"], stream["outcomes"], stream["zone_codes"], params, LAG)
    np.testing.assert_array_equal(prob, static)
    online_prob, online_weights, _ = _online_loop(stream, params, LAG)
    np.testing.assert_array_equal(online_prob, static)
    np.testing.assert_array_equal(online_weights, weights)


def test_feedback_lag_is_respected():
    stream = _random_stream(n=400, m=3, zones=2, seed=4)
    stream["outcomes"] = np.nan_to_num(stream["outcomes"])
    params = EnsembleParams(base_weights=(1, 1, 1), half_life=5.0, floor=0.0, step_cap=1.0, temperature=0.05)
    zone0 = np.flatnonzero(stream["zone_codes"] == 0)
    j = zone0[50]  # change the truth of zone 0's 51st prediction
    changed = dict(stream, outcomes=stream["outcomes"].copy())
    changed["outcomes"][j] = 1.0 - changed["outcomes"][j]
    args = lambda s: (s["scores"], s["outcomes"], s["zone_codes"], params, LAG)  # noqa: E731
    prob, _ = replay(*args(stream))
    prob_changed, _ = replay(*args(changed))

    due = zone0[50 + LAG]  # the first prediction made once that truth is known
    differs = np.flatnonzero(prob != prob_changed)
    assert differs.size > 0 and differs.min() == due
    assert set(differs) <= set(zone0)  # zone 1 never sees zone 0's feedback


@pytest.mark.parametrize(
    "params",
    [
        EnsembleParams(base_weights=(1, 2, 1, 0.5), half_life=15.0, floor=0.05, step_cap=0.03,
                       temperature=0.01),
        EnsembleParams(base_weights=(1, 1, 1, 1), half_life=3.0, floor=0.2, step_cap=1.0,
                       temperature=0.02, loss="log"),
        EnsembleParams(base_weights=(1, 0, 1, 1), half_life=50.0, floor=0.0, step_cap=0.1,
                       temperature=0.5, loss="log"),
    ],
    ids=["capped", "uncapped-floored", "zero-base-weight"],
)
def test_replay_equals_the_online_loop(params):
    stream = _random_stream(n=900, m=4, zones=3, seed=5)
    lag = 4
    prob, weights = replay(stream["scores"], stream["outcomes"], stream["zone_codes"], params, lag)
    online_prob, online_weights, _ = _online_loop(stream, params, lag)
    np.testing.assert_allclose(weights, online_weights, rtol=0, atol=1e-12)
    np.testing.assert_allclose(prob, online_prob, rtol=0, atol=1e-12)
    assert np.abs(weights - weights[0]).max() > 0.05  # the weights did move


def test_replay_accepts_zones_in_blocks():
    stream = _random_stream(n=500, m=3, zones=3, seed=6)
    params = EnsembleParams(base_weights=(1, 1, 1), half_life=10.0, step_cap=0.05, temperature=0.02)
    order = np.argsort(stream["zone_codes"], kind="stable")  # (zone, time) order
    prob, weights = replay(stream["scores"], stream["outcomes"], stream["zone_codes"], params, LAG)
    prob_b, weights_b = replay(stream["scores"][order], stream["outcomes"][order],
                               stream["zone_codes"][order], params, LAG)
    np.testing.assert_array_equal(prob_b, prob[order])
    np.testing.assert_array_equal(weights_b, weights[order])


def test_state_round_trip_gives_identical_next_predictions():
    stream = _random_stream(n=300, m=3, zones=2, seed=7)
    params = EnsembleParams(base_weights=(1, 2, 3), half_life=math.inf, floor=0.05)
    params = EnsembleParams.from_dict({**params.to_dict(), "half_life": 12.0})
    _, _, ens = _online_loop(stream, params, 5)
    text = json.dumps(ens.to_state(), allow_nan=False)  # strict JSON
    restored = DynamicEnsemble.from_state(json.loads(text))
    assert restored.params == ens.params and restored.model_names == ens.model_names
    rng = np.random.default_rng(8)
    for zone in ("0", "1", "never-seen"):
        scores = rng.random(3)
        assert restored.combine(zone, scores) == ens.combine(zone, scores)
        ens.update(zone, scores, 1.0)
        restored.update(zone, scores, 1.0)
        assert restored.combine(zone, scores) == ens.combine(zone, scores)
    assert restored.to_state() == ens.to_state()


def test_a_state_written_before_regimes_were_removed_loads_and_regimes_are_refused():
    """States written before store `use_regimes: false` and `"regime": 0` per tracker: they load
    as before. A per-regime state or `use_regimes: true` is refused, not silently merged."""
    params = EnsembleParams(base_weights=(1.0, 1.0), half_life=10.0)
    ens = DynamicEnsemble(params, ["a", "b"])
    ens.update("z", [0.9, 0.1], 1.0)
    state = ens.to_state()
    assert "use_regimes" not in state["params"] and "regime" not in state["trackers"][0]
    old = json.loads(json.dumps(state))
    old["params"]["use_regimes"] = False
    old["trackers"][0]["regime"] = 0
    restored = DynamicEnsemble.from_state(old)
    assert restored.to_state() == state
    old["trackers"][0]["regime"] = 1
    with pytest.raises(ValueError, match="per-regime trackers were removed"):
        DynamicEnsemble.from_state(old)
    with pytest.raises(ValueError, match="use_regimes was removed"):
        EnsembleParams.from_dict({**params.to_dict(), "use_regimes": True})
    with pytest.raises(TypeError):
        EnsembleParams(base_weights=(1.0, 1.0), use_regimes=True)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        ens.combine("z", [0.5, 0.5], 1)  # type: ignore[call-arg]  (no regime argument)


def test_combine_reports_weights_and_skips_missing_models():
    ens = DynamicEnsemble(EnsembleParams(base_weights=(2, 1, 1)), ["lstm", "gru", "rule"])
    prob, weights = ens.combine("bay-1", [0.8, 0.4, 0.0])
    assert weights == {"lstm": 0.5, "gru": 0.25, "rule": 0.25}
    assert prob == pytest.approx(0.5)
    prob, weights = ens.combine("bay-1", {"lstm": 0.8, "gru": 0.4})  # rule missing
    assert weights["rule"] == 0.0 and weights["lstm"] == pytest.approx(2 / 3)
    assert prob == pytest.approx(0.8 * 2 / 3 + 0.4 / 3)
    with pytest.raises(ValueError, match="no model with a score"):
        ens.combine("bay-1", [math.nan] * 3)
    with pytest.raises(ValueError, match="unknown models"):
        ens.combine("bay-1", {"tcn": 0.3})
    with pytest.raises(ValueError, match="one score per model"):
        ens.combine("bay-1", [0.3, 0.2])


def test_update_ignores_undefined_outcomes_and_missing_model_scores():
    ens = DynamicEnsemble(EnsembleParams(base_weights=(1, 1), step_cap=1.0), ["a", "b"])
    ens.update("z", [0.9, 0.1], math.nan)
    assert ens.to_state()["trackers"] == []
    ens.update("z", [math.nan, 0.1], 1.0)  # only b is judged: it was wrong
    state = ens.to_state()["trackers"][0]
    assert state["errors"][0] == 0.0 and state["errors"][1] > 0
    assert ens.weights("z")["a"] > 0.5


def test_replay_refuses_bad_input():
    scores = np.full((5, 2), 0.5)
    zones = np.zeros(5, dtype=int)
    y = np.zeros(5)
    with pytest.raises(ValueError, match="feedback_lag"):
        replay(scores, y, zones, PARAMS, 0)
    with pytest.raises(ValueError, match=r"\[N, M\]"):
        replay(np.full((5, 3), 0.5), y, zones, PARAMS, 1)
    with pytest.raises(ValueError, match="finite"):
        replay(np.where(np.eye(5, 2) > 0, np.nan, 0.5), y, zones, PARAMS, 1)
    with pytest.raises(ValueError, match="one row each"):
        replay(scores, y[:4], zones, PARAMS, 1)
