"""The `rule` model: the rule score behaves as its rules say, and untrained it IS the rule score."""

from __future__ import annotations

import numpy as np
import pytest

from fabray.errors import BadInputError
from fabray.models import build_model, make_config
from fabray.models.rule import DEFAULT_RULES, Rule, RuleModelConfig, RuleScore, rule_score_layer
from fabray.schema import FEATURES

LOOKBACK = 20
COL = {name: i for i, name in enumerate(FEATURES)}


def calm_window() -> np.ndarray:
    """A quiet zone, raw units: nothing near any default threshold."""
    w = np.zeros((LOOKBACK, len(FEATURES)), dtype="float32")  # [L, F]
    w[:, COL["requests"]] = 5
    w[:, COL["completions"]] = 5
    w[:, COL["queue_len"]] = 2
    w[:, COL["vehicles_idle"]] = 8
    w[:, COL["vehicle_util"]] = 0.5
    w[:, COL["mean_speed"]] = 3.0
    w[:, COL["wip_lots"]] = 120
    w[:, COL["stocker_fill"]] = 0.6
    w[:, COL["transport_time_s"]] = 150
    return w


def trigger(window: np.ndarray, rule_name: str) -> np.ndarray:
    """The window with only the named rule's feature pushed past its default threshold."""
    w = window.copy()
    ramp = np.linspace(0.0, 1.0, LOOKBACK, dtype="float32")  # oldest → newest minute
    if rule_name == "high_utilization":
        w[:, COL["vehicle_util"]] = 0.98
    elif rule_name == "queue_growth":
        w[:, COL["queue_len"]] = 2 + 30 * ramp  # 2 → 32 waiting requests
    elif rule_name == "blocked_segments":
        w[-10:, COL["blocked_segments"]] = 2
    elif rule_name == "vehicles_down":
        w[-10:, COL["vehicles_down"]] = 3
    elif rule_name == "slow_transport":
        w[:, COL["transport_time_s"]] = 150 + 200 * ramp  # 150 s → 350 s
    else:  # pragma: no cover - a new default rule needs a trigger here
        raise AssertionError(f"no trigger for {rule_name}")
    return w


def congested_window() -> np.ndarray:
    w = calm_window()
    for rule in DEFAULT_RULES:
        w = trigger(w, rule.name)
    return w


def scores(layer: RuleScore, *windows: np.ndarray) -> np.ndarray:
    return np.asarray(layer(np.stack(windows)))[:, 0]  # [B]


def test_untrained_rule_model_outputs_exactly_the_rule_score() -> None:
    model = build_model("rule", LOOKBACK, len(FEATURES))
    rng = np.random.default_rng(0)
    noisy = calm_window() + rng.normal(0, 0.5, (LOOKBACK, len(FEATURES))).astype("float32")
    x = np.stack([calm_window(), congested_window(), noisy])  # [3, L, F]
    out = model.predict_on_batch(x)[:, 0]
    rule_only = np.asarray(model.get_layer("rule_score")(x))[:, 0]
    np.testing.assert_array_equal(out, rule_only)
    standalone = scores(rule_score_layer(RuleModelConfig()), *x)
    np.testing.assert_array_equal(out, standalone)


def test_rule_score_matches_its_formula_by_hand() -> None:
    cfg = RuleModelConfig()
    w = calm_window()
    w[:, COL["vehicle_util"]] = 0.92  # level 0.92 vs threshold 0.90, softness 0.02 → z = 1
    expected = cfg.bias
    for rule in cfg.rules:
        k = cfg.recent_minutes
        series = w[:, COL[rule.feature]].astype("float64")
        stat = series[-k:].mean() - (series[:-k].mean() if rule.statistic == "rise" else 0.0)
        z = (stat - rule.threshold) / rule.softness * (1 if rule.direction == "above" else -1)
        expected += rule.weight / (1 + np.exp(-z))
    got = scores(rule_score_layer(cfg), w)[0]
    assert got == pytest.approx(expected, abs=1e-5)
    assert got == pytest.approx(cfg.bias + 1.5 / (1 + np.exp(-1.0)), abs=0.05)


def test_a_congested_window_scores_higher_than_a_calm_one() -> None:
    layer = rule_score_layer(RuleModelConfig())
    calm, congested = scores(layer, calm_window(), congested_window())
    assert calm == pytest.approx(-4.0, abs=0.05)  # about the bias: no rule fires
    assert congested == pytest.approx(-4.0 + sum(r.weight for r in DEFAULT_RULES), abs=0.1)
    assert congested > calm


