"""The driver's Ray-free parts: overrides as the models are built, CLI options, the summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabray.config import FabrayConfig
from fabray.errors import BadInputError
from fabray.train.driver import RunSummary
from fabray.train.prepare import apply_cli_overrides, effective_overrides


def test_train_model_overrides_are_the_overrides_and_carry_no_scaler():
    config = FabrayConfig.model_validate({"train": {"model_overrides": {"lstm": {"lstm_units": [8], "dropout": 0.3}}}})
    out = effective_overrides(config, ["lstm", "rule"])
    assert out == {"lstm": {"lstm_units": [8], "dropout": 0.3}, "rule": {}}


def test_the_old_models_overrides_section_is_refused_naming_its_replacement():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"train\.model_overrides"):
        FabrayConfig.model_validate({"models": {"overrides": {"lstm": {"lstm_units": [64]}}}})
    # an empty one, as runs' config.json before the change hold, is dropped
    assert FabrayConfig.model_validate({"models": {"overrides": {}}}) == FabrayConfig()


def test_overrides_for_an_unknown_model_are_refused():
    config = FabrayConfig.model_validate({"train": {"model_overrides": {"lstmm": {}}}})
    with pytest.raises(BadInputError, match="lstmm"):
        effective_overrides(config, ["lstm"])


def test_cli_options_replace_the_config_and_are_validated():
    config = apply_cli_overrides(FabrayConfig(), models=["gru"], epochs=3, use_gpu="false")
    assert config.train.models == ("gru",) and config.train.epochs == 3 and config.train.use_gpu == "false"
    with pytest.raises(BadInputError, match="epochs"):
        apply_cli_overrides(FabrayConfig(), epochs=0)


def test_summary_table_names_each_model_and_the_failure():
    manifest = {
        "task": {"task": "event"},
        "models": {
            "lstm": {"status": "ok", "epochs_run": 2, "best_epoch": 2, "params": 1234,
                     "val_metrics": {"pr_auc": 0.5, "f1": 0.4, "accuracy": 0.9}, "train_seconds": 12.5},
            "gru": {"status": "failed", "error": "WorkerGroupError: boom\ntraceback", "params": 99},
        },
    }
    table = RunSummary(Path("/r"), manifest, failed=["gru"]).table()
    assert "lstm   ok      2       2     0.5000" in table
    assert "gru failed: WorkerGroupError: boom" in table and "traceback" not in table
