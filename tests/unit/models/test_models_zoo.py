"""The shared checker, run for every model in the registry (tiny sizes, lookback 20).

Each model must: map a raw `[B, L, F]` window to `[B, 1]` float32 (also under mixed_float16),
z-scoring it in its first layer (`FeatureScaling`, the training statistics); learn (its loss
falls on a tiny fixed batch); save to `.keras` and load back with identical outputs; and
round-trip its configs (the hyper-parameter dataclass, and every custom layer's get_config).
"""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
import pytest

from fabray.models import MODELS, FeatureScaling, build_model, make_config, model_loss, model_table

LOOKBACK = 20
N_FEATURES = 12
#: Training statistics per feature (raw units far from z-scores, as a fab's are).
MEAN = np.linspace(-50.0, 300.0, N_FEATURES)
SCALE = np.linspace(0.1, 80.0, N_FEATURES)

#: Tiny sizes per model, through the same overrides the config uses.
TINY: dict[str, dict] = {
    "lstm": {"lstm_units": [8, 8, 4], "head_units": [8], "dropout": 0.0},
    "gru": {"gru_units": [8, 8, 4], "head_units": [8], "dropout": 0.0},
    "cnn_lstm": {"conv_filters": 4, "kernel_sizes": [3, 5], "lstm_units": [8, 4],
                 "head_units": [8], "dropout": 0.0},
    "spike": {"conv_filters": 8, "num_heads": 2, "key_dim": 4, "bilstm_units": 8,
              "head_units": [8], "dropout": 0.0},
    "rule": {"lstm_units": 4, "head_units": [8, 4]},
    "patchtst": {"patch_len": 5, "stride": 5, "num_layers": 1, "num_heads": 2, "d_model": 8,
                 "d_ff": 16, "dropout": 0.0},
}

EXPECTED_MODELS = ("lstm", "gru", "cnn_lstm", "spike", "rule", "patchtst")


def test_registry_lists_the_six_models_and_each_has_tiny_sizes() -> None:
    assert tuple(MODELS) == EXPECTED_MODELS
    assert set(TINY) == set(MODELS)


@pytest.fixture(params=list(MODELS))
def name(request: pytest.FixtureRequest) -> str:
    return request.param


def _tiny(name: str, scaling=(MEAN, SCALE)) -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_model(name, LOOKBACK, N_FEATURES, TINY[name], scaling)


def _batch(n: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Raw windows [B, L, F] (MEAN + SCALE · z) and a learnable target [B, 1]."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, LOOKBACK, N_FEATURES))  # [B, L, F]
    y = (z[:, -5:, 2].mean(axis=1) > 0).astype("float32")[:, None]  # [B, 1], learnable
    return (MEAN + SCALE * z).astype("float32"), y


def test_the_first_layer_z_scores_the_raw_window_with_the_training_statistics(name: str) -> None:
    model = _tiny(name)
    first = model.layers[1]  # after the Input
    assert isinstance(first, FeatureScaling) and first.mean == pytest.approx(MEAN) and first.scale == pytest.approx(SCALE)
    x, _ = _batch(4)
    plain = _tiny(name, None)  # identity scaling, same architecture and weights
    rng = np.random.default_rng(2)
    weights = [w + 0.05 * rng.standard_normal(w.shape) for w in model.get_weights()]
    model.set_weights(weights)
    plain.set_weights(weights)
    z = ((x.astype(np.float64) - MEAN) / SCALE).astype("float32")
    expected = plain.predict_on_batch(z)
    if name == "rule":  # its rule score reads the RAW window; only the correction sees z-scores
        rules = model.get_layer("rule_score")
        expected = expected - np.asarray(rules(z)) + np.asarray(rules(x))
    np.testing.assert_allclose(model.predict_on_batch(x), expected, rtol=1e-4, atol=1e-5)


def test_output_is_one_float32_score_per_window(name: str) -> None:
    model = _tiny(name)
    x, _ = _batch(5)
    y = model.predict_on_batch(x)
    assert y.shape == (5, 1)
    assert y.dtype == np.float32
    assert np.all(np.isfinite(y))
    assert model.input_shape == (None, LOOKBACK, N_FEATURES)


def test_output_stays_float32_under_mixed_precision(name: str) -> None:
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = _tiny(name)
        y = model(_batch(3)[0])
    finally:
        keras.config.set_dtype_policy(previous)
    assert tuple(y.shape) == (3, 1)
    assert keras.backend.standardize_dtype(y.dtype) == "float32"


def test_loss_falls_on_a_tiny_fixed_batch(name: str) -> None:
    _check_loss_falls(name, "event")


def _check_loss_falls(name: str, task: str) -> None:
    model = _tiny(name)
    x, y = _batch(16)
    loss = model_loss(name, task)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    before = float(loss(y, model(x, training=False)))  # eager: no second graph to trace
    for _ in range(20):
        model.train_on_batch(x, y)
    after = float(loss(y, model(x, training=False)))
    assert after < 0.9 * before, f"{name}/{task}: loss {before:.4f} -> {after:.4f}"


def test_save_and_load_give_identical_outputs(name: str, tmp_path) -> None:
    model = _tiny(name)
    x, _ = _batch(8)
    # Move every weight off its initializer (the rule model's correction starts at exactly
    # zero), so a weight that failed to load would show.
    rng = np.random.default_rng(1)
    model.set_weights([w + 0.05 * rng.standard_normal(w.shape) for w in model.get_weights()])
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded.predict_on_batch(x), model.predict_on_batch(x))
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]


