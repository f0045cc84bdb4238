"""Run directory: never overwrites, atomic manifest that only lists existing files."""

from __future__ import annotations

import pytest

from fabray.errors import BadInputError
from fabray import run as rd


def test_create_refuses_a_non_empty_directory_and_leaves_it_alone(tmp_path):
    old = tmp_path / "r1"
    old.mkdir()
    (old / "manifest.json").write_text("old")
    with pytest.raises(BadInputError, match="not empty"):
        rd.create_run_dir(old)
    assert (old / "manifest.json").read_text() == "old"
    new = rd.create_run_dir(tmp_path / "r2")
    assert new.is_absolute() and (new / "models").is_dir()


def test_manifest_refuses_to_list_missing_files(tmp_path):
    run = rd.create_run_dir(tmp_path / "run")
    manifest = {"format": rd.MANIFEST_FORMAT, "models": {"lstm": {"model": "models/lstm/model.keras"}}}
    with pytest.raises(RuntimeError, match="missing files"):
        rd.write_manifest(run, manifest)
    assert not (run / rd.MANIFEST).exists()
    (run / "models" / "lstm").mkdir()
    (run / "models" / "lstm" / "model.keras").write_bytes(b"x")
    rd.write_manifest(run, manifest)
    back = rd.read_manifest(run)
    assert back["models"]["lstm"]["model"] == "models/lstm/model.keras" and "updated_at" in back
    assert [p.name for p in run.iterdir() if p.name.endswith(".tmp")] == []


def test_read_manifest_of_a_non_run_is_bad_input(tmp_path):
    with pytest.raises(BadInputError, match="not a fabray run"):
        rd.read_manifest(tmp_path)


def test_code_version_names_the_package_version():
    info = rd.code_version()
    assert info["fabray"]
    assert info["git_commit"] is None or len(info["git_commit"]) == 40


def test_out_under_a_file_is_refused_before_anything_starts(tmp_path):
    from fabray.errors import BadInputError
    from fabray.run import check_run_dir_free

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(BadInputError, match="is a file"):
        check_run_dir_free(blocker / "runs" / "r1")
    assert check_run_dir_free(tmp_path / "new" / "r1") == (tmp_path / "new" / "r1").resolve()


def test_rows_before_keeps_the_rows_a_manifest_until_names():
    import pandas as pd

    ts = pd.date_range("2025-01-06", periods=6, freq="min")
    df = pd.DataFrame({"timestamp": list(ts) * 2, "zone": ["A"] * 6 + ["B"] * 6}).iloc[::-1]
    until = ts[3] + pd.Timedelta(seconds=20.5)
    text = rd.until_text(until)
    assert pd.Timestamp(text) == until  # the manifest's text round-trips exactly
    kept = rd.rows_before(df, text)
    assert len(kept) == 8 and (kept["timestamp"] < until).all() and list(kept.index) == list(range(8))
    assert rd.rows_before(df, None) is df
