"""Throw-away multi-node Ray clusters on this machine, isolated from every other Ray here.

Used by test_multinode.py and test_autoscaling.py. Each cluster lives in a subprocess whose
environment points Ray at a fresh temp dir (`RAY_TMPDIR`): its sessions, sockets and the
`ray_current_cluster` file stay there, so another test's (or another user's) `ray.init()` can
never find it, and it can never find theirs. Every port is picked free on 127.0.0.1 (no fixed
6379 / 8265 / 10001 / 52365). Token auth is disabled explicitly: these clusters listen on
127.0.0.1 only and live for one test.

Cleanup stops only what the test started: after the cluster's own shutdown, any process left
whose command line or `RAY_TMPDIR` names the cluster's temp dir is ended by its PID (never
`ray stop`, which would end every Ray process of the user).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psutil

LOCALHOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOCALHOST, 0))
        return s.getsockname()[1]


def isolated_env(ray_tmp: Path) -> dict[str, str]:
    """The environment of a subprocess that runs its own Ray under `ray_tmp`."""
    env = dict(os.environ)
    for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        env.pop(key, None)
    env.update({
        "RAY_TMPDIR": str(ray_tmp),
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "KERAS_BACKEND": "tensorflow",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def processes_of(ray_tmp: Path) -> list[psutil.Process]:
    """Live processes that belong to the cluster under `ray_tmp`, except this one and its parents."""
    mine = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    marker = str(ray_tmp)
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.pid in mine:
            continue
        try:
            cmdline = " ".join(proc.info["cmdline"] or ())
            if marker in cmdline or proc.environ().get("RAY_TMPDIR") == marker:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def stop_processes_of(ray_tmp: Path, grace_s: float = 10.0) -> list[int]:
    """SIGTERM, then SIGKILL after `grace_s`, every process of the cluster under `ray_tmp`.
    Returns the PIDs that were still alive (empty when the cluster had shut itself down)."""
    procs = processes_of(ray_tmp)
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace_s)
    return [p.pid for p in procs]


@contextmanager
def ray_temp_dir(prefix: str) -> Iterator[Path]:
    """A short, fresh temp dir for one cluster (AF_UNIX socket paths must stay under 108
    characters), cleaned up with every process still using it."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        leftovers = stop_processes_of(path)
        if leftovers:
            print(f"stopped {len(leftovers)} leftover process(es) of {path}: {leftovers}", file=sys.stderr)
        shutil.rmtree(path, ignore_errors=True)


def run_isolated(
    argv: Sequence[str], ray_tmp: Path, log: Path, timeout_s: float
) -> subprocess.CompletedProcess:
    """Run `python argv...` with the isolated environment, output to `log`. On timeout the
    subprocess is ended (its cluster is cleaned up by `ray_temp_dir`)."""
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, *argv], env=isolated_env(ray_tmp), stdout=out,
                                stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2])
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            code = -1
    return subprocess.CompletedProcess(argv, code)


def log_tail(log: Path, lines: int = 60) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_for(predicate, timeout_s: float, interval_s: float = 0.5) -> bool:
    """Poll `predicate()` until it is true or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())
