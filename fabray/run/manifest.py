"""A run's manifest (`RUN/manifest.json`): its typed model, the one writer and the one reader.

The manifest names files by paths relative to RUN (a run can be moved or copied) and is replaced
atomically (temp file + os.replace) only after every file it lists exists, so a crash never
leaves a manifest pointing at missing files.

`RunManifest` types the sections every reader relies on (`format`, `format_version`, `models`
with their files and checksums, the `ensemble` entry) and lets every other key through
(`extra="allow"`), so every run written by format version 1 or 2 loads. A manifest of another
format, or of a newer `format_version`, is refused with a message that says what it is and
how to get a run this fabray reads. Readers get the manifest's JSON as a dict (its keys are a
contract, see DESIGN §4); the typed model is the check, not a second copy to keep in step.
No Ray, no TensorFlow here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from fabray.errors import BadInputError
from fabray.files import atomic_write_json, utc_now

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "fabray-run"
#: The format version this fabray writes, and the newest it reads. 1: the models take windows
#: z-scored by the run's scaler; 2: the models take RAW windows, the scaling is their first layer
#: (`fabray.models.layers.scaling`). A manifest without `format_version` is version 1. Format-1 runs
#: still load: `fabray.predictor` puts the scaling in front of their models.
MANIFEST_VERSION = 2
#: The version of a manifest that does not say (written before runs were versioned).
UNVERSIONED = 1
#: Manifest entries (inside `models.<name>`) that name files relative to the run directory.
FILE_KEYS = ("model", "history", "preprocessing", "config")
#: What to do with a run this fabray cannot read (appended to the refusal).
CONVERT_HINT = (
    "re-train it with this fabray (`fabray train --data DATA --config RUN/config.json --out NEW_RUN`, DATA "
    "being the manifest's data.path), or read it with the fabray version that wrote it (manifest `code.fabray`)"
)


class _Open(BaseModel):
    """Every manifest section keeps the keys it is not typed for (they are part of the run)."""

    model_config = ConfigDict(extra="allow")


class ModelEntry(_Open):
    """`models.<name>`: one model's status, its files (relative to RUN) and their checksums."""

    status: str | None = None
    model: str | None = None
    history: str | None = None
    preprocessing: str | None = None
    config: str | None = None
    checksums: dict[str, str] | None = None
    error: Any = None


class EnsembleEntry(_Open):
    """`ensemble`: the fitted ensemble file (written by `fabray ensemble`)."""

    file: str | None = None
    trials: str | None = None
    checksums: dict[str, str] | None = None


class RunManifest(_Open):
    """The manifest's sections; only `format` is required (older and hand-made runs omit the rest)."""

    format: str
    format_version: int = UNVERSIONED
    run_id: str | None = None
    status: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    finished_at: str | None = None
    config: str | None = None
    code: dict[str, Any] | None = None
    versions: dict[str, Any] | None = None
    data: Any = None
    task: dict[str, Any] | None = None
    cluster: dict[str, Any] | None = None
    models: dict[str, ModelEntry] = {}
    ensemble: EnsembleEntry | None = None
    parent: Any = None
    retrain: Any = None
    budget: Any = None
    validation_windows: dict[str, Any] | None = None
    checksums: dict[str, str] | None = None


def validate_manifest(data: Any, where: str | Path) -> RunManifest:
    """The typed manifest of `data` (a manifest's JSON); BadInputError naming `where` otherwise.

    Another format, or a newer `format_version` than this fabray's, is refused with how to
    convert the run."""
    if not isinstance(data, Mapping):
        raise BadInputError(f"{where}: must hold a JSON object. Received: {type(data).__name__}")
    if data.get("format") != MANIFEST_FORMAT:
        raise BadInputError(
            f"{where}: not a fabray run manifest. Received: format={data.get('format')!r} "
            f"(a fabray run's manifest has format={MANIFEST_FORMAT!r})"
        )
    version = data.get("format_version", UNVERSIONED)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BadInputError(f"{where}: invalid format_version. Received: {version!r}")
    if version > MANIFEST_VERSION:
        written_by = (data.get("code") or {}).get("fabray") if isinstance(data.get("code"), Mapping) else None
        raise BadInputError(
            f"{where}: run manifest format_version {version} (written by fabray {written_by or '?'}); "
            f"this fabray reads format_version <= {MANIFEST_VERSION}. To use it here, {CONVERT_HINT}"
        )
    try:
        return RunManifest.model_validate(dict(data))
    except ValidationError as err:
        raise BadInputError(f"{where}: invalid run manifest: {err}") from err


def listed_files(manifest: Mapping[str, Any]) -> Iterator[str]:
    """Every relative path the manifest names."""
    for key in ("config",):
        if manifest.get(key):
            yield manifest[key]
    for entry in manifest.get("models", {}).values():
        for key in FILE_KEYS:
            if entry.get(key):
                yield entry[key]
    ensemble = manifest.get("ensemble")
    if isinstance(ensemble, Mapping):
        for key in ("file", "trials"):
            if ensemble.get(key):
                yield ensemble[key]


def collect_checksums(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Every `checksums` mapping in the manifest (top level, model entries, ensemble entry):
    `{relative path: "sha256:<hex>"}`."""
    found: dict[str, str] = {}
    places = [manifest, *manifest.get("models", {}).values()]
    if isinstance(manifest.get("ensemble"), Mapping):
        places.append(manifest["ensemble"])
    for place in places:
        sums = place.get("checksums") if isinstance(place, Mapping) else None
        if isinstance(sums, Mapping):
            found.update({str(k): str(v) for k, v in sums.items()})
    return found


def write_manifest(run: Path, manifest: Mapping[str, Any]) -> Path:
    """Replace RUN/manifest.json atomically, after checking that it is a valid manifest of this
    format and that every file it lists exists (RuntimeError otherwise: a writer's bug)."""
    try:
        validate_manifest(manifest, run / MANIFEST)
    except BadInputError as err:
        raise RuntimeError(f"refusing to write an invalid manifest: {err}") from err
    missing = [rel for rel in listed_files(manifest) if not (run / rel).is_file()]
    if missing:
        raise RuntimeError(f"manifest would list missing files in {run}. Received: {missing}")
    path = run / MANIFEST
    atomic_write_json(path, dict(manifest, updated_at=utc_now()))
    return path


def read_manifest(run: str | Path) -> dict[str, Any]:
    """The manifest of a run directory (its JSON, validated against `RunManifest`); BadInputError
    when there is none, it is not one, or it is of a format this fabray does not read."""
    return load_manifest(run)[0]


def load_manifest(run: str | Path) -> tuple[dict[str, Any], RunManifest]:
    """`read_manifest`, and the typed manifest it was validated as."""
    path = Path(run) / MANIFEST
    if not path.is_file():
        raise BadInputError(f"no {MANIFEST} in {run}: not a fabray run directory (or not finished)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BadInputError(f"{path}: not valid JSON: {err}") from err
    return manifest, validate_manifest(manifest, path)