def test_hyper_parameter_dataclass_round_trips(name: str) -> None:
    cfg = make_config(name, TINY[name])
    assert dataclasses.is_dataclass(cfg)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(cfg, dataclasses.fields(cfg)[0].name, None)
    as_dict = dataclasses.asdict(cfg)
    assert make_config(name, as_dict) == cfg
    # Through JSON too (what a run directory stores): lists come back, tuples are restored.
    assert make_config(name, json.loads(json.dumps(as_dict))) == cfg
    # The overrides took effect.
    for key, value in TINY[name].items():
        got = getattr(cfg, key)
        assert (list(got) if isinstance(got, tuple) else got) == value


def test_custom_layers_round_trip_through_get_config(name: str) -> None:
    model = _tiny(name)
    custom = [layer for layer in model.layers if type(layer).__module__.startswith("fabray.")]
    if name != "lstm":  # lstm is built from stock layers only
        assert custom, f"{name}: expected at least one fabray layer"
    for layer in custom:
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert clone.get_config() == config
        registered = keras.saving.get_registered_object(
            keras.saving.get_registered_name(type(layer))
        )
        assert registered is type(layer)


def test_default_full_size_models_build_and_report_exact_params() -> None:
    # Hand counts of the default architectures (DESIGN §3), F = 12 features:
    lstm = lambda units, inp: 4 * (units * (inp + units) + units)  # noqa: E731
    gru = lambda units, inp: 3 * (units * (inp + units) + 2 * units)  # noqa: E731 (reset_after)
    dense = lambda out, inp: inp * out + out  # noqa: E731
    norm = lambda width: 2 * width  # noqa: E731
    expected = {
        "lstm": lstm(128, 12) + lstm(128, 128) + lstm(64, 128)
        + dense(128, 64) + dense(64, 128) + dense(1, 64),
        "gru": gru(128, 12) + dense(128, 12) + norm(128)
        + gru(128, 128) + norm(128)
        + gru(64, 128) + dense(64, 128) + norm(64)
        + dense(64, 64) + dense(1, 64),
        "cnn_lstm": sum(12 * 64 * k + 64 for k in (3, 5, 7))
        + lstm(128, 192) + lstm(64, 128) + dense(64, 64) + dense(1, 64),
        "spike": (12 * 128 * 5 + 128)  # Conv1D(128, 5)
        + 3 * dense(4 * 32, 128) + dense(128, 4 * 32) + norm(128)  # MHA 4×32 + LayerNorm
        + 2 * lstm(128, 128) + dense(64, 256) + dense(1, 64),
        "rule": lstm(32, 12) + dense(64, 32) + dense(32, 64) + dense(1, 32),
    }
    rows = {row["name"]: row for row in model_table(100, 12, repeats=0)}
    assert set(rows) == set(MODELS)
    for model_name, count in expected.items():
        assert rows[model_name]["params"] == count, model_name
        assert rows[model_name]["ratio_to_claim"] == pytest.approx(
            count / MODELS[model_name].seed_param_claim
        )
    assert rows["patchtst"]["params"] > 0 and rows["patchtst"]["seed_param_claim"] is None
    # The rule layer adds no weights: every rule-model parameter is the learned correction.
    assert rows["rule"]["trainable_params"] == rows["rule"]["params"]


def test_feature_scaling_computes_in_float32_under_mixed_precision() -> None:
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        layer = FeatureScaling([180.0, 0.6], [75.0, 0.25])
        x = np.array([[[180.01, 0.61]]], dtype="float32")  # [1, 1, 2]: 0.01 s above a 180 s mean
        out = layer(x)
    finally:
        keras.config.set_dtype_policy(previous)
    assert layer.dtype_policy.compute_dtype == "float32" and layer.output_dtype == "float16"
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    # float16 before the subtraction would lose the 0.01 s (float16 spacing at 180 is 0.125)
    np.testing.assert_allclose(np.asarray(out, dtype=np.float32), [[[0.01 / 75.0, 0.04]]], rtol=2e-3)
    again = FeatureScaling.from_config(layer.get_config())
    assert (again.mean, again.scale, again.output_dtype) == (layer.mean, layer.scale, "float16")
    with pytest.raises(ValueError, match="one mean and one scale"):
        FeatureScaling([0.0, 1.0], [1.0])
    with pytest.raises(ValueError, match="> 0"):
        FeatureScaling([0.0], [0.0])
