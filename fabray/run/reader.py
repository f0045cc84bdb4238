"""`Run.open(path, verify=True)`: the one reader of a run directory.

It resolves the directory, reads and validates its manifest (`fabray.run.manifest`), and, with
`verify`, checks that every file the manifest lists is inside the run, exists, and matches the
checksum the manifest records for it (wherever a `checksums` mapping sits: top level, a model's
entry, the ensemble entry). Readers that load only some files (the predictor loads the models
that trained) open with `verify=False` and resolve each file through `Run.file`, which applies
the same checks to that file. `Run.preprocessing()` and `Run.task()` are where a run's shared
preprocessing and its task are read (each trained model stores them in its `preprocessing.json`).
No Ray, no TensorFlow here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabray.config import TaskConfig
from fabray.errors import BadInputError
from fabray.files import sha256_file
from fabray.run.manifest import (
    MANIFEST,
    RunManifest,
    collect_checksums,
    listed_files,
    load_manifest,
)

# The preprocessing every trained model of one run must share (each model's preprocessing.json).
SHARED_PREPROCESSING = ("scaler", "nominal_s", "lookback", "horizon", "features", "context")


@dataclass(frozen=True)
class Run:
    """An opened run directory: its absolute path, its manifest (the JSON) and the typed view."""

    path: Path
    manifest: dict[str, Any]
    typed: RunManifest
    checksums: dict[str, str] = field(default_factory=dict)

    @classmethod
    def open(cls, path: str | Path, *, verify: bool = True) -> Run:
        """The run at `path`; BadInputError when it is not a run this fabray reads, or (with
        `verify`) when a listed file is missing, outside the run or fails its checksum."""
        run = Path(path).expanduser().resolve()
        if not run.is_dir():
            raise BadInputError(f"run directory not found: {run}")
        manifest, typed = load_manifest(run)
        opened = cls(run, manifest, typed, collect_checksums(manifest))
        if verify:
            for rel in listed_files(manifest):
                opened.file(rel)
        return opened

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id") or self.path.name)

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def models(self, status: str | None = None) -> dict[str, dict[str, Any]]:
        """The manifest's model entries (name → entry), only those of `status` when given."""
        entries = self.manifest.get("models") or {}
        return {n: e for n, e in entries.items() if status is None or e.get("status") == status}

    def file(self, rel: str) -> Path:
        """The absolute path of a file the manifest lists (`rel`, relative to the run), after
        checking it is inside the run, exists, and matches its recorded checksum (if any)."""
        path = (self.path / rel).resolve()
        if not path.is_relative_to(self.path):
            raise BadInputError(f"{self.manifest_path}: lists a file outside the run. Received: {rel}")
        if not path.is_file():
            raise BadInputError(
                f"run {self.path}: the manifest lists {rel}, which is missing (a copied or damaged run?)"
            )
        expected = self.checksums.get(rel)
        if expected is not None:
            actual = sha256_file(path)
            if actual != expected:
                raise BadInputError(
                    f"run {self.path}: {rel} does not match its checksum in the manifest (changed "
                    f"after the run was written). Expected {expected}. Received: {actual}"
                )
        return path

    def preprocessing(self) -> dict[str, Any]:
        """The preprocessing the run's trained ("ok") models share: the first one's
        `preprocessing.json` (scaler, nominal times, window shape, features, context, task), each
        read through `Run.file`. BadInputError when no model trained, a model lists no
        preprocessing file, or two models disagree on a `SHARED_PREPROCESSING` key."""
        import json

        ok = list(self.models("ok"))
        if not ok:
            raise BadInputError(f"run {self.path}: no model trained successfully")
        preps: dict[str, dict[str, Any]] = {}
        for name in ok:
            rel = self.models()[name].get("preprocessing")
            if not rel:
                raise BadInputError(f"{self.manifest_path}: model {name!r} has no 'preprocessing' file listed")
            path = self.file(rel)
            try:
                preps[name] = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as err:
                raise BadInputError(f"model {name}: preprocessing: cannot read {path}: {err}") from err
        first = preps[ok[0]]
        for name in ok[1:]:
            for key in SHARED_PREPROCESSING:
                if preps[name].get(key) != first.get(key):
                    raise BadInputError(
                        f"run {self.path}: models {ok[0]!r} and {name!r} were prepared differently "
                        f"({key!r} differs); a run's models must share their preprocessing"
                    )
        return first

    def task(self, preprocessing: dict[str, Any] | None = None) -> TaskConfig:
        """The run's task: the trained models' (`preprocessing`, default `self.preprocessing()`),
        else the manifest's. BadInputError when it is not a valid task."""
        prep = self.preprocessing() if preprocessing is None else preprocessing
        try:
            return TaskConfig.model_validate(prep.get("task") or self.manifest.get("task") or {})
        except ValueError as err:  # pydantic ValidationError
            raise BadInputError(f"run {self.path}: invalid task in preprocessing.json: {err}") from err
