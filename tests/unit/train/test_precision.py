"""The mixed-precision decision over fake device descriptions (no GPU needed)."""

from __future__ import annotations

import pytest

from fabray.train.precision import choose_precision

H100 = {"device_name": "NVIDIA H100 80GB HBM3", "compute_capability": (9, 0)}
V100 = {"device_name": "Tesla V100", "compute_capability": (7, 0)}
P100 = {"device_name": "Tesla P100", "compute_capability": (6, 0)}
T4_AS_STRING = {"device_name": "Tesla T4", "compute_capability": "7.5"}
UNKNOWN = {"device_name": "some GPU"}


@pytest.mark.parametrize(
    ("devices", "expected"),
    [
        ([], "float32"),  # CPU only
        ([H100], "mixed_float16"),
        ([V100], "mixed_float16"),  # exactly 7.0 qualifies
        ([T4_AS_STRING], "mixed_float16"),
        ([P100], "float32"),  # no tensor cores
        ([UNKNOWN], "float32"),  # capability unknown: stay safe
        ([H100, P100], "float32"),  # a mixed set runs at the slowest one's pace
        ([H100, H100], "mixed_float16"),
    ],
)
def test_auto_follows_the_visible_gpus(devices, expected):
    assert choose_precision("auto", devices) == expected


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_explicit_policy_is_kept_whatever_the_devices(policy):
    assert choose_precision(policy, []) == policy
    assert choose_precision(policy, [P100]) == policy


def test_unknown_policy_is_refused_with_what_was_received():
    with pytest.raises(ValueError, match="Received: 'fp16'"):
        choose_precision("fp16", [H100])


def test_a_mixed_float16_model_is_stored_as_a_float32_copy_with_the_same_weights(tmp_path):
    import keras
    import numpy as np

    import fabray.models  # noqa: F401 - registers the custom layers
    from fabray.models import build_model
    from fabray.train.precision import float32_copy

    overrides = {"lstm_units": [4], "head_units": [4]}
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        trained = build_model("lstm", 12, 12, overrides)
        trained.save(tmp_path / "mixed.keras")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    loaded = keras.saving.load_model(tmp_path / "mixed.keras", compile=False)
    assert any(layer.dtype_policy.name == "mixed_float16" for layer in loaded.layers)

    clean = float32_copy(loaded, lambda: build_model("lstm", 12, 12, overrides))
    clean.save(tmp_path / "clean.keras")
    back = keras.saving.load_model(tmp_path / "clean.keras", compile=False)
    assert {layer.dtype_policy.name for layer in back.layers} == {"float32"}
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    x = np.random.default_rng(0).standard_normal((8, 12, 12)).astype("float32")
    out = back.predict(x, verbose=0)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, loaded.predict(x, verbose=0).astype("float32"), atol=2e-2)
