"""`make_run`: the one helper unit tests build a run directory with (issue 10).

It writes the files a manifest lists and the manifest through `fabray.run.write_manifest`, the
writer `fabray train` uses, so a test's run is one the readers see in production. Tests take it
as the `make_run` fixture (tests/unit/conftest.py) or import it (`from tests.unit.run_factory
import make_run`) in module-level helpers that other test modules import.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fabray.files import atomic_write_json, sha256_file
from fabray.run import MANIFEST, MANIFEST_FORMAT, MANIFEST_VERSION, create_run_dir, model_dir, write_manifest

#: The models a default `make_run` lists: one trained, one failed (readers skip it).
DEFAULT_MODELS: dict[str, dict[str, Any]] = {"lstm": {"status": "ok"}, "gru": {"status": "failed", "error": "boom"}}
#: The files an "ok" model lists, by manifest key.
MODEL_FILES = {"model": "model.keras", "history": "history.json", "preprocessing": "preprocessing.json",
               "config": "config.json"}


def make_run(
    path: str | Path,
    models: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    files: Mapping[str, bytes | str] | None = None,
    extra: Mapping[str, Any] | None = None,
    checksums: bool = False,
    valid: bool = True,
) -> Path:
    """A run directory at `path` (must not exist or be empty); returns its absolute path.

    `models`: name → entry; an entry with status "ok" that names no file gets the four of
    `fabray train` (model, history, preprocessing, config under models/<name>/); the files an
    entry names are written ("{}") unless `files` wrote them. `files`: relative path → content, written
    first (e.g. a real preprocessing.json). `extra`: top-level manifest keys, set or replaced
    last. `checksums`: record each ok model's files' sha256 in its entry. `valid=False`: write
    the manifest as it is, without the writer's checks (a test's bad run).
    """
    run = create_run_dir(path)
    for rel, content in (files or {}).items():
        target = run / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        (target.write_bytes if isinstance(content, bytes) else target.write_text)(content)
    entries: dict[str, dict[str, Any]] = {}
    for name, given in (DEFAULT_MODELS if models is None else models).items():
        entry = dict(given)
        if entry.get("status") == "ok":
            if not any(entry.get(key) for key in MODEL_FILES):  # none named: the four of `fabray train`
                entry.update({key: str((model_dir(run, name) / f).relative_to(run)) for key, f in MODEL_FILES.items()})
            named = [key for key in MODEL_FILES if entry.get(key)]
            for key in named:
                target = run / entry[key]
                if not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text("{}")
            if checksums:
                entry["checksums"] = {entry[k]: sha256_file(run / entry[k]) for k in named}
        entries[name] = entry
    manifest: dict[str, Any] = {"format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION,
                                "run_id": run.name, "status": "complete", "models": entries}
    manifest.update(extra or {})
    if valid:
        write_manifest(run, manifest)
    else:
        atomic_write_json(run / MANIFEST, manifest)
    return run


#: Tiny widths of the two models `keras_run` saves by default.
TINY_OVERRIDES = {"lstm": {"lstm_units": [4], "head_units": [4]}, "rule": {"lstm_units": 4, "head_units": [4]}}


def keras_run(
    path: str | Path,
    scaler: Any,
    *,
    names: tuple[str, ...] = ("lstm", "rule"),
    lookback: int = 20,
    horizon: int = 5,
    nominal_s: Mapping[str, float] | None = None,
    models: Mapping[str, Mapping[str, Any]] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """A run of real, untrained tiny Keras models (`names`, `TINY_OVERRIDES` widths, seeded by
    position) with `scaler` as their first layer and one preprocessing.json, written by
    `make_run`. `models`: further manifest entries (e.g. a failed model); `extra`: manifest keys."""
    import json
    import tempfile

    import keras

    from fabray import schema
    from fabray.models import build_model

    nominal = dict(nominal_s or {"Z01": 150.0, "Z02": 160.0})
    task = {"lookback": lookback, "horizon": horizon, "sla_delay_s": 60.0, "task": "event",
            "nominal_transport_time_s": None}
    prep = {"features": list(schema.FEATURES), "scaler": scaler.to_dict(), "nominal_s": nominal,
            "zones": sorted(nominal), "lookback": lookback, "horizon": horizon, "task": task}
    entries: dict[str, Any] = {}
    files: dict[str, bytes | str] = {}
    with tempfile.TemporaryDirectory() as saved:  # keras writes here; make_run copies the bytes
        for i, name in enumerate(names):
            keras.utils.set_random_seed(i)
            model = build_model(name, lookback, len(schema.FEATURES), TINY_OVERRIDES[name], scaler)
            model.save(Path(saved) / f"{name}.keras")
            files[f"models/{name}/model.keras"] = (Path(saved) / f"{name}.keras").read_bytes()
            files[f"models/{name}/preprocessing.json"] = json.dumps(prep)
            entries[name] = {"status": "ok", "model": f"models/{name}/model.keras",
                             "preprocessing": f"models/{name}/preprocessing.json"}
    keras.backend.clear_session()
    return make_run(path, {**entries, **(models or {})}, files=files, extra={"task": task, **(extra or {})})
