"""The config's loaders (`load_config`, `as_config`) and the switches removed until they work
(issue 10: `task: delay`, `ensemble.use_regimes`): refused by name, never silently ignored."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fabray.config import EnsembleConfig, FabrayConfig, TaskConfig, as_config, load_config
from fabray.ensemble import EnsembleParams
from fabray.errors import BadInputError


def test_use_regimes_is_gone_and_refused_with_a_message(tmp_path):
    """`ensemble.use_regimes` was a no-op (nothing supplied regimes): it is no field any more;
    `false`, as runs written before store it, is dropped, anything else refused by name."""
    assert "use_regimes" not in EnsembleConfig.model_fields
    assert "use_regimes" not in EnsembleParams(base_weights=(1.0,)).to_dict()
    old_run = FabrayConfig.model_validate({"ensemble": {"use_regimes": False, "half_life": 30.0}})
    assert old_run.ensemble == EnsembleConfig(half_life=30.0)
    path = tmp_path / "fabray.yaml"
    path.write_text("ensemble:\n  use_regimes: true\n")
    with pytest.raises(BadInputError, match=r"(?s)ensemble\n.*use_regimes was removed.*use_regimes=True"):
        load_config(path)


def test_task_delay_is_refused_naming_the_field(tmp_path):
    """Only task "event" is built: `task: delay` (never supported by ensemble or evaluate) is
    refused with the field's path and the reason, the stored `task: event` still loads."""
    assert FabrayConfig.model_validate({"task": {"task": "event"}}).task.task == "event"
    path = tmp_path / "fabray.yaml"
    path.write_text("task:\n  task: delay\n")
    with pytest.raises(BadInputError, match=r"(?s)task\.task\n.*only task 'event' is built.*task='delay'"):
        load_config(path)
    with pytest.raises(ValidationError, match="only task 'event' is built"):
        TaskConfig(task="delay")


def test_as_config_accepts_none_a_path_a_mapping_or_a_config(tmp_path):
    path = tmp_path / "fabray.yaml"
    path.write_text("task:\n  horizon: 7\n")
    assert as_config(None) == FabrayConfig()
    assert as_config(path).task.horizon == 7 and as_config(str(path)).task.horizon == 7
    assert as_config({"task": {"horizon": 7}}) == as_config(path)
    cfg = FabrayConfig()
    assert as_config(cfg) is cfg
    with pytest.raises(BadInputError, match=r"(?s)invalid config:.*horizon"):
        as_config({"task": {"horizon": 0}})
    with pytest.raises(BadInputError, match="Received: int"):
        as_config(3)
