"""RunPredictor on a hand-made run directory (tiny models saved here, no training, no Ray)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fabray import schema
from fabray.data.scaler import Scaler
from fabray.errors import BadInputError

LOOKBACK = 20
F = len(schema.FEATURES)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run with two saved models (lstm, rule), one failed model and a manifest."""
    from tests.unit.run_factory import keras_run

    rng = np.random.default_rng(0)
    scaler = Scaler(schema.FEATURES, tuple(rng.uniform(1, 5, F)), tuple(rng.uniform(0.5, 2, F)))
    return keras_run(tmp_path_factory.mktemp("run") / "r7", scaler, lookback=LOOKBACK,
                     models={"gru": {"status": "failed", "error": "boom"}}, extra={"status": "partial"})


def _copy(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / run.name
    shutil.copytree(run, dst)
    return dst


def _edit_manifest(run: Path, fn) -> None:
    manifest = json.loads((run / "manifest.json").read_text())
    fn(manifest)
    (run / "manifest.json").write_text(json.dumps(manifest))


def test_load_reads_the_run_and_skips_failed_models(run_dir):
    from fabray.predictor import RunPredictor

    p = RunPredictor.load(run_dir)
    assert p.version == "r7"
    assert p.model_names == ("lstm", "rule")
    assert p.zones == ("Z01", "Z02")
    assert (p.lookback, p.n_features, p.horizon, p.task.task) == (LOOKBACK, F, 5, "event")
    assert p.ensemble is None and p.new_ensemble() is None
    assert p.describe()["models"] == ["lstm", "rule"]


def test_score_windows_passes_raw_windows_to_the_models_which_scale_them(run_dir):
    from fabray.models import FeatureScaling
    from fabray.predictor import RunPredictor

    p = RunPredictor.load(run_dir)
    assert p.format_version == 2
    raw = np.random.default_rng(1).uniform(0, 10, (5, LOOKBACK, F))
    scores = p.score_windows(raw)
    outputs = p.zoo_outputs(raw)  # the whole zoo in one call: [M, B], rows in model_names order
    assert outputs.shape == (len(p.model_names), 5)
    for i, name in enumerate(p.model_names):
        first = p.model(name).layers[1]  # the layer after the Input: the training statistics
        assert isinstance(first, FeatureScaling)
        assert first.mean == pytest.approx(p.scaler.mean) and first.scale == pytest.approx(p.scaler.scale)
        logit = p.model(name).predict(raw, verbose=0).reshape(-1)
        np.testing.assert_allclose(outputs[i], logit, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(scores[name], 1 / (1 + np.exp(-logit)), rtol=1e-4, atol=1e-6)
        assert scores[name].shape == (5,)
    one = p.score_windows(raw[0])  # a single [L, F] window is a batch of one
    assert one["lstm"].shape == (1,) and one["lstm"][0] == pytest.approx(scores["lstm"][0], abs=1e-6)


def test_score_prepared_gathers_windows_by_end_row(run_dir):
    from fabray.data.windows import PreparedData, gather_windows
    from fabray.predictor import RunPredictor

    p = RunPredictor.load(run_dir)
    n = 90
    rng = np.random.default_rng(2)
    prepared = PreparedData(
        features=rng.standard_normal((n, F)).astype(np.float32), target=np.zeros(n, np.float32),
        delay_s=np.zeros(n, np.float32), zone_codes=np.zeros(n, np.int32), zones=("Z01",),
        timestamps=np.arange(n).astype("datetime64[m]").astype("datetime64[ns]"), splits={},
        scaler=p.scaler, nominal_s={"Z01": 150.0}, lookback=LOOKBACK, horizon=5,
    )
    ends = np.arange(LOOKBACK - 1, n, 3)
    got = p.score_prepared(prepared, ends, batch_size=7, progress=False)
    expected = p.score(gather_windows(prepared.features, ends, LOOKBACK))
    for name in p.model_names:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5)
    other = PreparedData(**{**prepared.__dict__, "scaler": Scaler(schema.FEATURES, (0.0,) * F, (1.0,) * F)})
    with pytest.raises(BadInputError, match="another scaler"):
        p.score_prepared(other, ends)


@pytest.mark.parametrize(
    "windows, match",
    [
        (np.zeros((2, LOOKBACK - 1, F)), r"Received: shape \[2, 19, 12\]"),
        (np.zeros((2, LOOKBACK, F - 1)), "12 features"),
        (np.full((1, LOOKBACK, F), np.nan), "NaN/inf"),
        ([["a"] * F] * LOOKBACK, "numbers"),
    ],
)
def test_bad_windows_are_bad_input(run_dir, windows, match):
    from fabray.predictor import RunPredictor

    p = RunPredictor.load(run_dir, warm_up=False)
    with pytest.raises(BadInputError, match=match):
        p.score_windows(windows)


def test_missing_model_file_is_refused(run_dir, tmp_path):
    from fabray.predictor import RunPredictor

    run = _copy(run_dir, tmp_path)
    (run / "models" / "rule" / "model.keras").unlink()
    with pytest.raises(BadInputError, match=r"models/rule/model.keras, which is missing"):
        RunPredictor.load(run)


def test_checksum_mismatch_is_refused(run_dir, tmp_path):
    from fabray.files import sha256_file
    from fabray.predictor import RunPredictor

    run = _copy(run_dir, tmp_path)
    rel = "models/lstm/preprocessing.json"
    good = sha256_file(run / rel)
    _edit_manifest(run, lambda m: m["models"]["lstm"].update(checksums={rel: good}))
    RunPredictor.load(run, warm_up=False)  # matching checksum: fine
    with open(run / rel, "a") as fh:
        fh.write(" ")
    with pytest.raises(BadInputError, match="does not match its checksum"):
        RunPredictor.load(run, warm_up=False)


def test_a_run_of_a_newer_manifest_format_is_refused_saying_how_to_convert(run_dir, tmp_path):
    from fabray.predictor import RunPredictor

    run = _copy(run_dir, tmp_path)
    _edit_manifest(run, lambda m: m.update(format_version=99))
    with pytest.raises(BadInputError, match=r"format_version 99 .*re-train it with this fabray"):
        RunPredictor.load(run, warm_up=False)


def test_ensemble_for_other_models_is_refused(run_dir, tmp_path):
    from fabray.ensemble import DynamicEnsemble, EnsembleParams
    from fabray.predictor import RunPredictor

    run = _copy(run_dir, tmp_path)
    params = EnsembleParams(base_weights=(1.0, 1.0, 1.0))
    doc = {"format": "fabray-ensemble", "model_names": ["lstm", "rule", "gru"], "params": params.to_dict(),
           "static_params": EnsembleParams.static([1, 1, 1]).to_dict(),
           "state": DynamicEnsemble(params, ["lstm", "rule", "gru"]).to_state()}
    (run / "ensemble.json").write_text(json.dumps(doc))
    _edit_manifest(run, lambda m: m.update(ensemble={"file": "ensemble.json"}))
    with pytest.raises(BadInputError, match="re-run `fabray ensemble`"):
        RunPredictor.load(run, warm_up=False)


def test_fitted_ensemble_loads_as_independent_online_objects(run_dir, tmp_path):
    from fabray.ensemble import DynamicEnsemble, EnsembleParams
    from fabray.predictor import RunPredictor

    run = _copy(run_dir, tmp_path)
    params = EnsembleParams(base_weights=(1.0, 3.0), half_life=5.0, step_cap=1.0)
    ens = DynamicEnsemble(params, ["lstm", "rule"])
    ens.update("Z01", [0.9, 0.1], 1.0)
    doc = {"format": "fabray-ensemble", "model_names": ["lstm", "rule"], "params": params.to_dict(),
           "static_params": EnsembleParams.static([1, 3]).to_dict(), "state": ens.to_state(),
           "feedback_lag": 5, "model_thresholds": {"lstm": 0.3, "rule": 0.4}}
    (run / "ensemble.json").write_text(json.dumps(doc))
    _edit_manifest(run, lambda m: m.update(ensemble={"file": "ensemble.json"}))
    p = RunPredictor.load(run, warm_up=False)
    assert p.ensemble.feedback_lag == 5 and p.ensemble.model_thresholds == {"lstm": 0.3, "rule": 0.4}
    a, b = p.new_ensemble(), p.new_ensemble()
    assert a.weights("Z01") == ens.weights("Z01") != a.weights("Z02")
    a.update("Z01", [0.9, 0.1], 1.0)
    assert b.weights("Z01") == ens.weights("Z01")  # b is not changed by a
