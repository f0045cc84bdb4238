"""PatchTST: patching, RevIN, channel independence, both heads, save -> load, the ETT benchmark."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from fabray.errors import BadInputError
from fabray.models.layers.patchtst import Patching, RevIN
from fabray.models.patchtst import PatchTSTConfig, build_patchtst

REPO_ROOT = Path(__file__).resolve().parents[3]

# small but complete: every block of the paper's model, a few thousand parameters
TINY = dict(num_layers=2, num_heads=2, d_model=8, d_ff=16, dropout=0.1)


def _load_ett_benchmark():
    spec = importlib.util.spec_from_file_location("ett_benchmark", REPO_ROOT / "benchmarks" / "ett.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------ patching


def test_patching_hand_checked_with_end_padding():
    series = np.arange(7, dtype="float32")  # 0 1 2 3 4 5 6
    x = np.stack([series, 10 * series], axis=-1)[None]  # [1, L=7, C=2]
    patches = keras.ops.convert_to_numpy(Patching(3, 2, padding="end")(x))  # [1, C, N, P]
    # padded 0..6 6 6 (last value repeated `stride` = 2 times) -> (9 - 3) // 2 + 1 = 4 patches
    expected = np.array([[0, 1, 2], [2, 3, 4], [4, 5, 6], [6, 6, 6]], dtype="float32")
    assert patches.shape == (1, 2, 4, 3)
    np.testing.assert_array_equal(patches[0, 0], expected)
    np.testing.assert_array_equal(patches[0, 1], 10 * expected)


def test_patching_without_padding_drops_a_short_tail():
    x = np.arange(8, dtype="float32")[None, :, None]  # [1, L=8, C=1]
    patches = keras.ops.convert_to_numpy(Patching(3, 2)(x))
    # (8 - 3) // 2 + 1 = 3 patches; step 7 is in no patch (as torch's unfold)
    np.testing.assert_array_equal(patches[0, 0], [[0, 1, 2], [2, 3, 4], [4, 5, 6]])


def test_patch_counts_of_the_fab_and_the_paper():
    assert Patching(10, 10).num_patches(100) == 10  # fab: 100 minutes -> 10 patches of 10
    assert Patching(16, 8, padding="end").num_patches(336) == 42  # PatchTST/42
    with pytest.raises(ValueError, match="Received: lookback=5"):
        Patching(10, 10).num_patches(5)


# ------------------------------------------------------------------------------------ RevIN


def test_revin_normalizes_per_instance_and_channel_and_inverts_exactly():
    rng = np.random.default_rng(0)
    # channels on very different scales (std >> sqrt(eps): RevIN adds eps=1e-5 to the variance)
    scale = np.array([0.5, 1.0, 250.0], dtype="float32")
    offset = np.array([-3.0, 0.0, 1e3], dtype="float32")
    x = (rng.normal(size=(4, 50, 3)) * scale + offset).astype("float32")  # [B, L, C]
    x[1] *= 7.0  # instances differ too
    revin = RevIN(affine=True)
    y, mean, std = (keras.ops.convert_to_numpy(t) for t in revin(x, mode="norm"))
    np.testing.assert_allclose(y.mean(axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(y.std(axis=1), 1.0, atol=1e-3)
    np.testing.assert_allclose(mean[:, 0], x.mean(axis=1), rtol=1e-5)
    assert std.shape == (4, 1, 3)

    # with a non-trivial learned affine, denorm(norm(x)) still returns the input
    revin.affine_weight.assign(np.array([0.5, 2.0, -1.5], dtype="float32"))
    revin.affine_bias.assign(np.array([0.1, -0.3, 2.0], dtype="float32"))
    y, mean, std = revin(x, mode="norm")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(y).mean(axis=1), np.broadcast_to([0.1, -0.3, 2.0], (4, 3)), atol=1e-4
    )
    back = keras.ops.convert_to_numpy(revin([y, mean, std], mode="denorm"))
    np.testing.assert_allclose(back, x, rtol=1e-5, atol=1e-5 * np.abs(x).max())


def test_revin_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="Received: mode='both'"):
        RevIN()(np.zeros((1, 4, 2), "float32"), mode="both")


# ------------------------------------------------------------------------------------ models


def test_output_shapes_of_both_variants():
    x = np.random.default_rng(1).normal(size=(3, 100, 12)).astype("float32")
    score = build_patchtst(PatchTSTConfig(**TINY), lookback=100, n_features=12)
    out = score(x)
    assert tuple(out.shape) == (3, 1)
    assert out.dtype == "float32"
    assert score.get_layer("patching").compute_output_shape((None, 100, 12)) == (None, 12, 10, 10)

    forecast_cfg = PatchTSTConfig(**TINY, task_head="forecast", horizon=7, patch_len=16, stride=8,
                                  padding_patch="end")
    forecast = build_patchtst(forecast_cfg, lookback=64, n_features=5)
    assert tuple(forecast(x[:, :64, :5]).shape) == (3, 7, 5)


def test_forecast_is_channel_independent():
    cfg = PatchTSTConfig(**TINY, task_head="forecast", horizon=6)
    model = build_patchtst(cfg, lookback=40, n_features=4)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5, 40, 4)).astype("float32")
    changed = x.copy()
    changed[:, :, 2] = rng.normal(size=(5, 40)) * 5 + 3  # replace channel 2 only
    before = keras.ops.convert_to_numpy(model(x, training=False))
    after = keras.ops.convert_to_numpy(model(changed, training=False))
    for channel in (0, 1, 3):
        np.testing.assert_allclose(after[:, :, channel], before[:, :, channel], atol=1e-5)
    assert np.abs(after[:, :, 2] - before[:, :, 2]).max() > 1e-2  # channel 2 itself did change


def test_forecast_denormalizes_to_the_input_scale():
    """RevIN's denormalization puts the forecast in the window's own units: a shifted window
    (mean + 1000) gives the same forecast + 1000 (the model itself sees only normalized data)."""
    cfg = PatchTSTConfig(**TINY, task_head="forecast", horizon=4)
    model = build_patchtst(cfg, lookback=30, n_features=2)
    x = np.random.default_rng(3).normal(size=(2, 30, 2)).astype("float32")
    base = keras.ops.convert_to_numpy(model(x, training=False))
    shifted = keras.ops.convert_to_numpy(model(x + 1000.0, training=False))
    np.testing.assert_allclose(shifted - 1000.0, base, atol=1e-2)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"task_head": "forecast", "horizon": 5, "padding_patch": "end", "patch_len": 8, "stride": 4,
         "revin_affine": False, "res_attention": False, "norm": "layer"},
    ],
    ids=["score", "forecast"],
)
def test_save_load_gives_identical_outputs(tmp_path, overrides):
    model = build_patchtst(PatchTSTConfig(**TINY, **overrides), lookback=100, n_features=12)
    x = np.random.default_rng(4).normal(size=(3, 100, 12)).astype("float32")
    # move every weight off its initial value (BatchNorm moving statistics and RevIN's affine too)
    rng = np.random.default_rng(5)
    for weight in model.weights:
        weight.assign(rng.uniform(0.5, 1.5, size=weight.shape).astype("float32"))
    path = tmp_path / "patchtst.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(x, training=False)),
        keras.ops.convert_to_numpy(model(x, training=False)),
    )


def test_bad_hyper_parameters_are_named():
    with pytest.raises(BadInputError, match="Received: task_head='classify'"):
        PatchTSTConfig(task_head="classify")
    with pytest.raises(BadInputError, match="Received: d_model=30, num_heads=4"):
        PatchTSTConfig(d_model=30)
    with pytest.raises(ValueError, match="Received: lookback=5"):
        build_patchtst(PatchTSTConfig(), lookback=5, n_features=12)


# ------------------------------------------------------------------------------------ benchmark


def test_ett_split_arithmetic_matches_the_paper():
    ett = _load_ett_benchmark()
    bounds = ett.split_bounds(17420, 720, lookback=336, horizon=96)  # ETTh1, hourly
    assert bounds == {"train": (0, 8640), "val": (8304, 11520), "test": (11184, 14400)}
    quarter_hours = pd.date_range("2016-07-01", periods=10, freq="15min")
    assert ett.rows_per_month(quarter_hours) == 2880  # ETTm: 12 months = 34560 rows
    with pytest.raises(BadInputError, match="needs 14400 rows"):
        ett.split_bounds(14000, 720, lookback=336, horizon=96)


@pytest.mark.slow  # one (tiny) training epoch: tracing the train/predict functions dominates
def test_ett_benchmark_runs_on_a_tiny_synthetic_file(tmp_path):
    """A daily ETT-format file (30 rows a month) with 3 channels: 620 rows, of which 600 are used."""
    ett = _load_ett_benchmark()
    rng = np.random.default_rng(5)
    t = np.arange(620)
    frame = pd.DataFrame({"date": pd.date_range("2020-01-01", periods=620, freq="D").strftime("%Y-%m-%d %H:%M:%S")})
    for i, name in enumerate(["a", "b", "load"]):
        frame[name] = np.sin(2 * np.pi * t / (7 + i)) * (i + 1) + 10 * i + 0.1 * rng.normal(size=t.size)
    data = tmp_path / "tiny_ett.csv"
    frame.to_csv(data, index=False)
    out = tmp_path / "result.json"

    code = ett.main(["--data", str(data), "--horizon", "6", "--json", str(out), "--epochs", "1",
                     "--lookback", "24", "--patch-len", "8", "--stride", "4", "--batch-size", "32",
                     "--quiet"])
    assert code == 0
    result = json.loads(out.read_text())
    assert {"dataset", "horizon", "lookback", "mse", "mae", "epochs", "seconds"} <= set(result)
    assert result["dataset"] == "tiny_ett" and result["horizon"] == 6 and result["lookback"] == 24
    assert result["epochs"] == 1 and "paper_mse" not in result
    assert result["rows_per_month"] == 30 and result["channels"] == 3
    assert result["splits"] == {"train": [0, 360], "val": [336, 480], "test": [456, 600]}
    # windows = rows - lookback - horizon + 1
    assert result["windows"] == {"train": 331, "val": 115, "test": 115}
    assert np.isfinite(result["mse"]) and result["mse"] > 0 and result["mae"] > 0
    assert result["baseline"]["name"] == "last_value" and result["baseline"]["mse"] > 0
    assert result["official_drop_last"]["windows"] == 96  # 115 test windows, batches of 32


def test_ett_benchmark_rejects_a_short_file(tmp_path, capsys):
    ett = _load_ett_benchmark()
    frame = pd.DataFrame({"date": pd.date_range("2020-01-01", periods=100, freq="h"), "x": np.arange(100.0)})
    data = tmp_path / "short.csv"
    frame.to_csv(data, index=False)
    assert ett.main(["--data", str(data), "--json", str(tmp_path / "r.json")]) == 2
    assert "needs 14400 rows" in capsys.readouterr().err
