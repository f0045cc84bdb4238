"""The LightGBM member (issue 12 item 2): the baseline's fit and features, stored in a run, scored
by RunPredictor beside a Keras model, seen by the ensemble search. Tiny sizes, no Ray."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from fabray import schema
from fabray.data.scaler import Scaler
from fabray.errors import BadInputError
from fabray.models import gbt as gb

pytest.importorskip("lightgbm")

LOOKBACK = 20
F = len(schema.FEATURES)
SPEC = gb.LagSpec(lags=(1,), deltas=(5,), means=(5, 10), stds=(10,))  # span 10 <= LOOKBACK
CFG = gb.GBTConfig(n_estimators=40, min_child_samples=10, n_jobs=1, early_stopping_rounds=10, seed=0)


def _series(n: int = 3000, seed: int = 0):
    """Raw series [N, F] (offset, scaled) and a target: the mean of feature 0 over the last 5
    minutes is high (trees on `mean5` learn it)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, F))
    mean5 = np.convolve(z[:, 0], np.ones(5) / 5, mode="full")[:n]
    y = (mean5 > 0.5).astype(np.float64)
    scaler = Scaler(schema.FEATURES, tuple(rng.uniform(1, 5, F)), tuple(rng.uniform(0.5, 2, F)))
    raw = z * np.asarray(scaler.scale) + np.asarray(scaler.mean)
    ends = np.arange(LOOKBACK - 1, n)
    return raw, y, scaler, ends[:1800], ends[1800:2400], ends[2400:]


@pytest.fixture(scope="module")
def fitted():
    from fabray.models.gbt import fit_member

    raw, y, scaler, tr, va, te = _series()
    return raw, y, scaler, tr, va, te, fit_member(raw, y, tr, va, LOOKBACK, scaler, CFG, SPEC)


def test_member_scores_equal_the_baselines_on_the_same_features(fitted):
    from fabray.data.windows import gather_windows
    from fabray.models.gbt import GBTMember

    raw, y, scaler, tr, va, te, member_fit = fitted
    # The baseline, fitted the way `fabray evaluate` fits it.
    lags = lambda at: gb.lag_features(raw, at, LOOKBACK, SPEC, scaler=scaler)  # noqa: E731
    model = gb.fit_gbt(lags(gb.subsample_ends(tr, CFG.max_train_rows, CFG.seed)), y[tr], lags(va), y[va], CFG)
    expected = gb.gbt_scores(model, lags(te))
    member = GBTMember.from_text(member_fit.model_text, member_fit.spec, scaler, LOOKBACK, F)
    got = member.score(gather_windows(raw, te, LOOKBACK))  # raw windows, as RunPredictor passes them
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert member_fit.best_iteration == model.best_iteration_
    assert member_fit.history and "val_average_precision" in member_fit.history[0]
    assert member_fit.val_metrics["pr_auc"] > 0.8  # it learned the signal


def test_window_lag_features_equal_the_series_ones():
    from fabray.data.windows import gather_windows
    from fabray.models.gbt import window_lag_features

    raw, _, scaler, _, _, te = _series(600)
    np.testing.assert_allclose(window_lag_features(gather_windows(raw, te, LOOKBACK), SPEC, scaler),
                               gb.lag_features(raw, te, LOOKBACK, SPEC, scaler=scaler), rtol=1e-6, atol=1e-6)


