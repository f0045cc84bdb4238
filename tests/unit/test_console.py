"""fabray.console: native and library chatter goes to the log file, fabray's lines stay on the
terminal, `-v` keeps everything on the terminal. Run in subprocesses: the redirection works on
file descriptor 2, which pytest's capture replaces in this process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import logging, os, sys, warnings
from fabray.console import quiet_console
with quiet_console("probe", verbose={verbose}) as path:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    os.write(2, b"NATIVE chatter on fd 2\\n")
    logging.getLogger("tensorflow").warning("TFLOG chatter")
    warnings.warn("PYWARN chatter")
    logging.getLogger("fabray.probe").info("FABRAY line")
    print("ERROR message for people", file=sys.stderr)
    print("ENV", os.environ.get("RAY_AIR_NEW_OUTPUT"))
print("LOG", path)
print("ENV AFTER", os.environ.get("RAY_AIR_NEW_OUTPUT"))
os.write(2, b"AFTER on fd 2\\n")
"""


def _run(code: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FABRAY_LOG_DIR": str(tmp_path / "logs")}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)


def test_chatter_goes_to_the_log_file_and_fabray_lines_stay(tmp_path):
    proc = _run(SCRIPT.format(verbose=False), tmp_path)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    assert "FABRAY line" in err and "ERROR message for people" in err and "AFTER on fd 2" in err
    for chatter in ("NATIVE", "TFLOG", "PYWARN"):
        assert chatter not in err, chatter
    (log,) = (tmp_path / "logs").iterdir()
    assert proc.stdout.splitlines() == ["ENV 0", f"LOG {log}", "ENV AFTER None"]  # Tune's silent output
    text = log.read_text()
    assert all(c in text for c in ("NATIVE chatter", "TFLOG chatter", "PYWARN chatter"))
    assert "FABRAY line" not in text and "AFTER" not in text


def test_verbose_keeps_everything_on_the_terminal(tmp_path):
    proc = _run(SCRIPT.format(verbose=True), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert all(c in proc.stderr for c in ("NATIVE", "TFLOG", "PYWARN", "FABRAY line"))
    assert proc.stdout.splitlines() == ["ENV None", "LOG None", "ENV AFTER None"]
    assert not (tmp_path / "logs").exists()


def test_a_quiet_command_leaves_no_empty_log(tmp_path):
    proc = _run("from fabray.cli import main; raise SystemExit(main(['validate', 'missing.parquet']))", tmp_path)
    assert proc.returncode == 2 and "missing.parquet: file not found" in proc.stderr
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").iterdir())


@pytest.mark.slow
def test_tensorflow_start_up_lines_leave_the_console(tmp_path):
    """`fabray models` imports TensorFlow: its C++ start-up lines (absl, oneDNN, CUDA probing)
    go to the log file; `-v` shows them."""
    code = "from fabray.cli import main; import sys; raise SystemExit(main(sys.argv[1:]))"
    quiet = _run(code, tmp_path, "models", "--repeats", "0", "--names", "rule")
    assert quiet.returncode == 0, quiet.stderr
    assert "rule" in quiet.stdout
    lines = [line for line in quiet.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "library messages" in lines[0], quiet.stderr
    (log,) = (tmp_path / "logs").iterdir()
    assert "absl" in log.read_text() or "oneDNN" in log.read_text()
    loud = _run(code, tmp_path / "v", "-v", "models", "--repeats", "0", "--names", "rule")
    assert "absl" in loud.stderr or "oneDNN" in loud.stderr


def test_rays_driver_messages_go_to_the_log_file(tmp_path):
    """Ray's logger (with the console handler Ray adds on import) and the raylet's messages to
    the driver ("(raylet) WARNING: 8 PYTHON worker processes …") go to the log file; no Ray is
    started."""
    code = """
import logging
from fabray.console import quiet_console, quiet_ray_logger
with quiet_console("probe") as path:
    import ray
    from ray._private import worker
    quiet_ray_logger()
    logging.getLogger("ray").warning("RAYLOG chatter")
    worker.print_to_stdstream({"lines": ["RAYLET chatter"], "pid": "raylet", "is_err": False})
    print("FABRAY line")
print("restored", worker.print_to_stdstream.__name__)
"""
    proc = _run(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "FABRAY line" in proc.stdout and "restored print_to_stdstream" in proc.stdout
    assert "RAYLOG" not in proc.stdout + proc.stderr and "RAYLET" not in proc.stdout + proc.stderr
    (log,) = (tmp_path / "logs").iterdir()
    assert "RAYLOG chatter" in log.read_text() and "(raylet) RAYLET chatter" in log.read_text()
