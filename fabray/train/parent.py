"""The parent run a retrain starts from (`fabray.train.retrain`): its manifest, config, the models
that trained, their files, overrides and shared preprocessing, and the history it learned from.
Refuses, as bad input, a run with nothing to warm-start from or whose models were prepared
differently. Pure reading: no Ray, nothing written.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabray.config import FabrayConfig
from fabray.errors import BadInputError
from fabray import run as rd

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParentRun:
    """What a retrain takes from its parent run."""

    run: Path
    manifest: dict[str, Any]
    config: FabrayConfig
    models: tuple[str, ...]  # models that trained successfully, in manifest order
    model_files: dict[str, Path]  # model → models/<name>/model.keras
    overrides: dict[str, dict]  # model → the overrides it was built with
    preprocessing: dict[str, Any]  # scaler, nominal_s, task, lookback, horizon, features

    @property
    def format_version(self) -> int:
        """The run format the parent was written in (1: its models take z-scored windows)."""
        return int(self.manifest.get("format_version") or 1)

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id") or self.run.name)

    def history(self) -> list[dict[str, Any]]:
        """The data files this run learned from: its own data, then what it replayed (if it was
        itself a retrain); one entry per fingerprint."""
        seen: set[str] = set()
        out = []
        data = self.manifest.get("data") or {}
        replay = (self.manifest.get("retrain") or {}).get("replay") or {}
        for source in [{"path": data.get("path"), "fingerprint": data.get("fingerprint"),
                        "until": data.get("until")}, *replay.get("history", [])]:
            key = source.get("fingerprint") or source.get("path")
            if source.get("path") and key not in seen:
                seen.add(key)
                entry = {"path": source["path"], "fingerprint": source.get("fingerprint")}
                if source.get("until"):  # only the rows before it were learned from
                    entry["until"] = source["until"]
                out.append(entry)
        return out


def load_parent(run: str | Path) -> ParentRun:
    """Read a finished run; BadInputError when it has no model to warm-start from."""
    path = Path(run).expanduser().resolve()
    manifest = rd.read_manifest(path)
    ok = [n for n, e in manifest.get("models", {}).items() if e.get("status") == "ok" and e.get("model")]
    if not ok:
        raise BadInputError(f"run {path} has no successfully trained model to retrain. Received "
                            f"statuses: { {n: e.get('status') for n, e in manifest.get('models', {}).items()} }")
    files, overrides = {}, {}
    for name in ok:
        entry = manifest["models"][name]
        files[name] = path / entry["model"]
        for key in ("model", "preprocessing", "config"):
            if not entry.get(key) or not (path / entry[key]).is_file():
                raise BadInputError(f"run {path}: model {name!r} lists no {key} file, or it is missing")
        overrides[name] = _read_json(path / entry["config"]).get("overrides") or {}
    first = rd.Run.open(path, verify=False).preprocessing()  # shared by every trained model, or refused
    return ParentRun(path, manifest, _parent_config(path, manifest), tuple(ok), files, overrides, first)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise BadInputError(f"{path}: cannot read: {err}") from err


def _parent_config(run: Path, manifest: dict[str, Any]) -> FabrayConfig:
    path = run / (manifest.get("config") or "config.json")
    if not path.is_file():
        logger.warning("run %s has no %s; retraining with default settings", run, path.name)
        return FabrayConfig()
    raw = _read_json(path)
    try:
        return FabrayConfig.model_validate({k: v for k, v in raw.items() if k in FabrayConfig.model_fields})
    except ValueError as err:
        raise BadInputError(f"{path}: not a valid fabray config: {err}") from err


def selected_models(parent: ParentRun, models: Sequence[str] | None) -> tuple[str, ...]:
    """The parent's models to fine-tune (default: all that trained); the others are carried over."""
    if not models:
        return parent.models
    unknown = [m for m in models if m not in parent.models]
    if unknown or len(set(models)) != len(models):
        raise BadInputError(f"--models must name models of the parent run, once each; the parent has "
                            f"{list(parent.models)}. Received: {list(models)}")
    return tuple(m for m in parent.models if m in models)


__all__ = ["ParentRun", "load_parent", "selected_models"]
