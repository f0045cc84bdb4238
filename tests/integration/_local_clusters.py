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
import threading
import time
from collections.abc import Callable, Iterator, Sequence
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
    argv: Sequence[str], ray_tmp: Path, log: Path, timeout_s: float, stop: threading.Event | None = None
) -> subprocess.CompletedProcess:
    """Run `python argv...` with the isolated environment, output to `log`. On timeout (or when
    `stop` is set) the subprocess is ended (its cluster is cleaned up by `ray_temp_dir`)."""
    deadline = time.monotonic() + timeout_s
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, *argv], env=isolated_env(ray_tmp), stdout=out,
                                stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2])
        code = None
        while code is None and time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            try:
                code = proc.wait(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                pass
        if code is None:
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


class IsolatedRuns:
    """Isolated runs started at the beginning of the session, in a background thread, one at a
    time, while the rest of the suite goes on in this process (their clusters mostly wait on
    start-ups and timeouts, so they overlap well with the in-process tests).

    A module that needs one defines `ISOLATED_JOB = job` with `job(work: Path, stop: Event)`
    (work: a fresh directory; `stop`: set when the session ends early) returning what its tests
    check, and its module fixture calls `isolated_runs.result(__name__, job)`. The integration
    conftest schedules the job of every module of the session at the first test of their xdist
    group and runs those modules last; a job not scheduled yet runs when its fixture asks.
    """

    def __init__(self, make_dir: Callable[[str], Path]) -> None:
        self._make_dir = make_dir
        self._jobs: dict[str, Callable[[Path, threading.Event], object]] = {}
        self._queue: list[str] = []
        self._done: dict[str, tuple[bool, object]] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def schedule(self, name: str, job: Callable[[Path, threading.Event], object]) -> None:
        with self._cond:
            if name in self._jobs:
                return
            self._jobs[name] = job
            self._queue.append(name)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="isolated-runs", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def result(self, name: str, job: Callable[[Path, threading.Event], object]) -> object:
        """The job's return value, once it has run (its exception is raised here)."""
        self.schedule(name, job)
        with self._cond:
            self._cond.wait_for(lambda: name in self._done)
            ok, value = self._done[name]
        if not ok:
            raise value  # type: ignore[misc]
        return value

    def close(self) -> None:
        """End the job running now (if any) and skip the others."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=120)

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stop.is_set())
                if self._stop.is_set():
                    for name in self._queue:
                        self._done[name] = (False, RuntimeError("the session ended before this isolated run"))
                    self._queue.clear()
                    self._cond.notify_all()
                    return
                name = self._queue.pop(0)
            try:
                outcome = (True, self._jobs[name](self._make_dir(name.rsplit(".", 1)[-1]), self._stop))
            except BaseException as err:  # noqa: BLE001 - handed to the fixture that waits for it
                outcome = (False, err)
            with self._cond:
                self._done[name] = outcome
                self._cond.notify_all()
