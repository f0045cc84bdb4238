"""The worker's pure pieces, without Ray: early stopping, the score, validation, resuming."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fabray.train.loop import _build_or_resume, evaluate_validation
from fabray.train.spec import MODEL_FILE, SCORE, STATE_FILE, EarlyStoppingState, WorkerSpec, validation_score

LOOKBACK, N_FEATURES = 12, 12


def _spec(**kw) -> WorkerSpec:
    base = dict(
        model="lstm", overrides={"lstm_units": [4], "head_units": [4]}, task="event",
        lookback=LOOKBACK, n_features=N_FEATURES, epochs=5, batch_size=16, learning_rate=1e-2,
        patience=2, precision="float32", shuffle_buffer=10, event_threshold=0.5, seed=0, cpus=1.0,
    )
    base.update(kw)
    return WorkerSpec(**base)


def test_early_stopping_counts_epochs_without_improvement():
    state = EarlyStoppingState()
    assert state.update(0, 0.3, patience=2) is True
    assert state.update(1, 0.5, patience=2) is True
    assert state.update(2, 0.4, patience=2) is False and not state.stopped_early
    assert state.update(3, 0.5, patience=2) is False  # equal is not better
    assert state.stopped_early and state.best_epoch == 1 and state.best_score == 0.5


def test_state_round_trips_through_json_before_any_epoch():
    state = EarlyStoppingState()
    back = EarlyStoppingState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert back.best_score == -math.inf and back.epoch == -1


def test_score_is_pr_auc_else_minus_loss():
    assert validation_score({"pr_auc": 0.4}, val_loss=0.7) == 0.4
    assert validation_score({"pr_auc": math.nan}, val_loss=0.7) == -0.7


def _series(n=300, seed=0):
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((n, N_FEATURES)).astype(np.float32)  # [N, F]
    target = (features[:, 0] > 0.8).astype(np.float32)  # [N] events
    ends = np.arange(LOOKBACK - 1, n, dtype=np.int64)
    return features, target, ends


def test_validation_reports_metrics_loss_and_score():
    import keras

    from fabray.models import build_model, model_loss

    spec = _spec()
    features, target, ends = _series()
    model = build_model("lstm", LOOKBACK, N_FEATURES, spec.overrides)
    loss = keras.losses.get(model_loss("lstm", "event", spec.overrides))
    out = evaluate_validation(model, loss, spec, features, target, ends)
    assert out["val_n"] == len(ends)
    assert out[SCORE] == pytest.approx(out["val_pr_auc"])
    assert math.isfinite(out["val_loss"]) and 0 <= out["val_accuracy"] <= 1


def test_resume_restores_weights_optimizer_and_state(tmp_path):
    from ray.train import Checkpoint

    spec = _spec()
    features, target, ends = _series()
    model, state, _ = _build_or_resume(spec, None)
    from fabray.data.windows import gather_windows

    x, y = gather_windows(features, ends[:64], LOOKBACK), target[ends[:64]][:, None]
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    state.update(0, 0.42, spec.patience)
    state.history.append({"epoch": 1, "val_score": 0.42})
    model.save(tmp_path / MODEL_FILE)
    (tmp_path / STATE_FILE).write_text(json.dumps({"metrics": {}, "state": state.to_dict()}))

    resumed, back, _ = _build_or_resume(spec, Checkpoint.from_directory(str(tmp_path)))
    assert back.epoch == 0 and back.best_score == pytest.approx(0.42) and len(back.history) == 1
    assert int(resumed.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy()) == 4
    np.testing.assert_allclose(resumed.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_budget_allows_an_epoch_only_if_one_as_long_as_the_last_fits():
    from fabray.train.spec import budget_allows_next_epoch

    assert budget_allows_next_epoch(100.0, None, 1e9)  # no budget
    assert budget_allows_next_epoch(100.0, 130.0, 30.0)
    assert not budget_allows_next_epoch(100.0, 129.0, 30.0)
    assert not budget_allows_next_epoch(131.0, 130.0, 0.0)


def test_warm_start_takes_the_parents_weights_with_a_fresh_optimizer(tmp_path):
    from fabray.models import build_model

    spec = _spec()
    features, target, ends = _series()
    parent, _, _ = _build_or_resume(spec, None)
    from fabray.data.windows import gather_windows

    x, y = gather_windows(features, ends[:64], LOOKBACK), target[ends[:64]][:, None]
    parent.fit(x, y, epochs=1, batch_size=16, verbose=0)
    parent.save(tmp_path / MODEL_FILE)

    model, state, _ = _build_or_resume(spec, None, str(tmp_path / MODEL_FILE))
    assert state.warm_started and state.epoch == -1 and not state.resumed_from
    assert int(model.optimizer.iterations.numpy()) == 0  # fresh Adam at spec.learning_rate
    np.testing.assert_allclose(model.predict(x, verbose=0), parent.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    fresh = build_model("lstm", LOOKBACK, N_FEATURES, spec.overrides)
    assert not np.allclose(fresh.predict(x, verbose=0), parent.predict(x, verbose=0))

    wider = _spec(overrides={"lstm_units": [6], "head_units": [4]})
    with pytest.raises(ValueError, match="do not fit"):
        _build_or_resume(wider, None, str(tmp_path / MODEL_FILE))


def test_a_resume_is_recorded_in_the_state_and_logged(tmp_path, caplog):
    from ray.train import Checkpoint

    from fabray.data.windows import gather_windows

    spec = _spec()
    model, state, _ = _build_or_resume(spec, None)
    features, target, ends = _series()
    model.fit(gather_windows(features, ends[:16], LOOKBACK), target[ends[:16]][:, None], verbose=0)
    state.update(0, 0.1, spec.patience)
    state.update(1, 0.2, spec.patience)
    model.save(tmp_path / MODEL_FILE)
    (tmp_path / STATE_FILE).write_text(json.dumps({"metrics": {}, "state": state.to_dict()}))
    with caplog.at_level("WARNING", logger="fabray.train.loop"):
        _, back, _ = _build_or_resume(spec, Checkpoint.from_directory(str(tmp_path)))
    assert back.resumed_from == [2]
    assert "resuming lstm from epoch 2" in caplog.text


@pytest.mark.parametrize(("budget_s", "expect_epochs", "expect_batches"), [
    (1e9, 3, None),  # no pressure: every epoch
    (-1.0, 1, 1),  # already spent: stop after the first batch; that partial epoch still reports
])
def test_the_budget_stops_training_and_says_so(monkeypatch, budget_s, expect_epochs, expect_batches):
    import time as _time

    import keras

    from fabray.data.windows import gather_windows
    from fabray.train import loop

    reports = []
    monkeypatch.setattr(loop, "_report_epoch", lambda model, state, metrics, epoch: reports.append(metrics))
    spec = _spec(epochs=3, deadline_unix=_time.time() + budget_s, patience=10)
    features, target, ends = _series()
    model, state, loss = _build_or_resume(spec, None)
    x, y = gather_windows(features, ends, LOOKBACK), target[ends][:, None]
    batches = []

    class Count(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            batches.append(batch)

    model.fit(x, y, batch_size=16, epochs=spec.epochs, verbose=0,
              callbacks=[Count(), loop._epoch_callback(spec, state, loss, features, target, ends)])
    assert [r["epoch"] for r in reports] == list(range(1, expect_epochs + 1))
    assert state.stopped_by_budget == (budget_s < 0) == reports[-1]["stopped_by_budget"]
    if expect_batches is not None:
        assert len(batches) == expect_batches
    assert all(r["fit_seconds"] <= r["epoch_seconds"] and r["peak_rss_mb"] > 0 for r in reports)


def test_the_budget_skips_an_epoch_that_would_overrun(monkeypatch):
    """The deadline falls inside the second epoch (by the first epoch's duration): training stops
    after the first, at an epoch boundary."""
    from fabray.data.windows import gather_windows
    from fabray.train import loop

    reports = []
    monkeypatch.setattr(loop, "_report_epoch", lambda model, state, metrics, epoch: reports.append(metrics))
    import time as _time
    from types import SimpleNamespace

    # the loop's clock says 1000 s at every check; durations still come from perf_counter
    monkeypatch.setattr(loop, "time", SimpleNamespace(time=lambda: 1000.0, perf_counter=_time.perf_counter))
    spec = _spec(epochs=3, deadline_unix=1000.0 + 1e-9, patience=10)  # any epoch takes longer
    features, target, ends = _series()
    model, state, loss = _build_or_resume(spec, None)
    x, y = gather_windows(features, ends, LOOKBACK), target[ends][:, None]
    model.fit(x, y, batch_size=64, epochs=spec.epochs, verbose=0,
              callbacks=[loop._epoch_callback(spec, state, loss, features, target, ends)])
    assert [r["epoch"] for r in reports] == [1]
    assert state.stopped_by_budget and reports[0]["stopped_by_budget"]
