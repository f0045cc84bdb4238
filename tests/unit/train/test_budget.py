"""The training budget (`fabray train --budget`): durations, each model's share, the summary;
and the config / command-line fields of the budget and of sampled epochs."""

from __future__ import annotations

import numpy as np
import pytest

from fabray.config import FabrayConfig, TrainConfig
from fabray.errors import BadInputError
from fabray.train.budget import budget_summary, model_deadline, parse_duration_minutes
from fabray.train.prepare import apply_cli_overrides
from fabray.train.loop import epoch_sampler
from fabray.train.spec import WorkerSpec, budget_allows_next_epoch


@pytest.mark.parametrize("text, minutes", [
    ("60m", 60.0), ("1h", 60.0), ("1h30m", 90.0), ("90s", 1.5), ("1.5h", 90.0), ("45min", 45.0),
    ("45", 45.0), (" 2h 15m ", 135.0), (30, 30.0), (0.5, 0.5),
])
def test_parse_duration(text, minutes):
    assert parse_duration_minutes(text) == pytest.approx(minutes)


@pytest.mark.parametrize("text", ["", "abc", "60x", "m", "-5m", "0", "0m", "1h and 5m", "nan"])
def test_parse_duration_refuses(text):
    with pytest.raises(BadInputError):
        parse_duration_minutes(text)


def test_no_budget_no_deadline():
    assert model_deadline(100.0, None, 6, 2) is None


def test_shares_split_the_time_left_by_waves():
    # 6 models, 2 at a time, 60 minutes: three waves of 20 minutes.
    assert model_deadline(0.0, 3600.0, 6, 2) == pytest.approx(1200.0)
    assert model_deadline(0.0, 3600.0, 5, 2) == pytest.approx(1200.0)  # its twin started first
    # A model that stopped early at 10 min hands its time on: 4 left, 2 waves of 25 min.
    assert model_deadline(600.0, 3600.0, 4, 2) == pytest.approx(600.0 + 1500.0)
    # The last model gets all that is left; never past the run's deadline; none once spent.
    assert model_deadline(3000.0, 3600.0, 1, 2) == pytest.approx(3600.0)
    assert model_deadline(4000.0, 3600.0, 3, 1) == pytest.approx(3600.0)
    one_at_a_time = [model_deadline(0.0, 600.0, k, 1) for k in (6, 1)]
    assert one_at_a_time == [pytest.approx(100.0), pytest.approx(600.0)]
    with pytest.raises(ValueError):
        model_deadline(0.0, 10.0, 0, 1)


def test_the_loop_stops_starting_epochs_past_the_share():
    deadline = model_deadline(0.0, 3600.0, 6, 2)  # 1200 s
    assert budget_allows_next_epoch(700.0, deadline, 400.0)
    assert not budget_allows_next_epoch(900.0, deadline, 400.0)


def test_budget_summary_says_how_far_each_model_got():
    models = {
        "lstm": {"status": "ok", "epochs_run": 3, "best_epoch": 2, "stopped_by_budget": True, "budget_share_s": 1200.0},
        "rule": {"status": "ok", "epochs_run": 5, "best_epoch": 2, "stopped_early": True},
        "gru": {"status": "failed", "epochs_run": 0},
    }
    out = budget_summary(60.0, 1000.0, 1000.0 + 3500.0, models)
    assert out["minutes"] == 60.0 and out["seconds_used"] == 3500.0 and out["within_budget"]
    assert out["models"]["lstm"] == {"epochs_run": 3, "best_epoch": 2, "stopped_by_budget": True,
                                     "stopped_early": False, "share_s": 1200.0, "status": "ok"}
    assert out["models"]["rule"]["stopped_early"] and not out["models"]["rule"]["stopped_by_budget"]
    assert out["models"]["gru"]["status"] == "failed"
    assert not budget_summary(1.0, 0.0, 61.0, {})["within_budget"]


def test_config_and_cli_fields():
    config = apply_cli_overrides(FabrayConfig(), budget="1h30m")
    assert config.train.budget_min == 90.0
    assert apply_cli_overrides(FabrayConfig()).train.budget_min is None
    with pytest.raises(BadInputError):
        apply_cli_overrides(FabrayConfig(), budget="soon")
    assert TrainConfig(windows_per_epoch=1000).windows_per_epoch == 1000
    assert TrainConfig(epoch_fraction=0.1).epoch_fraction == 0.1
    with pytest.raises(ValueError, match="not both"):
        TrainConfig(windows_per_epoch=1000, epoch_fraction=0.1)
    with pytest.raises(ValueError):
        TrainConfig(epoch_fraction=0.0)
    with pytest.raises(ValueError):
        TrainConfig(budget_min=0)


def _spec(**kw) -> WorkerSpec:
    base = dict(model="lstm", overrides={}, task="event", lookback=10, n_features=3, epochs=5, batch_size=8,
                learning_rate=1e-3, patience=2, precision="float32", shuffle_buffer=10, event_threshold=0.5,
                seed=3, cpus=1.0)
    return WorkerSpec(**{**base, **kw})


def test_worker_epoch_sampler_from_the_spec():
    target = (np.arange(1000) % 10 == 0).astype(np.float32)
    ends = np.arange(50, 1000, dtype=np.int64)
    assert epoch_sampler(_spec(), target, None) is None  # full epochs: nothing to sample
    sampler = epoch_sampler(_spec(epoch_fraction=0.2), target, ends)
    assert sampler.size == 190 and sampler.seed == 3
    picked = sampler.sample(0)
    assert abs((target[picked] > 0.5).sum() - 19) <= 1
    assert epoch_sampler(_spec(windows_per_epoch=100), target, ends).size == 100
    with pytest.raises(ValueError, match="training ends"):
        epoch_sampler(_spec(windows_per_epoch=100), target, None)
    assert WorkerSpec.from_dict(_spec(windows_per_epoch=7).to_dict()).windows_per_epoch == 7
