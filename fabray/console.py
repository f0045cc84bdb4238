"""A quiet console: fabray's own lines and bars on the terminal, library chatter in a log file.

By default (`fabray` without `-v`) a command runs inside `quiet_console(command)`:

- file descriptor 2 points at the log file, so what native code writes there goes to it:
  TensorFlow's and absl's C++ start-up lines (oneDNN, "Could not find cuda drivers", cuInit
  errors) and the Ray processes this command starts (GCS, raylet: they inherit it);
- Python's `sys.stderr` stays on the terminal (a copy of the old descriptor), so fabray's log
  lines, error messages and tqdm bars still show;
- the Python loggers of the libraries (`LIBRARY_LOGGERS`: ray, tensorflow, absl, ...) and Python
  warnings write to the log file only; `quiet_ray_logger()` (called where Ray is started, in
  `fabray.ray_session`) moves Ray's and Serve's own console handlers there too (they install
  them on import) and the raylet's messages to the driver;
- `QUIET_ENV` is set for the command (Ray Tune's output engine that stays silent at verbose=0).

The log file is `$FABRAY_LOG_DIR/<command>-<UTC time>-<pid>.log` (default
`~/.cache/fabray/logs`, or `$XDG_CACHE_HOME/fabray/logs`); the command's last log line names
it at the end (an empty log file is removed). `-v` keeps everything on the terminal as before. Ray workers' own output stays in Ray's
session directory unless `-v` (`ray_session(worker_logs=...)`). When stderr is not a real file
descriptor (pytest's capsys, a notebook), nothing is redirected.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

LOG_DIR_ENV = "FABRAY_LOG_DIR"
#: Python loggers of libraries whose messages go to the log file in quiet mode.
LIBRARY_LOGGERS = ("ray", "tensorflow", "absl", "keras", "h5py", "py.warnings", "urllib3", "filelock",
                   "alembic", "mlflow", "optuna", "lightgbm", "matplotlib")

#: Environment for quiet mode: Ray Tune's legacy output, which prints nothing at verbose=0 (the
#: new output engine prints an experiment header and a TensorBoard hint even then).
QUIET_ENV = {"RAY_AIR_NEW_OUTPUT": "0"}

_state: dict[str, logging.Handler] = {}
_originals: dict[str, tuple] = {}  # name → (module, original function) swapped by quiet_ray_logger


def log_dir() -> Path:
    """Where quiet-mode log files go: $FABRAY_LOG_DIR, else the user's cache directory."""
    if os.environ.get(LOG_DIR_ENV):
        return Path(os.environ[LOG_DIR_ENV]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "fabray" / "logs"


def _real_stderr() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False  # pytest's capsys, notebooks: leave them alone


@contextmanager
def quiet_console(command: str, *, verbose: bool = False) -> Iterator[Path | None]:
    """Run a command with library chatter in a log file (module docstring); yields its path,
    or None when nothing is redirected (`verbose`, or stderr is not file descriptor 2).

    Configure logging handlers for the terminal inside the block: they then write to the
    terminal's copy of stderr, not to descriptor 2."""
    if verbose or not _real_stderr():
        yield None
        return
    directory = log_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{command}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}.log"
        log = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as err:
        logger.warning("cannot write a log file under %s (%s): library messages stay here", directory, err)
        yield None
        return
    sys.stderr.flush()
    saved_fd = os.dup(2)
    console = os.fdopen(os.dup(2), "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                        errors="backslashreplace")
    old_stderr = sys.stderr
    os.dup2(log.fileno(), 2)  # native writers (TensorFlow, absl, Ray's processes) → the log file
    sys.stderr = console  # Python's stderr (fabray's lines, errors, bars) stays on the terminal
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    _state["handler"] = handler
    moved = {}
    for name in LIBRARY_LOGGERS:
        lib = logging.getLogger(name)
        moved[name] = (list(lib.handlers), lib.propagate)
        lib.handlers = [handler]
        lib.propagate = False
    logging.captureWarnings(True)
    saved_env = {name: os.environ.get(name) for name in QUIET_ENV}
    os.environ.update(QUIET_ENV)
    try:
        yield path
    finally:
        logging.captureWarnings(False)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for name, (module, original) in list(_originals.items()):
            setattr(module, name, original)
            del _originals[name]
        for name, (handlers, propagate) in moved.items():
            lib = logging.getLogger(name)
            lib.handlers, lib.propagate = handlers, propagate
        _state.pop("handler", None)
        sys.stderr.flush()
        sys.stderr = old_stderr
        os.dup2(saved_fd, 2)
        os.close(saved_fd)
        log.close()
        if path.stat().st_size == 0:
            path.unlink()  # nothing was said: no file to look for
        # `console` stays open: handlers made inside (the CLI's) still write to the terminal.


def quiet_ray_logger() -> None:
    """In quiet mode, send Ray's driver-side messages to the log file; a no-op otherwise.

    - the Python loggers `ray` and `ray.*` that hold their own console handlers (Ray adds one to
      `ray` when imported, Serve one to `ray.serve`): their handlers become the log file's;
    - the raylet's and GCS's messages to the driver ("(raylet) WARNING: 8 PYTHON worker processes
      have been started …", task retries at shutdown), which Ray prints to sys.stdout through
      `ray._private.worker.print_to_stdstream`: that function is swapped for one writing to the
      log file while the quiet console lasts (a private Ray function: skipped if it is gone).
    """
    handler = _state.get("handler")
    if handler is None:
        return
    for name in ["ray", *[n for n in logging.root.manager.loggerDict if n.startswith("ray.")]]:
        lib = logging.getLogger(name)
        if name == "ray" or lib.handlers:
            lib.handlers = [handler]
            lib.propagate = False
    try:
        from ray._private import worker as ray_worker
    except ImportError:
        return
    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None or "print_to_stdstream" in _originals:
        return

    def to_log_file(data: dict, ignore_prefix: bool = False) -> None:
        for line in data.get("lines", []):
            handler.stream.write(f"({data.get('pid', 'ray')}) {line}\n")

    _originals["print_to_stdstream"] = (ray_worker, original)
    ray_worker.print_to_stdstream = to_log_file
