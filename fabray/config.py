"""fabray's configuration: YAML or CLI → validated pydantic models → handed to pure code.

Every section is a frozen pydantic model with a description on every field. Pure code (data,
models, ensemble) receives these immutable objects; it never reads files or environment itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fabray.errors import BadInputError


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TaskConfig(_Section):
    """What is predicted (DESIGN §1)."""

    lookback: int = Field(100, ge=2, description="Minutes of history in one window.")
    horizon: int = Field(10, ge=1, description="Minutes ahead whose mean delay is the target.")
    sla_delay_s: float = Field(
        60.0, gt=0, description="A mean delay above this many seconds is a delay event."
    )
    task: Literal["event", "delay"] = Field(
        "event", description="'event': binary delay_event (logit head); 'delay': regress delay_s."
    )
    nominal_transport_time_s: dict[str, float] | None = Field(
        None,
        description="Nominal transport time per zone, seconds. Zones missing here use their "
        "median transport_time_s over the training split (stored with the model).",
    )


class SplitConfig(_Section):
    """Time-ordered train / validation / test split, with a leak-free gap between them."""

    train_fraction: float = Field(0.7, gt=0, lt=1, description="Share of each zone's minutes for training.")
    val_fraction: float = Field(0.15, gt=0, lt=1, description="Share of each zone's minutes for validation.")


class FabrayConfig(_Section):
    """The whole configuration; every section has working defaults."""

    task: TaskConfig = Field(default_factory=TaskConfig, description="The prediction task.")
    split: SplitConfig = Field(default_factory=SplitConfig, description="Train/val/test split.")


def load_config(path: str | Path | None = None) -> FabrayConfig:
    """Read a YAML config (or the defaults when `path` is None); bad content → BadInputError."""
    if path is None:
        return FabrayConfig()
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise BadInputError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise BadInputError(f"{path}: expected a mapping at the top level. Received: {type(raw).__name__}")
    try:
        return FabrayConfig.model_validate(raw)
    except ValidationError as err:
        raise BadInputError(f"{path}: invalid config:\n{err}") from err