def _land(fitted, tmp: Path) -> tuple[dict, dict[str, bytes]]:
    """The member landed by `fabray.train.gbt_task.land_member`: (manifest entry, files)."""
    from fabray.config import FabrayConfig
    from fabray.models.gbt import GBT
    from fabray.train.gbt_task import land_member
    from fabray.train.landing import SharedRun
    from fabray.train.resources import WorkerResources

    *_, scaler, _, _, _, member_fit = fitted
    config = FabrayConfig.model_validate({"task": {"lookback": LOOKBACK, "horizon": 5, "sla_delay_s": 60.0},
                                          "train": {"models": ["lstm", GBT]}})
    prepared = SimpleNamespace(input_columns=list(schema.FEATURES), context=None, scaler=scaler,
                               nominal_s={"Z01": 150.0}, zones=["Z01"], lookback=LOOKBACK, horizon=5)
    shared = SharedRun(tmp, config, prepared, [], np.array([]), {GBT: WorkerResources(model=GBT, cpus=1, gpus=0)},
                       {GBT: None}, {GBT: {}}, monitor=None)
    entry = land_member(shared, member_fit, 0.0)
    files = {str(p.relative_to(tmp)): p.read_bytes() for p in (tmp / "models" / GBT).iterdir() if p.is_file()}
    return entry, files


@pytest.fixture(scope="module")
def run_with_gbt(fitted, tmp_path_factory, make_run) -> Path:
    """A run with a Keras lstm and the gbt member, written by the landing code and the manifest writer."""
    import keras

    from fabray.models import build_model

    scaler = fitted[2]
    entry, files = _land(fitted, tmp_path_factory.mktemp("landed"))
    saved = tmp_path_factory.mktemp("saved")
    build_model("lstm", LOOKBACK, F, {"lstm_units": [4], "head_units": [4]}, scaler).save(saved / "lstm.keras")
    keras.backend.clear_session()
    files["models/lstm/model.keras"] = (saved / "lstm.keras").read_bytes()
    files["models/lstm/preprocessing.json"] = files["models/gbt/preprocessing.json"]
    lstm = {"status": "ok", "model": "models/lstm/model.keras", "preprocessing": "models/lstm/preprocessing.json"}
    task = json.loads(files["models/gbt/preprocessing.json"])["task"]
    return make_run(tmp_path_factory.mktemp("run") / "rg", {"lstm": lstm, "gbt": entry}, files=files,
                    extra={"task": task})


def test_a_run_with_a_gbt_member_scores_it_through_run_predictor(fitted, run_with_gbt):
    from fabray.data.windows import gather_windows
    from fabray.models.gbt import GBTMember
    from fabray.predictor import RunPredictor

    raw, _, scaler, _, _, te, member_fit = fitted
    p = RunPredictor.load(run_with_gbt)
    assert p.model_names == ("lstm", "gbt") and p.keras_names == ("lstm",)
    windows = gather_windows(raw, te[:300], LOOKBACK)
    scores = p.score(windows)
    assert list(scores) == ["lstm", "gbt"]
    direct = GBTMember.from_text(member_fit.model_text, member_fit.spec, scaler, LOOKBACK, F).score(windows)
    np.testing.assert_array_equal(scores["gbt"], direct)
    np.testing.assert_array_equal(scores["lstm"], 1 / (1 + np.exp(-p.zoo_outputs(windows)[0].astype(np.float64))))
    assert p.describe()["models"] == ["lstm", "gbt"]


def test_a_changed_gbt_model_file_is_refused_by_its_checksum(run_with_gbt, tmp_path):
    import shutil

    from fabray.predictor import RunPredictor

    run = tmp_path / "rg"
    shutil.copytree(run_with_gbt, run)
    path = run / "models" / "gbt" / "model.txt"
    path.write_text(path.read_text().replace("num_leaves=", "num_leaves= "))
    with pytest.raises(BadInputError, match="checksum"):
        RunPredictor.load(run, warm_up=False)


