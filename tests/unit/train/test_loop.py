"""The worker's pure pieces, without Ray: early stopping, the score, validation, resuming."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fabray.train.loop import (
    MODEL_FILE,
    SCORE,
    STATE_FILE,
    EarlyStoppingState,
    WorkerSpec,
    _build_or_resume,
    evaluate_validation,
    validation_score,
)

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


def test_score_is_pr_auc_else_minus_loss_for_events_and_minus_mae_for_delay():
    assert validation_score("event", {"pr_auc": 0.4}, val_loss=0.7) == 0.4
    assert validation_score("event", {"pr_auc": math.nan}, val_loss=0.7) == -0.7
    assert validation_score("delay", {"mae": 12.0}, val_loss=3.0) == -12.0


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
