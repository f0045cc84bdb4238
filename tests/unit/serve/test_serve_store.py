"""The versioned model store: import, checksums, atomic promotion, rollback (fabray.serve.store)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabray.errors import BadInputError
from fabray.serve.store import POINTER, CorruptArtifactError, ModelStore, UnknownVersionError
from tests.unit.run_factory import make_run


def fake_run(root: Path, name: str, payload: bytes = b"weights-1", status: str = "complete") -> Path:
    """A run directory as `fabray train` lays it out (model bytes are opaque to the store), with
    Ray's checkpoints the store leaves out."""
    files = {"models/lstm/model.keras": payload, "models/lstm/preprocessing.json": '{"lookback": 100}',
             "ray/lstm/checkpoint.bin": b"ray's own checkpoint"}
    entry = {"status": "ok", "val_metrics": {"pr_auc": 0.4}, "params": 10,
             "model": "models/lstm/model.keras", "preprocessing": "models/lstm/preprocessing.json"}
    return make_run(root / name, {"lstm": entry}, files=files, extra={"status": status})


@pytest.fixture
def store(tmp_path) -> ModelStore:
    return ModelStore(tmp_path / "store")


def test_import_copies_the_run_without_ray_checkpoints_and_records_checksums(store, tmp_path):
    version = store.import_run(fake_run(tmp_path, "r1"))
    assert version == "v1" and store.versions() == ["v1"]
    info = store.info("v1")
    assert info["run_id"] == "r1"
    assert set(info["files"]) == {"manifest.json", "models/lstm/model.keras", "models/lstm/preprocessing.json"}
    assert all(v.startswith("sha256:") for v in info["files"].values())
    assert not (store.run_dir("v1") / "ray").exists()
    assert info["models"]["lstm"]["val_metrics"] == {"pr_auc": 0.4}


def test_import_is_idempotent_and_numbers_new_versions(store, tmp_path):
    assert store.import_run(fake_run(tmp_path, "r1")) == "v1"
    assert store.import_run(tmp_path / "r1") == "v1"  # same files: same version
    assert store.import_run(fake_run(tmp_path, "r2", b"weights-2")) == "v2"


def test_import_refuses_what_is_not_a_finished_run(store, tmp_path):
    with pytest.raises(BadInputError, match="not a fabray run"):
        store.import_run(tmp_path)
    with pytest.raises(BadInputError, match="not finished"):
        store.import_run(fake_run(tmp_path, "r3", status="running"))


def test_import_refuses_a_run_of_a_newer_format_saying_how_to_convert(store, tmp_path):
    run = make_run(tmp_path / "r9", extra={"format_version": 99}, valid=False)
    with pytest.raises(BadInputError, match="format_version 99.*fabray train"):
        store.import_run(run)
    assert store.versions() == []


def test_verify_catches_a_changed_missing_or_extra_file(store, tmp_path):
    store.import_run(fake_run(tmp_path, "r1"))
    model = store.run_dir("v1") / "models" / "lstm" / "model.keras"
    store.verify("v1")
    model.write_bytes(b"weights-X")  # same size, other bytes
    with pytest.raises(CorruptArtifactError, match="model.keras does not match its checksum"):
        store.verify("v1")
    model.unlink()
    with pytest.raises(CorruptArtifactError, match="model.keras is missing"):
        store.verify("v1")
    model.write_bytes(b"weights-1")
    store.verify("v1")
    (model.parent / "extra.bin").write_bytes(b"?")
    with pytest.raises(CorruptArtifactError, match="not in its checksum list"):
        store.verify("v1")


def test_promote_moves_the_old_version_to_history_and_rollback_returns(store, tmp_path):
    store.import_run(fake_run(tmp_path, "r1"))
    store.import_run(fake_run(tmp_path, "r2", b"weights-2"))
    assert store.live() is None
    store.promote("v1", reason="first")
    store.promote("v2", reason="better")
    pointer = store.pointer()
    assert pointer["live"] == "v2" and pointer["history"] == ["v1"]
    assert [e["action"] for e in pointer["events"]] == ["promote", "promote"]
    assert store.fallbacks() == ["v2", "v1"]
    store.rollback(reason="worse than expected")
    assert store.live() == "v1" and store.pointer()["history"] == []
    with pytest.raises(BadInputError, match="nothing to roll back to"):
        store.rollback()


def test_a_corrupted_version_is_refused_and_the_pointer_is_untouched(store, tmp_path):
    store.import_run(fake_run(tmp_path, "r1"))
    store.import_run(fake_run(tmp_path, "r2", b"weights-2"))
    store.promote("v1")
    before = (store.root / POINTER).read_bytes()
    (store.run_dir("v2") / "models" / "lstm" / "model.keras").write_bytes(b"garbage")
    with pytest.raises(CorruptArtifactError):
        store.promote("v2")
    assert (store.root / POINTER).read_bytes() == before
    assert store.live() == "v1"


def test_rollback_skips_a_damaged_earlier_version(store, tmp_path):
    for i in (1, 2, 3):
        store.import_run(fake_run(tmp_path, f"r{i}", f"weights-{i}".encode()))
        store.promote(f"v{i}")
    (store.run_dir("v2") / "manifest.json").write_text("{}")
    store.rollback()
    assert store.live() == "v1"


def test_unknown_versions_and_bad_names(store):
    with pytest.raises(UnknownVersionError, match="no version 'v9'"):
        store.info("v9")
    with pytest.raises(UnknownVersionError, match="not a version name"):
        store.run_dir("../etc")
    with pytest.raises(BadInputError, match="not a job id"):
        store.job_dir("../../x")


def test_no_temporary_directories_are_left_behind(store, tmp_path):
    store.import_run(fake_run(tmp_path, "r1"))
    assert [p.name for p in store.versions_dir.iterdir()] == ["v1"]
