"""Start or join the Ray cluster a command works on, and shut down only what it started.

The one Ray session helper: the CLI, the Python API (`fabray.api`), training, retraining, the
ensemble fit, the demo and `fabray serve` (`fabray.serve.runner`) all enter Ray through
`ray_session`. Ray is imported only inside it, so importing this module costs nothing."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RaySession:
    """How the command reached Ray: `started` → it owns the cluster (and shuts it down);
    `joined` → an existing cluster that may autoscale (GPU nodes can appear on demand)."""

    started: bool
    joined: bool
    address: str | None


@contextmanager
def ray_session(
    address: str | None = None, num_cpus: int | None = None, *, worker_logs: bool = False
) -> Iterator[RaySession]:
    """Ray for the duration of a `with` block.

    `worker_logs`: stream every Ray process's output to this console (Ray's own chatter
    included); off, the console shows fabray's progress lines and the logs stay in Ray's session
    directory.

    - Ray already initialized in this process (tests, notebooks): use it, leave it running.
    - `address` given (or RAY_ADDRESS set, as under `ray job submit`): join that cluster.
    - otherwise: an embedded local cluster (`address="local"`, never a stale
      /tmp/ray/ray_current_cluster), with `num_cpus` CPUs (default: all).
    """
    import ray

    from fabray.console import quiet_ray_logger

    quiet_ray_logger()  # quiet CLI: Ray's driver-side messages to the log file (fabray.console)
    if ray.is_initialized():
        yield RaySession(started=False, joined=False, address=None)
        return
    env_address = os.environ.get("RAY_ADDRESS")
    if address or env_address:
        ray.init(address=address or env_address, log_to_driver=worker_logs)
        session = RaySession(started=True, joined=True, address=address or env_address)
    else:
        # The dashboard stays on: Train V2's placement-group cleaner asks the State API it serves.
        ray.init(address="local", num_cpus=num_cpus, log_to_driver=worker_logs)
        session = RaySession(started=True, joined=False, address="local")
    logger.info("Ray %s: %s", "joined" if session.joined else "started", ray.cluster_resources())
    if not worker_logs:
        logger.info("Ray workers' logs: under %s (-v streams them here)", _session_dir())
    try:
        yield session
    finally:
        ray.shutdown()


def _session_dir() -> str:
    try:
        import ray

        return ray._private.worker._global_node.get_logs_dir_path()  # noqa: SLF001
    except Exception:  # noqa: BLE001 - only for a log line
        return "/tmp/ray/session_latest/logs"
