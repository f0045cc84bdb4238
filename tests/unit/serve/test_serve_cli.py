"""`fabray serve` refuses bad arguments with exit 2 before starting Ray."""

from __future__ import annotations

from fabray.cli import main


def test_a_missing_run_directory_is_exit_2(tmp_path, capsys):
    assert main(["serve", "--run", str(tmp_path / "nope")]) == 2
    assert "run directory not found" in capsys.readouterr().err


def test_a_directory_that_is_not_a_run_is_exit_2(tmp_path, capsys):
    (tmp_path / "r1").mkdir()
    assert main(["serve", "--run", str(tmp_path / "r1"), "--store", str(tmp_path / "store")]) == 2
    assert "not a fabray run directory" in capsys.readouterr().err


def test_bad_port_and_cpus_are_exit_2(make_run, tmp_path, capsys):
    run = make_run(tmp_path / "r1", {})
    assert main(["serve", "--run", str(run), "--port", "70000", "--store", str(tmp_path / "s")]) == 2
    assert "port" in capsys.readouterr().err
    assert main(["serve", "--run", str(run), "--num-cpus", "0"]) == 2
    assert "--num-cpus must be >= 1" in capsys.readouterr().err
