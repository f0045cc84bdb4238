"""`fabray predict` (DESIGN §8) and the `ray job submit` entrypoints beside it, without Ray or a
trained run: bad input exits 2 with a message before Ray starts, and the command hands
`Forecaster.predict` the Ray Data scorer and writes what it returns. The real scoring on Ray
Data is tests/integration/test_predict.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from fabray.api import Forecaster
from fabray.batch_predict import RayDataScorer, WindowSlots
from fabray.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def no_ray(monkeypatch):
    """The Ray Data scorer must not run: a test that reaches it fails."""
    monkeypatch.setattr(RayDataScorer, "__call__", lambda *a, **k: pytest.fail("Ray must not start"))


@pytest.fixture()
def loaded_run(monkeypatch, tmp_path):
    """Forecaster.load without TensorFlow: a Forecaster on an (empty) run directory, whose
    predictor must not be reached with data that fails validation."""
    run = tmp_path / "r1"
    run.mkdir()

    def load(cls, run_dir):
        fc = cls(run_dir)
        fc._predictor = SimpleNamespace(prepare=lambda df: pytest.fail("invalid data reached the predictor"))
        return fc

    monkeypatch.setattr(Forecaster, "load", classmethod(load))
    return run


@pytest.fixture()
def data_file(tmp_path):
    path = tmp_path / "data.parquet"
    pd.DataFrame({"x": [1.0]}).to_parquet(path)
    return path


def _predict(*flags: str) -> int:
    return main(["predict", *flags])


def test_missing_run_exits_2(no_ray, tmp_path, data_file, capsys):
    code = _predict("--run", str(tmp_path / "nope"), "--data", str(data_file), "--out", str(tmp_path / "s.parquet"))
    assert code == 2
    err = capsys.readouterr().err
    assert "fabray predict: error: run directory not found" in err and "nope" in err
    assert not (tmp_path / "s.parquet").exists()


@pytest.mark.parametrize("out, flags, message", [
    ("scores.txt", [], "scores.txt"),  # neither Parquet nor CSV
    ("dir.parquet", [], "--out must be a file, not a directory"),
    ("DATA", [], "--out would overwrite the input data file"),
    ("s.parquet", ["--workers", "0"], "--workers must be >= 1"),
    ("s.parquet", ["--batch-size", "0"], "--batch-size must be >= 1"),
    ("s.parquet", ["--num-cpus", "0"], "--num-cpus must be >= 1"),
])
def test_bad_flags_exit_2_before_the_run_is_loaded(monkeypatch, no_ray, tmp_path, data_file, capsys, out, flags,
                                                   message):
    monkeypatch.setattr(Forecaster, "load", classmethod(lambda cls, run: pytest.fail("the run must not be loaded")))
    (tmp_path / "dir.parquet").mkdir()
    out_path = data_file if out == "DATA" else tmp_path / out
    code = _predict("--run", str(tmp_path), "--data", str(data_file), "--out", str(out_path), *flags)
    assert code == 2
    assert message in capsys.readouterr().err


def test_missing_data_file_exits_2(monkeypatch, no_ray, tmp_path, capsys):
    monkeypatch.setattr(Forecaster, "load", classmethod(lambda cls, run: pytest.fail("the run must not be loaded")))
    code = _predict("--run", str(tmp_path), "--data", str(tmp_path / "absent.parquet"), "--out", str(tmp_path / "s.parquet"))
    assert code == 2
    assert "absent.parquet: file not found" in capsys.readouterr().err


def test_sql_flags_need_a_url(no_ray, tmp_path, data_file, capsys):
    code = _predict("--run", str(tmp_path), "--data", str(data_file), "--table", "oht", "--out", str(tmp_path / "s.parquet"))
    assert code == 2
    assert "--table/--query read from a database" in capsys.readouterr().err


def test_data_failing_validation_exits_2_with_the_validators_report(no_ray, loaded_run, tmp_path, data_file, capsys):
    out = tmp_path / "s.parquet"
    out.write_bytes(b"old scores")
    assert _predict("--run", str(loaded_run), "--data", str(data_file), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "fabray predict: error:" in err and str(data_file) in err
    assert "timestamp" in err  # the contract's missing columns are named
    assert out.read_bytes() == b"old scores"  # nothing written on bad input


def test_the_command_scores_through_forecaster_predict_with_the_ray_data_scorer(
        monkeypatch, loaded_run, tmp_path, data_file, capsys):
    seen = {}
    frame = pd.DataFrame({
        "zone": ["Z01", "Z02"], "end_time": pd.to_datetime(["2026-01-01 01:39", "2026-01-01 01:40"]),
        "score_lstm": [0.1, 0.9], "probability": [0.2, 0.8], "threshold": [0.5, 0.5], "decision": [False, True],
    })

    def predict(self, source, *, latest=False, ensemble="dynamic", scorer=None):
        seen.update(run_dir=self.run_dir, source=source, latest=latest, ensemble=ensemble, scorer=scorer)
        return frame

    monkeypatch.setattr(Forecaster, "predict", predict)
    out = tmp_path / "scores" / "s.parquet"
    out.parent.mkdir()
    out.write_bytes(b"old scores")  # an existing file is replaced, as `fabray simulate --out` does
    code = _predict("--run", str(loaded_run), "--data", str(data_file), "--out", str(out), "--latest",
                    "--ensemble", "static", "--workers", "3", "--batch-size", "512", "--address", "ray://h:1")
    assert code == 0
    assert seen["run_dir"] == loaded_run.resolve() and seen["source"] == data_file
    assert (seen["latest"], seen["ensemble"]) == (True, "static")
    assert seen["scorer"] == RayDataScorer(str(loaded_run.resolve()), address="ray://h:1", num_cpus=None,
                                           workers=3, batch_size=512)
    pd.testing.assert_frame_equal(pd.read_parquet(out), frame)
    assert [p.name for p in out.parent.iterdir()] == ["s.parquet"]  # no temporary file left
    line = capsys.readouterr().out.strip()
    assert line == f"{out}: 2 windows of 2 zones, 2026-01-01 01:39 .. 2026-01-01 01:40; 1 alarms (probability >= 0.500)"


def test_window_slots_put_batches_back_in_window_order():
    """Ray Data's batches arrive in any order; each score lands on its window (by END row)."""
    slots = WindowSlots(np.array([150, 99, 120, 400], dtype=np.int64))
    assert slots.of(np.array([400, 99])).tolist() == [3, 1]
    assert slots.of(np.array([120, 150, 99, 400])).tolist() == [2, 0, 1, 3]
    with pytest.raises(KeyError, match="121"):
        slots.of(np.array([121]))
    with pytest.raises(KeyError, match="401"):
        slots.of(np.array([401]))


@pytest.mark.parametrize("script, command", [("jobs/batch_score.py", "predict"), ("jobs/tune_ensemble.py", "ensemble")])
def test_job_entrypoints_take_the_commands_flags(script, command):
    """`ray job submit -- python jobs/<script> ...` runs `fabray <command> ...` (no cluster needed for --help)."""
    done = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: fabray {command} ")
    assert "--run" in done.stdout
