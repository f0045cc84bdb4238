"""The versioned model store of the serving application (DESIGN §6, issue 6 "nothing lost").

Layout of a store directory:

    STORE/LIVE.json                 which version serves, the ones before it, an event log
    STORE/versions/v1/VERSION.json  where it came from, sha256 of every file, models, metrics
    STORE/versions/v1/run/...       the run directory's files (without Ray's checkpoints)
    STORE/state/v1.json             the dynamic ensemble's online state for v1 (see keeper.py)
    STORE/jobs/<id>/...             batch and retraining jobs: status.json, outputs

Guarantees:
- a version directory appears whole or not at all (copied to a temp dir, then renamed);
- every file of a version has a sha256 in VERSION.json, checked by `verify` before a version is
  loaded or promoted: a changed, truncated or missing file refuses the version;
- promotion and rollback replace LIVE.json atomically (temp file + os.replace, under a file
  lock), so every reader sees the old pointer or the new one, never half of one. Serving
  replicas poll LIVE.json and swap models in memory (see deployments/predictor.py).

No Ray and no TensorFlow here: the store is files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fabray.errors import BadInputError
from fabray.files import atomic_write_json, sha256_file, utc_now
from fabray.run import MANIFEST, read_manifest

logger = logging.getLogger(__name__)

POINTER = "LIVE.json"
VERSION_FILE = "VERSION.json"
STORE_FORMAT = "fabray-store"
#: Parts of a run directory that are not copied into the store: Ray Train's own checkpoints.
SKIP_DIRS = ("ray",)
MAX_EVENTS = 100
_VERSION_RE = re.compile(r"^v(\d+)$")


class CorruptArtifactError(BadInputError):
    """A stored version's files do not match their checksums (or are missing)."""


class UnknownVersionError(BadInputError):
    """No such version in the store."""


class ConflictError(BadInputError):
    """The request is well formed but the store's state refuses it (HTTP 409), e.g. nothing to
    roll back to."""


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptArtifactError(f"{path}: not valid JSON: {err}") from err
    return data if isinstance(data, dict) else None


def _run_files(run: Path) -> list[str]:
    """Relative paths of the run's files to store: everything but Ray's checkpoints and temp files."""
    files = []
    for path in sorted(run.rglob("*")):
        rel = path.relative_to(run)
        if rel.parts[0] in SKIP_DIRS or any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file():
            files.append(rel.as_posix())
    return files


