"""EnsembleParams validation and serialization; the search space; the config section."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fabray.config import EnsembleConfig, FabrayConfig
from fabray.ensemble import (
    EnsembleParams,
    params_from_sample,
    sample_search_space,
    score_params,
    search_space,
)
from fabray.ensemble.search_space import static_sample
from fabray.errors import BadInputError


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"base_weights": ()}, "non-empty"),
        ({"base_weights": (1.0, -1.0)}, ">= 0"),
        ({"base_weights": (0.0, 0.0)}, "not all 0"),
        ({"base_weights": (1.0, 1.0), "floor": 0.6}, "floor"),
        ({"base_weights": (1.0,), "half_life": 0.0}, "half_life"),
        ({"base_weights": (1.0,), "step_cap": -0.1}, "step_cap"),
        ({"base_weights": (1.0,), "temperature": math.nan}, "temperature"),
        ({"base_weights": (1.0,), "threshold": 1.5}, "threshold"),
        ({"base_weights": (1.0,), "loss": "hinge"}, "loss"),
    ],
)
def test_params_validation_names_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EnsembleParams(**kwargs)


def test_params_round_trip_through_strict_json():
    params = EnsembleParams(base_weights=(1, 2), half_life=math.inf, floor=0.1, loss="log")
    data = json.loads(json.dumps(params.to_dict(), allow_nan=False))
    assert data["half_life"] == "inf"
    assert EnsembleParams.from_dict(data) == params
    assert params.base_weights == (1.0, 2.0) and params.is_static
    with pytest.raises(ValueError, match="unknown EnsembleParams fields"):
        EnsembleParams.from_dict({**data, "halflife": 3})


def test_search_space_samples_are_valid_params():
    names = ["lstm", "gru", "cnn_lstm", "spike", "rule", "patchtst"]
    space = search_space(names)
    rng = np.random.default_rng(0)
    for _ in range(200):
        sample = sample_search_space(space, rng)
        params = params_from_sample(sample, names)
        assert params.n_models == 6
        assert 0 <= params.floor <= 0.5 / 6 + 1e-12
        assert space["half_life"]["low"] <= params.half_life <= space["half_life"]["high"]
    json.dumps(space)  # plain data
    assert not any("regime" in key for key in space)  # removed (issue 10) until regimes exist
    assert params_from_sample(static_sample(names), names).is_static
    with pytest.raises(ValueError, match="no base weight"):
        params_from_sample({"half_life": 3.0}, names)


def test_score_params_returns_the_tune_metrics():
    rng = np.random.default_rng(0)
    y = (rng.random(200) < 0.3).astype(float)
    scores = np.stack([np.where(y == 1, 0.8, 0.2), rng.random(200)], axis=1)
    metrics = score_params(EnsembleParams(base_weights=(1, 1), threshold=0.5), scores, y,
                           np.zeros(200, dtype=int), 10)
    assert {"f1", "pr_auc", "log_loss", "brier", "n"} <= set(metrics)
    assert metrics["n"] == 200 and metrics["f1"] > 0.5


def test_ensemble_config_section():
    cfg = FabrayConfig.model_validate({"ensemble": {"half_life": math.inf, "base_weights": {"rule": 3}}})
    params = cfg.ensemble.to_params(["lstm", "rule"])
    assert params.base_weights == (1.0, 3.0) and params.is_static
    with pytest.raises(BadInputError, match="not in the run"):
        EnsembleConfig(base_weights={"tcn": 1.0}).to_params(["lstm"])
    with pytest.raises(BadInputError, match="floor"):
        EnsembleConfig(floor=0.4).to_params(["lstm", "gru", "rule"])