@pytest.mark.parametrize("rule_name", [r.name for r in DEFAULT_RULES])
def test_each_rule_fires_on_its_own_feature_only(rule_name: str) -> None:
    layer = rule_score_layer(RuleModelConfig())
    fired = np.asarray(layer.rule_activations(np.stack([calm_window(), trigger(calm_window(), rule_name)])))
    calm, triggered = fired  # [R] each
    names = [r.name for r in DEFAULT_RULES]
    i = names.index(rule_name)
    assert calm.max() < 0.01
    assert triggered[i] > 0.95
    others = np.delete(triggered, i)
    assert others.max() < 0.01, dict(zip(names, triggered.round(3)))
    calm_score, triggered_score = scores(layer, calm_window(), trigger(calm_window(), rule_name))
    assert triggered_score - calm_score == pytest.approx(DEFAULT_RULES[i].weight, abs=0.05)


def test_the_rule_score_reads_the_raw_window_and_the_correction_its_z_scores() -> None:
    rng = np.random.default_rng(1)
    mean = rng.uniform(0, 100, len(FEATURES))
    scale = rng.uniform(0.5, 50, len(FEATURES))
    raw = np.stack([calm_window(), congested_window()]).astype("float32")  # [2, L, F]
    on_raw = scores(rule_score_layer(RuleModelConfig()), *raw)
    model = build_model("rule", raw.shape[1], len(FEATURES), {"lstm_units": 4, "head_units": [4]}, (mean, scale))
    assert model.layers[1].name == "feature_scaling"
    # untrained: the zero-initialized correction adds nothing, the output is the raw rule score
    np.testing.assert_allclose(model.predict(raw, verbose=0).reshape(-1), on_raw, atol=1e-4)
    assert "feature_mean" not in rule_score_layer(RuleModelConfig()).get_config()


def test_a_format_1_rule_layer_un_scales_its_z_scored_window() -> None:
    from dataclasses import asdict

    from fabray.models.rule import RuleScore

    rng = np.random.default_rng(1)
    mean = rng.uniform(0, 100, len(FEATURES))
    scale = rng.uniform(0.5, 50, len(FEATURES))
    raw = np.stack([calm_window(), congested_window()])  # [2, L, F]
    z_scored = ((raw - mean) / scale).astype("float32")
    on_raw = scores(rule_score_layer(RuleModelConfig()), *raw)
    legacy = RuleScore(rules=[asdict(r) for r in DEFAULT_RULES], feature_mean=list(mean), feature_scale=list(scale))
    np.testing.assert_allclose(scores(legacy, *z_scored), on_raw, atol=1e-3)
    # a saved format-1 model keeps un-scaling itself after a reload
    again = RuleScore.from_config(legacy.get_config())
    assert again.feature_mean == pytest.approx(list(mean)) and again.feature_scale == pytest.approx(list(scale))
    with pytest.raises(ValueError, match="go together"):
        RuleScore(rules=[asdict(r) for r in DEFAULT_RULES], feature_mean=list(mean))


def test_below_and_excess_rules_from_config_data() -> None:
    cfg = make_config("rule", {"rules": [
        {"name": "slow_vehicles", "feature": "mean_speed", "threshold": 1.5,
         "direction": "below", "weight": 3.0, "softness": 0.1},
        {"name": "over_nominal", "feature": "transport_time_s", "threshold": 60.0,
         "statistic": "excess", "reference": 150.0, "weight": 2.0, "softness": 5.0},
    ], "bias": -1.0})
    assert cfg.rules[0] == Rule("slow_vehicles", "mean_speed", 1.5, direction="below",
                                weight=3.0, softness=0.1)
    layer = rule_score_layer(cfg)
    calm = calm_window()
    slow = calm.copy()
    slow[:, COL["mean_speed"]] = 0.8
    late = calm.copy()
    late[-10:, COL["transport_time_s"]] = 260  # 110 s over the nominal 150 s
    fired = np.asarray(layer.rule_activations(np.stack([calm, slow, late])))  # [3, 2]
    np.testing.assert_array_less(fired[0], 0.01)
    assert fired[1, 0] > 0.99 and fired[1, 1] < 0.01
    assert fired[2, 1] > 0.99 and fired[2, 0] < 0.01


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"rules": [{"name": "x", "feature": "nope", "threshold": 1.0}]}, "not in feature_names"),
        ({"rules": [{"name": "x", "feature": "queue_len", "threshold": 1.0,
                     "statistic": "excess"}]}, "reference"),
        ({"rules": [{"name": "x", "feature": "queue_len", "threshold": 1.0,
                     "statistic": "median"}]}, "statistic must be one of"),
        ({"rules": [{"name": "x", "feature": "queue_len", "threshold": 1.0, "softness": 0}]},
         "softness must be > 0"),
        ({"rules": [{"name": "x", "feature": "queue_len", "threshold": 1.0, "colour": "red"}]},
         "bad rule"),
        ({"rules": []}, "at least one rule"),
        ({"feature_mean": [0.0] * 12}, "unknown hyper-parameter"),
    ],
)
def test_bad_rule_configs_are_named(overrides: dict, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        make_config("rule", overrides)


def test_rise_rules_need_a_window_longer_than_the_recent_part() -> None:
    with pytest.raises(BadInputError, match="lookback > recent_minutes"):
        build_model("rule", 10, len(FEATURES))
