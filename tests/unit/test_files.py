"""The shared file helpers (fabray/files.py) and sigmoid (fabray/numeric.py): one definition
each, used by runs, the serving store, evaluation and training."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

import numpy as np
import pytest

from fabray.files import atomic_copy, atomic_write_json, atomic_write_text, sha256_file, utc_now
from fabray.numeric import sigmoid


def test_atomic_json_replaces_the_whole_file_and_writes_numpy_values(tmp_path):
    path = tmp_path / "sub" / "a.json"
    atomic_write_json(path, {"x": 1})
    atomic_write_json(path, {"x": np.float32(2.5), "v": np.arange(3), "p": tmp_path})
    assert json.loads(path.read_text()) == {"x": 2.5, "v": [0, 1, 2], "p": str(tmp_path)}
    assert path.read_text().endswith("}\n")
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]  # no temp file left behind


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "a.json"
    atomic_write_text(path, "old")
    with pytest.raises(TypeError):
        atomic_write_json(path, {"x": object()})
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["a.json"]


def test_atomic_copy(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"\x00\x01" * 1000)
    atomic_copy(src, tmp_path / "d" / "dst.bin")
    assert (tmp_path / "d" / "dst.bin").read_bytes() == src.read_bytes()


def test_sha256_file_is_the_recorded_form_and_changes_with_the_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"zone,minute\n")
    b.write_bytes(b"zone,minute\n1")
    assert sha256_file(a) == "sha256:" + __import__("hashlib").sha256(b"zone,minute\n").hexdigest()
    assert sha256_file(a, chunk_bytes=3) == sha256_file(a) != sha256_file(b)


def test_utc_now_is_iso_utc_to_the_millisecond():
    now = datetime.fromisoformat(utc_now())
    assert now.tzinfo is not None and now.utcoffset().total_seconds() == 0
    assert abs((datetime.now(timezone.utc) - now).total_seconds()) < 60
    assert utc_now(0.25) == "1970-01-01T00:00:00.250+00:00"


def test_sigmoid_is_float64_and_safe_at_any_logit():
    got = sigmoid(np.array([-1e6, -1.0, 0.0, 2.0, 1e6, np.inf], dtype=np.float32))
    assert got.dtype == np.float64 and np.isfinite(got).all()
    np.testing.assert_allclose(got[1:4], 1 / (1 + np.exp(-np.array([-1.0, 0.0, 2.0]))), rtol=1e-12)
    assert 0 < got[0] < 1e-25 and got[-1] == 1.0
    assert sigmoid(0.0) == 0.5


def test_atomic_path_replaces_on_success_removes_on_failure_and_keeps_the_umask_mode(tmp_path):
    from fabray.files import atomic_path

    path = tmp_path / "t.csv.gz"
    with atomic_path(path, ".csv.gz") as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".tmp.csv.gz") and not path.exists()
        tmp.write_text("new")
    assert path.read_text() == "new"
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["t.csv.gz"]
    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "m.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "m.txt").stat().st_mode & 0o777 == 0o640  # as open() would make it, not 0600


def test_strict_json_turns_nan_and_numpy_into_plain_json():
    import json

    import numpy as np

    from fabray.files import strict_json

    obj = {"a": np.float32("nan"), "b": [1.0, float("inf"), np.int64(3)], "c": np.array([1.5, np.nan]),
           "d": np.bool_(True), "e": (np.float64(2.5),), "f": "x", 3: None}
    out = strict_json(obj)
    assert out == {"a": None, "b": [1.0, None, 3], "c": [1.5, None], "d": True, "e": [2.5], "f": "x", "3": None}
    json.dumps(out, allow_nan=False)  # strict: raises on any NaN left
    assert type(out["b"][2]) is int and type(out["d"]) is bool
