"""Reading a run's config back, and segment ids for lead times."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from fabray.config import TaskConfig
from fabray.errors import BadInputError
from fabray.run_data import run_config, segment_codes


def _stub(tmp_path, config: dict) -> SimpleNamespace:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return SimpleNamespace(run_dir=tmp_path, manifest={"config": "config.json"}, version="r1",
                           task=TaskConfig(horizon=5))


def test_run_config_survives_sections_that_changed_since_training(tmp_path):
    stub = _stub(tmp_path, {
        "split": {"train_fraction": 0.6, "val_fraction": 0.2},
        "train": {"epochs": 3, "no_longer_a_field": 1},
        "serve": {"retrain_num_cpus": 1.0},  # a section this code does not know
        "roi": {"delays_per_day": 12},
    })
    config = run_config(stub)
    assert (config.split.train_fraction, config.split.val_fraction) == (0.6, 0.2)
    assert config.train.epochs == 20  # stale section → defaults, with a warning
    assert config.roi.delays_per_day == 12
    assert config.task.horizon == 5  # always the models' task


def test_run_config_refuses_a_split_it_cannot_read(tmp_path):
    stub = _stub(tmp_path, {"split": {"train_fraction": 2.0}})
    with pytest.raises(BadInputError, match="'split' section"):
        run_config(stub)


def test_segment_codes_change_at_zones_and_gaps():
    prepared = SimpleNamespace(
        zone_codes=np.array([0, 0, 0, 0, 1, 1, 1]),
        timestamps=np.array([0, 1, 2, 5, 0, 1, 2]).astype("datetime64[m]").astype("datetime64[ns]"),
    )
    ends = np.array([0, 1, 2, 3, 4, 6])  # a gap in minutes between rows 2 and 3, a skipped row 5
    assert segment_codes(prepared, ends).tolist() == [0, 0, 0, 1, 2, 3]


def test_rule_overrides_of_a_run_without_rule_are_its_configured_rules(tmp_path):
    """Evaluation's rules baseline and serving's degraded answers for a run trained without
    `rule` use the run's `train.model_overrides.rule`, not the default rules; a run with a
    trained rule model gives that model's stored overrides."""
    from fabray.data.scaler import Scaler
    from fabray.run_data import rule_overrides
    from fabray.schema import FEATURES

    rules = [{"name": "full", "feature": "vehicle_util", "threshold": 0.8, "softness": 0.05, "weight": 2.0}]
    stub = _stub(tmp_path, {"train": {"model_overrides": {"rule": {"rules": rules}}}})
    stub.manifest["models"] = {"lstm": {}}
    stub.scaler = Scaler(FEATURES, tuple(0.0 for _ in FEATURES), tuple(1.0 for _ in FEATURES))
    got = rule_overrides(stub)
    assert got == {"rules": rules}  # no scaler statistics: the rules read raw windows

    (tmp_path / "rule.json").write_text(json.dumps({"overrides": {"bias": -3.0, "feature_mean": [1.0]}}))
    stub.manifest["models"]["rule"] = {"config": "rule.json"}
    assert rule_overrides(stub) == {"bias": -3.0}  # a format-1 run's stored statistics are dropped