class ModelStore:
    """A directory of model versions and a pointer to the live one (see the module doc)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.versions_dir = self.root / "versions"
        self.state_dir = self.root / "state"
        self.jobs_dir = self.root / "jobs"
        for directory in (self.versions_dir, self.state_dir, self.jobs_dir):
            directory.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ locking

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """An exclusive lock on the store for writers (promotions, imports); readers need none."""
        with open(self.root / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ versions

    def version_dir(self, version: str) -> Path:
        if not _VERSION_RE.match(str(version)):
            raise UnknownVersionError(f"not a version name (v1, v2, ...). Received: {version!r}")
        path = self.versions_dir / version
        if not (path / VERSION_FILE).is_file():
            raise UnknownVersionError(f"no version {version!r} in the model store")
        return path

    def run_dir(self, version: str) -> Path:
        """The stored run directory of `version` (what `RunPredictor.load` reads)."""
        return self.version_dir(version) / "run"

    def info(self, version: str) -> dict[str, Any]:
        data = _read_json(self.version_dir(version) / VERSION_FILE)
        if data is None:
            raise CorruptArtifactError(f"version {version}: {VERSION_FILE} is missing or not an object")
        return data

    def versions(self) -> list[str]:
        """Version names, oldest first."""
        found = []
        for path in self.versions_dir.iterdir():
            m = _VERSION_RE.match(path.name)
            if m and (path / VERSION_FILE).is_file():
                found.append((int(m.group(1)), path.name))
        return [name for _, name in sorted(found)]

    def import_run(self, run_dir: str | Path, note: str | None = None) -> str:
        """Copy a finished run into the store as a new version; returns its name.

        Idempotent: a run whose files are identical to a stored version returns that version.
        The run is checked to be a fabray run (manifest present); whether its models load is
        checked when it is promoted or served.
        """
        run = Path(run_dir).expanduser().resolve()
        if not (run / MANIFEST).is_file():
            raise BadInputError(f"not a fabray run directory (no valid manifest.json): {run}")
        manifest = read_manifest(run)  # another format or a newer format_version: refused, saying how to convert
        if manifest.get("status") not in ("complete", "partial"):
            raise BadInputError(f"run {run} is not finished. Received: status={manifest.get('status')!r}")
        files = _run_files(run)
        checksums = {rel: sha256_file(run / rel) for rel in files}
        with self._lock():
            self._remove_leftovers()
            for existing in self.versions():
                try:
                    if self.info(existing).get("files") != checksums:
                        continue
                    self.verify(existing)  # the files themselves, not only what was recorded
                except BadInputError as err:
                    logger.warning("stored version %s is damaged (%s): storing the run %s again", existing, err, run)
                    continue
                logger.info("run %s is already stored as %s", run, existing)
                return existing
            number = max((int(v[1:]) for v in self.versions()), default=0) + 1
            version = f"v{number}"
            tmp = Path(tempfile.mkdtemp(dir=self.versions_dir, prefix=f".{version}."))
            try:
                for rel in files:
                    dst = tmp / "run" / rel
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(run / rel, dst)
                copied = {rel: sha256_file(tmp / "run" / rel) for rel in files}
                if copied != checksums:  # the run changed while being copied
                    raise BadInputError(f"run {run} changed while it was being copied; try again")
                info = {
                    "format": STORE_FORMAT,
                    "version": version,
                    "created_at": utc_now(),
                    "source_run": str(run),
                    "run_id": manifest.get("run_id") or run.name,
                    "note": note,
                    "models": {
                        name: {
                            "status": entry.get("status"),
                            "val_metrics": entry.get("val_metrics"),
                            "params": entry.get("params"),
                        }
                        for name, entry in (manifest.get("models") or {}).items()
                    },
                    "files": checksums,
                }
                atomic_write_json(tmp / VERSION_FILE, info)
                os.rename(tmp, self.versions_dir / version)  # atomic: the version appears whole
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        logger.info("stored run %s as %s (%d files)", run, version, len(files))
        return version

    def _remove_leftovers(self) -> None:
        """Temp copies of imports and pointer writes that a killed process left (call under the lock)."""
        for tmp in self.versions_dir.glob(".v*"):
            logger.warning("removing %s, left by an interrupted import", tmp.name)
            shutil.rmtree(tmp, ignore_errors=True)
        for tmp in self.root.glob(f".{POINTER}.*.tmp"):
            tmp.unlink(missing_ok=True)

    def ensure_intact_live(self) -> str:
        """The live version if its files are intact; else promote the newest intact version
        (earlier live versions first, newest first, then any other) and return it, saying
        which file was damaged. CorruptArtifactError naming the damaged file(s) when no
        version is intact."""
        live = self.live()
        if live is None:
            raise UnknownVersionError("the model store has no live version")
        try:
            self.verify(live)
            return live
        except BadInputError as err:
            damaged = {live: str(err)}
        logger.error("live version %s is damaged: %s", live, damaged[live])
        tried = self.fallbacks()
        candidates = tried[1:] + [v for v in reversed(self.versions()) if v not in tried]
        for version in candidates:
            try:
                self.verify(version)
            except BadInputError as err:
                damaged[version] = str(err)
                continue
            self.promote(version, reason=f"start-up: live {live} is damaged ({damaged[live]})")
            logger.error("serving %s instead of the damaged %s", version, live)
            return version
        raise CorruptArtifactError(
            f"the live version {live} is damaged and no stored version is intact: "
            + "; ".join(damaged.values()) + f". Store: {self.root}"
        )

    def verify(self, version: str) -> Path:
        """Check every file of `version` against its sha256; the run directory if intact.

        Raises CorruptArtifactError naming the first changed or missing file (and any extra
        file in the model folders: nothing unlisted is loaded).
        """
        info = self.info(version)
        run = self.run_dir(version)
        files = info.get("files")
        if not isinstance(files, dict) or not files:
            raise CorruptArtifactError(f"version {version}: {VERSION_FILE} lists no files")
        for rel, expected in files.items():
            path = run / rel
            if not path.is_file():
                raise CorruptArtifactError(f"version {version}: file {rel} is missing")
            actual = sha256_file(path)
            if actual != expected:
                raise CorruptArtifactError(
                    f"version {version}: {rel} does not match its checksum (corrupted or changed "
                    f"after it was stored). Expected {expected}. Received: {actual}"
                )
        extra = sorted(set(_run_files(run)) - set(files))
        if extra:
            raise CorruptArtifactError(f"version {version}: files not in its checksum list: {extra}")
        return run

    def mark(self, version: str, **fields: Any) -> None:
        """Record facts about a version (e.g. refused=reason, evaluation=metrics) in VERSION.json."""
        with self._lock():
            info = self.info(version)
            info.setdefault("notes", {}).update(fields)
            atomic_write_json(self.version_dir(version) / VERSION_FILE, info)

    # ------------------------------------------------------------------ the live pointer

    def pointer(self) -> dict[str, Any]:
        """LIVE.json: {"live": version | None, "history": [older live versions], "events": [...]}."""
        data = _read_json(self.root / POINTER)
        if data is None:
            return {"format": STORE_FORMAT, "live": None, "history": [], "events": []}
        return data

    def live(self) -> str | None:
        return self.pointer().get("live")

    def _write_pointer(self, pointer: dict[str, Any], action: str, version: str | None, reason: str) -> None:
        event = {"at": utc_now(), "action": action, "version": version, "reason": reason}
        pointer["events"] = (pointer.get("events") or [])[-(MAX_EVENTS - 1):] + [event]
        pointer["updated_at"] = event["at"]
        atomic_write_json(self.root / POINTER, pointer)

    def promote(self, version: str, reason: str = "") -> dict[str, Any]:
        """Make `version` live (after verifying its checksums); the old one goes on the history.

        Promoting the live version again is a no-op. Raises CorruptArtifactError before anything
        changes when the version is damaged.
        """
        self.verify(version)
        with self._lock():
            pointer = self.pointer()
            if pointer.get("live") == version:
                return pointer
            if pointer.get("live") is not None:
                pointer["history"] = [*pointer.get("history", []), pointer["live"]]
            pointer["live"] = version
            self._write_pointer(pointer, "promote", version, reason)
        logger.info("promoted %s (%s)", version, reason or "no reason given")
        return pointer

    def rollback(self, reason: str = "") -> dict[str, Any]:
        """Return to the version that was live before the current one.

        Damaged earlier versions are skipped (and stay in the event log); BadInputError when
        there is nothing to return to.
        """
        with self._lock():
            pointer = self.pointer()
            history = list(pointer.get("history", []))
            current = pointer.get("live")
            while history:
                candidate = history.pop()
                try:
                    self.verify(candidate)
                except BadInputError as err:
                    logger.warning("rollback skips %s: %s", candidate, err)
                    continue
                pointer["history"] = history
                pointer["live"] = candidate
                pointer.setdefault("rolled_back", []).append(current)
                self._write_pointer(pointer, "rollback", candidate, reason or f"from {current}")
                logger.info("rolled back from %s to %s", current, candidate)
                return pointer
        raise ConflictError(f"nothing to roll back to: no earlier intact version than {current!r}")

    def fallbacks(self) -> list[str]:
        """Live version first, then the history newest first: what a replica tries to load."""
        pointer = self.pointer()
        order = [pointer["live"]] if pointer.get("live") else []
        return order + [v for v in reversed(pointer.get("history", [])) if v not in order]

    # ------------------------------------------------------------------ state and jobs

    def state_path(self, version: str) -> Path:
        return self.state_dir / f"{version}.json"

    def job_dir(self, job_id: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", str(job_id)):
            raise BadInputError(f"not a job id. Received: {job_id!r}")
        return self.jobs_dir / job_id

    def write_json(self, path: Path, obj: Any) -> None:
        """Atomic JSON write of a file inside the store."""
        atomic_write_json(path, obj)

    def read_json(self, path: Path) -> dict[str, Any] | None:
        return _read_json(path)
