"""Runs of format 1 (models of z-scored windows, scaled outside them) still load and score raw
windows as they scored before (issue 10): a tiny run written the old way, no training, no Ray."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from fabray import schema
from fabray.data.scaler import Scaler

LOOKBACK = 20
F = len(schema.FEATURES)
RULE = {"lstm_units": 4, "head_units": [4]}


def _old_lstm():
    """`lstm` as format 1 built it: the window (z-scored by the caller) straight into the LSTM."""
    import keras

    window = keras.Input(shape=(LOOKBACK, F), name="window")  # [B, L, F] z-scores
    h = keras.layers.LSTM(4, name="lstm_0")(window)
    h = keras.layers.Dense(4, activation="relu", name="head_dense_0")(h)
    return keras.Model(window, keras.layers.Dense(1, dtype="float32", name="head_out")(h), name="lstm")


def _old_rule(scaler: Scaler):
    """`rule` as format 1 built it: its rule layer un-scales the z-scored window with the scaler's
    statistics (`feature_mean` / `feature_scale` in its config); a non-zero correction."""
    import keras

    from fabray.models import make_config
    from fabray.models.rule import RuleScore

    cfg = make_config("rule", RULE)
    window = keras.Input(shape=(LOOKBACK, F), name="window")  # [B, L, F] z-scores
    score = RuleScore(rules=[asdict(r) for r in cfg.rules], bias=cfg.bias, recent_minutes=cfg.recent_minutes,
                      feature_names=list(scaler.features), feature_mean=list(scaler.mean),
                      feature_scale=list(scaler.scale), name="rule_score")(window)
    h = keras.layers.LSTM(4, name="correction_lstm")(window)
    h = keras.layers.Dense(4, activation="relu", name="correction_dense_0")(h)
    correction = keras.layers.Dense(1, dtype="float32", name="correction_out")(h)
    out = keras.layers.Add(dtype="float32", name="score")([score, correction])
    return keras.Model(window, out, name="rule")


@pytest.fixture(scope="module")
def old_run(tmp_path_factory, make_run):
    """(run dir, scaler, raw windows [B, L, F], the scores format 1 gave them: {name: [B]})."""
    import keras

    rng = np.random.default_rng(0)
    mean = rng.uniform(0, 200, F)
    scale = rng.uniform(0.2, 30, F)
    mean[schema.FEATURES.index("blocked_segments")], scale[schema.FEATURES.index("blocked_segments")] = 0.0, 0.05
    scaler = Scaler(schema.FEATURES, tuple(mean), tuple(scale))
    raw = mean + np.asarray(scaler.scale) * rng.standard_normal((6, LOOKBACK, F))  # [B, L, F] raw units
    raw[0, -10:, schema.FEATURES.index("blocked_segments")] = 3.0  # a rule fires in window 0
    prep = {
        "features": list(schema.FEATURES), "scaler": scaler.to_dict(), "nominal_s": {"Z01": 150.0},
        "zones": ["Z01"], "lookback": LOOKBACK, "horizon": 5,
        "task": {"lookback": LOOKBACK, "horizon": 5, "sla_delay_s": 60.0, "task": "event",
                 "nominal_transport_time_s": None},
    }
    saved = tmp_path_factory.mktemp("saved")
    files, models, before = {}, {}, {}
    for name, model in (("lstm", _old_lstm()), ("rule", _old_rule(scaler))):
        # what format 1 scored: the model on windows scaled outside it (Scaler.transform)
        before[name] = 1 / (1 + np.exp(-model.predict(scaler.transform(raw), verbose=0).reshape(-1)))
        model.save(saved / f"{name}.keras")
        files[f"models/{name}/model.keras"] = (saved / f"{name}.keras").read_bytes()
        files[f"models/{name}/preprocessing.json"] = json.dumps(prep)
        overrides = {**RULE, "feature_mean": list(scaler.mean), "feature_scale": list(scaler.scale)} if name == "rule" else {}
        files[f"models/{name}/config.json"] = json.dumps({"model": name, "overrides": overrides})
        models[name] = {"status": "ok", "model": f"models/{name}/model.keras",
                        "preprocessing": f"models/{name}/preprocessing.json", "config": f"models/{name}/config.json"}
    run = make_run(tmp_path_factory.mktemp("runs") / "old", models, files=files,
                   extra={"format_version": 1, "task": prep["task"]})
    keras.backend.clear_session()
    return run, scaler, raw, before


def test_a_format_1_run_scores_raw_windows_as_it_scored_scaled_ones(old_run):
    from fabray.models import FeatureScaling
    from fabray.predictor import RunPredictor

    run, scaler, raw, before = old_run
    p = RunPredictor.load(run)
    assert p.format_version == 1
    after = p.score_windows(raw)
    for name in ("lstm", "rule"):
        np.testing.assert_allclose(after[name], before[name], rtol=1e-5)
        first = p.model(name).layers[1]  # the wrapper's first layer: the run's stored statistics
        assert isinstance(first, FeatureScaling) and first.mean == pytest.approx(scaler.mean)


def test_a_format_1_rule_layer_reports_its_rules_on_raw_windows(old_run):
    from fabray.models import make_config
    from fabray.models.rule import rule_score_layer
    from fabray.predictor import RunPredictor

    run, _, raw, _ = old_run
    names, fired = RunPredictor.load(run, warm_up=False).rule_activations(raw)
    fresh = rule_score_layer(make_config("rule", RULE))  # a format-2 layer reads raw windows
    np.testing.assert_allclose(fired, np.asarray(fresh.rule_activations(raw.astype(np.float32))), rtol=1e-4, atol=1e-6)
    blocked = names.index("blocked_segments")
    assert fired[0, blocked] > 0.99 and fired[1:, blocked].max() < 0.5  # 3 blocked segments vs a 0.5 threshold


def test_a_format_1_runs_rule_overrides_drop_the_scaler_statistics(old_run):
    from fabray.predictor import RunPredictor
    from fabray.run_data import rule_overrides

    run, _, _, _ = old_run
    assert rule_overrides(RunPredictor.load(run, warm_up=False)) == RULE


def test_a_gate_fitted_on_z_scored_context_takes_raw_context_after_conversion():
    from fabray.ensemble.gate import Gate, GateParams, gate_on_raw_context
    from fabray.predictor import format1_state_on_raw_context

    rng = np.random.default_rng(3)
    index = [schema.FEATURES.index("vehicle_util"), schema.FEATURES.index("queue_len")]
    mean, scale = rng.uniform(0, 5, F), rng.uniform(0.2, 9, F)
    col_mean, col_scale = mean[index], scale[index]
    old = Gate(GateParams(), ("vehicle_util", "queue_len"), rng.standard_normal(5), rng.uniform(0.5, 2, 5),
               rng.standard_normal((3, 6)))  # 2 context inputs + 3 members' errors
    raw = col_mean + col_scale * rng.standard_normal((7, 2))  # [B, C] raw
    errors = rng.uniform(0, 0.3, (7, 3))
    state = {"form": "gate", "gate": old.to_dict(), "context_index": index}
    converted = format1_state_on_raw_context(state, Scaler(schema.FEATURES, tuple(mean), tuple(scale)))
    assert converted["form"] == "gate" and state["gate"] == old.to_dict()  # the stored state is left as it was
    new = Gate.from_dict(converted["gate"])
    np.testing.assert_allclose(new.weights(raw, errors), old.weights((raw - col_mean) / col_scale, errors), rtol=1e-10)
    assert format1_state_on_raw_context({"form": "dynamic", "gate": None}, Scaler(schema.FEATURES, tuple(mean),
                                        tuple(scale))) == {"form": "dynamic", "gate": None}
    with pytest.raises(ValueError, match="2 context inputs"):
        gate_on_raw_context(old.to_dict(), col_mean[:1], col_scale[:1])


def test_carrying_a_format_1_model_into_a_retrain_is_refused(old_run, tmp_path):
    from fabray.errors import BadInputError
    from fabray.train.parent import load_parent

    run, _, _, _ = old_run
    assert load_parent(Path(run)).format_version == 1
    from fabray.train.retrain import prepare_retrain

    with pytest.raises(BadInputError, match="run format 1.*retrain every model"):
        prepare_retrain(run, tmp_path / "data.parquet", tmp_path / "new", models=["lstm"])
