"""The data a trained run was fitted on, found again: its config and its train/val/test windows.

`fabray ensemble` needs the validation split (out-of-sample scores to fit the ensemble on) and
`fabray evaluate` the training and validation splits (to fit the tree baseline and pick every
threshold on validation, never on test). Both re-read the run's data file, which the manifest
names with its sha256 fingerprint, and prepare it exactly as training did: same split fractions,
same scaler statistics, same nominal transport times. A moved file can be given explicitly; a changed file
is refused (its splits would not be the ones the models were selected on).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabray.config import FabrayConfig
from fabray.errors import BadInputError
from fabray.files import sha256_file
from fabray.predictor import RunPredictor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunData:
    """A run's training data (raw), prepared with the run's scaler and nominals into train/val/test splits."""

    path: Path
    fingerprint: str
    prepared: Any  # fabray.data.windows.PreparedData with splits train/val/test


def run_config(predictor: RunPredictor) -> FabrayConfig:
    """The configuration the run trained with (its `config.json`; defaults when absent).

    Callers take sections such as `roi` or `ensemble` from a user's --config on top; the task
    and split always come from here: a model is only valid for the task and split it learned."""
    rel = predictor.manifest.get("config") or "config.json"
    path = predictor.run_dir / rel
    if not path.is_file():
        logger.warning("run %s has no %s; using default settings", predictor.version, rel)
        return FabrayConfig(task=predictor.task)
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise BadInputError(f"{path}: not valid JSON: {err}") from err
    # Section by section: a run outlives config changes of sections it does not need here.
    sections: dict[str, Any] = {"task": predictor.task}
    for name in RUN_SECTIONS:
        if name not in raw:
            continue
        section_cls = FabrayConfig.model_fields[name].annotation
        try:
            sections[name] = section_cls.model_validate(raw[name])
        except ValueError as err:
            if name == "split":  # the validation split must be the one training used
                raise BadInputError(f"{path}: its 'split' section is not valid any more: {err}") from err
            logger.warning("%s: section %r no longer validates (%s); using defaults", path, name,
                           str(err).splitlines()[0])
    return FabrayConfig(**sections)


def rule_overrides(predictor: Any, config: FabrayConfig | None = None) -> dict[str, Any]:
    """The `rule` model's hyper-parameters as the run has them: its trained rule model's stored
    overrides, else `train.model_overrides["rule"]` of the run's config (`config`, default
    `run_config(predictor)`); without the scaler statistics a format-1 run stored there (the
    rules read raw windows). Evaluation's rules baseline and serving's degraded answers use it
    for a run trained without `rule`, so both apply the rules the run was configured with, not
    the defaults."""
    from fabray.models.rule import LEGACY_OVERRIDES

    entry = predictor.manifest.get("models", {}).get("rule") or {}
    path = predictor.run_dir / entry["config"] if entry.get("config") else None
    if path is not None and path.is_file():
        overrides = dict(json.loads(path.read_text()).get("overrides") or {})
    else:
        config = config if config is not None else run_config(predictor)
        overrides = dict(config.train.model_overrides.get("rule", {}))
    return {key: value for key, value in overrides.items() if key not in LEGACY_OVERRIDES}


#: Sections of a run's config.json that ensemble fitting and evaluation read.
RUN_SECTIONS = ("split", "train", "ensemble", "roi")


def load_run_data(
    predictor: RunPredictor, config: FabrayConfig, data_path: str | Path | None = None
) -> RunData:
    """Read and prepare the data the run trained on (or `data_path`, which must be the same
    bytes: its fingerprint is checked against the manifest's)."""
    from fabray.data.validate import load_validated

    info = predictor.manifest.get("data") or {}
    path = Path(data_path or info.get("path") or "")
    if not str(path) or not path.is_file():
        raise BadInputError(
            f"run {predictor.version}: its training data {info.get('path')!r} is not there; "
            "pass the file with --train-data (the same bytes, checked by fingerprint)"
            + (f". Received: {data_path}" if data_path else "")
        )
    fingerprint = sha256_file(path)
    expected = info.get("fingerprint")
    if expected and fingerprint != expected:
        raise BadInputError(
            f"{path} is not the data run {predictor.version} trained on (fingerprint differs): "
            f"its validation split would not be the one the models were selected on. "
            f"Expected {expected}. Received: {fingerprint}"
        )
    from fabray.run import rows_before

    # `until`: the run learned from the rows before it only (a retrain served over HTTP)
    prepared = predictor.prepare(rows_before(load_validated(path), info.get("until")), config.split)
    if len(prepared.splits["val"]) == 0:
        raise BadInputError(f"{path}: no validation window with the run's split {config.split}")
    return RunData(path=path, fingerprint=fingerprint, prepared=prepared)


def segment_codes(prepared: Any, ends: Any) -> Any:
    """[W] int64 id per window end that changes at a zone change or a gap between consecutive
    ends (ends not one row / one minute apart): what `lead_times` and `replay` take as zones
    when a zone's rows must be consecutive minutes."""
    import numpy as np

    ends = np.asarray(ends, dtype=np.int64)
    if ends.size == 0:
        return np.zeros(0, dtype=np.int64)
    zones = prepared.zone_codes[ends]
    minutes = prepared.timestamps[ends].astype("datetime64[m]").astype(np.int64)
    breaks = np.ones(ends.size, dtype=bool)
    breaks[1:] = (zones[1:] != zones[:-1]) | (np.diff(ends) != 1) | (np.diff(minutes) != 1)
    return np.cumsum(breaks) - 1