def test_the_ensemble_search_sees_the_gbt_member(fitted, run_with_gbt):
    """The fixed candidates of `fabray ensemble` on the run's own scores: gbt is a member; the
    untrained lstm is noise, so the winner is gbt alone or a combination holding it."""
    from fabray.data.windows import gather_windows
    from fabray.ensemble import objective as obj
    from fabray.ensemble import selection as sel
    from fabray.predictor import RunPredictor

    raw, y, *_ , va, _, _ = fitted
    p = RunPredictor.load(run_with_gbt)
    scores = p.score(gather_windows(raw, va, LOOKBACK))
    data = obj.ValidationScores(
        model_names=p.model_names, scores=np.stack([scores[n] for n in p.model_names], axis=1),
        outcomes=y[va], zone_codes=np.zeros(len(va), dtype=np.int64), zone_names=("Z01",), feedback_lag=5,
    )
    candidates, winner, _ = sel.search_candidates(data, [], "f1")
    assert "member_gbt" in candidates and "member_lstm" in candidates
    assert "gbt" in obj.members_of(candidates[winner][1], p.model_names)
    assert candidates["member_gbt"][0]["f1"] > candidates["member_lstm"][0]["f1"]


def test_gbt_in_train_models_without_lightgbm_is_refused_naming_the_extra(monkeypatch):
    from fabray.config import FabrayConfig
    from fabray.train.prepare import check_models

    config = FabrayConfig.model_validate({"task": {"lookback": LOOKBACK}, "train": {"models": ["gbt"]}})
    monkeypatch.setattr(gb, "gbt_available", lambda: False)
    with pytest.raises(BadInputError, match=r"fabray\[gbt\]"):
        check_models(["gbt"], {"gbt": {}}, config, F)


def test_gbt_overrides_are_gbt_config_fields():
    from fabray.config import FabrayConfig
    from fabray.train.prepare import check_models

    config = FabrayConfig.model_validate({"task": {"lookback": LOOKBACK}, "train": {"models": ["gbt"]}})
    assert check_models(["gbt"], {"gbt": {"n_estimators": 10}}, config, F) == {"gbt": None}
    with pytest.raises(BadInputError, match="unknown field"):
        check_models(["gbt"], {"gbt": {"lstm_units": [4]}}, config, F)


def test_serving_scores_the_gbt_member_beside_the_compiled_zoo(fitted, run_with_gbt, tmp_path):
    """The serving bundle's one compiled call holds the Keras members; the LightGBM member is
    scored beside it and its column lands in the run's model order, equal to RunPredictor's."""
    from fabray.data.windows import gather_windows
    from fabray.serve.bundle import ServingBundle
    from fabray.serve.store import ModelStore

    raw, *_, te, _ = fitted
    store = ModelStore(tmp_path / "store")
    bundle = ServingBundle.load(store, store.import_run(run_with_gbt))
    assert bundle.model_names == ("lstm", "gbt")
    windows = gather_windows(raw, te[:200], LOOKBACK).astype(np.float32)
    scores, rules, fired = bundle.score_full(windows)
    expected = bundle.predictor.score(windows)
    assert scores.shape == (200, 2) and rules.shape == (200,) and fired.shape[0] == 200
    np.testing.assert_allclose(scores[:, 1], expected["gbt"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(scores[:, 0], expected["lstm"], rtol=1e-5, atol=1e-6)


def test_a_run_of_the_gbt_member_alone_is_served(fitted, tmp_path, make_run):
    """No Keras member: the bundle's compiled call holds none, the gbt member answers alone."""
    from fabray.data.windows import gather_windows
    from fabray.serve.bundle import ServingBundle
    from fabray.serve.store import ModelStore

    raw, *_, te, _ = fitted
    entry, files = _land(fitted, tmp_path / "landed")
    task = json.loads(files["models/gbt/preprocessing.json"])["task"]
    run = make_run(tmp_path / "run" / "g", {"gbt": entry}, files=files, extra={"task": task})
    store = ModelStore(tmp_path / "store")
    bundle = ServingBundle.load(store, store.import_run(run))
    windows = gather_windows(raw, te[:50], LOOKBACK).astype(np.float32)
    scores, rules, _ = bundle.score_full(windows)
    assert bundle.model_names == ("gbt",) and scores.shape == (50, 1) and rules.shape == (50,)
    np.testing.assert_allclose(scores[:, 0], bundle.predictor.score(windows)["gbt"], rtol=1e-6, atol=1e-7)
