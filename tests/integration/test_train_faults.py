"""A training worker killed mid-run resumes from its last checkpoint (DESIGN §4, issue 4).

One tiny LSTM trains for `EPOCHS` epochs with `train.max_failures: 1`. As soon as the driver
sees its first checkpointed report, the `RayTrainWorker` actor's PID is looked up through Ray's
State API (`ray.util.state.list_actors`) and that one process gets SIGKILL, in the middle of the
next epoch. Ray Train V2 restarts the worker group, the loop loads the latest checkpoint (model,
optimizer and early-stopping state) and continues. The test checks that:

- the run completes, and the killed process is gone;
- the resume is in the log ("resuming lstm from epoch k") and in the manifest (`resumed_from`);
- at most one epoch is lost: no completed epoch is trained twice (the reports' epochs are 1…N in
  order, the first after the restart says it resumed from the last epoch reported before the
  kill or later), so only the epoch in progress at the kill is redone;
- the stored history is exactly epochs 1…N.

The State API needs the dashboard, which the session's `ray_cluster` has off; so the run happens
in a subprocess (this file run as a script) on a one-node `ray.cluster_utils.Cluster` with the
dashboard on 127.0.0.1, free ports and its own RAY_TMPDIR (`_local_clusters`), shut down by its
own means, and never meets the session cluster. The subprocess starts early in the session
and runs in the background while the rest of the suite goes on (`ISOLATED_JOB`, conftest.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

EPOCHS = 5
CONFIG = {
    "train": {
        "models": ["lstm"],
        "epochs": EPOCHS,
        "batch_size": 128,
        "shuffle_buffer": 1000,
        "early_stopping_patience": EPOCHS,  # every epoch runs: the count is what is checked
        "max_failures": 1,
        "resources": {"cpus": 1.0},
        "model_overrides": {"lstm": {"lstm_units": [8], "head_units": [8]}},
    }
}


# ---------------------------------------------------------------------------- the subprocess


def _kill_first_worker_after_a_checkpoint(killed: dict[str, Any], seen: list[int]):
    """An `on_report` hook: on the first epoch report, SIGKILL the trainer's worker process."""
    from ray.util.state import list_actors

    lock = threading.Lock()

    def hook(item: dict[str, Any]) -> None:
        if "epoch" not in item:
            return
        with lock:
            seen.append(int(item["epoch"]))
            if killed:
                return
            workers = list_actors(filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")],
                                  detail=True, raise_on_missing_output=False)
            if len(workers) != 1:
                killed["error"] = f"expected one live RayTrainWorker, found {len(workers)}"
                return
            pid = int(workers[0].pid)
            assert pid != os.getpid()
            killed.update(pid=pid, actor_id=workers[0].actor_id, after_epoch=max(seen))
            logging.getLogger("fault-test").warning("killing RayTrainWorker pid %d after epoch %d",
                                                    pid, max(seen))
            os.kill(pid, signal.SIGKILL)

    return hook


def _run(data: Path, out: Path) -> dict[str, Any]:
    import ray
    from ray.cluster_utils import Cluster

    from fabray.config import FabrayConfig
    from fabray.train.driver import train_models
    from fabray.train.prepare import prepare_run

    sys.path.insert(0, str(Path(__file__).parent))
    from _local_clusters import LOCALHOST, free_port

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "object_store_memory": 150 * 1024**2,
        "include_dashboard": True, "dashboard_host": LOCALHOST, "dashboard_port": free_port(),
        "dashboard_agent_listen_port": free_port(), "metrics_export_port": free_port(),
        "runtime_env_agent_port": free_port(), "ray_client_server_port": free_port(),
    })
    try:
        ray.init(address=cluster.address, log_to_driver=True)  # the worker's own lines too
        killed: dict[str, Any] = {}
        seen: list[int] = []
        job = prepare_run(data, out, FabrayConfig.model_validate(CONFIG))
        summary = train_models(job, on_report=_kill_first_worker_after_a_checkpoint(killed, seen))
        return {"killed": killed, "reported_epochs": seen, "manifest": summary.manifest,
                "run_dir": str(summary.run_dir)}
    finally:
        ray.shutdown()
        cluster.shutdown()


def _main(argv: list[str]) -> int:
    from fabray.data.io import write_table
    from fabray.data.simulate import simulate_preset

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True, help="where the tiny fab (seed 4) is written")
    parser.add_argument("--out", required=True)
    parser.add_argument("--result", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data = write_table(simulate_preset("tiny", seed=4), Path(args.data))
    result = _run(data, Path(args.out))
    Path(args.result).write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))


# ---------------------------------------------------------------------------- the test


def _isolated_job(work: Path, stop: threading.Event) -> tuple[int, Path, Path]:
    """This file as a script, on its own one-node cluster: (exit code, result file, log)."""
    from _local_clusters import ray_temp_dir, run_isolated

    result, log = work / "result.json", work / "subprocess.log"
    with ray_temp_dir("fbr-fault-") as ray_tmp:
        proc = run_isolated([__file__, "--data", str(work / "tiny.parquet"), "--out", str(work / "run"),
                             "--result", str(result)], ray_tmp, log, timeout_s=900, stop=stop)
    return proc.returncode, result, log


ISOLATED_JOB = _isolated_job  # run in the background, started early (conftest.py)


@pytest.fixture(scope="module")
def fault_run(isolated_runs) -> dict[str, Any]:
    from _local_clusters import log_tail

    code, result, log = isolated_runs.result(__name__, _isolated_job)
    assert code == 0 and result.is_file(), f"fault run failed:\n{log_tail(log)}"
    out = json.loads(result.read_text())
    out["log"] = log.read_text(errors="replace")
    return out


def test_killed_worker_resumes_and_the_run_completes(fault_run):
    import psutil

    killed = fault_run["killed"]
    assert "error" not in killed and killed.get("pid"), killed
    assert not psutil.pid_exists(killed["pid"]) or psutil.Process(killed["pid"]).status() == psutil.STATUS_ZOMBIE
    manifest = fault_run["manifest"]
    assert manifest["status"] == "complete"
    entry = manifest["models"]["lstm"]
    assert entry["status"] == "ok" and entry["epochs_run"] == EPOCHS
    resumed = entry["resumed_from"]
    assert len(resumed) == 1 and resumed[0] >= killed["after_epoch"], (resumed, killed)
    # the driver's line, and the worker's own (streamed with log_to_driver)
    assert f"resuming lstm from epoch {resumed[0]}" in fault_run["log"]
    assert fault_run["log"].count(f"resuming lstm from epoch {resumed[0]}") >= 2


def test_at_most_the_epoch_in_progress_is_lost(fault_run):
    killed, epochs = fault_run["killed"], fault_run["reported_epochs"]
    # every completed epoch was reported once, in order: none was trained twice
    assert epochs == list(range(1, EPOCHS + 1)), epochs
    resumed = fault_run["manifest"]["models"]["lstm"]["resumed_from"][0]
    # the resume point is the last checkpoint the driver saw before the kill, or a later one
    # (an epoch may end between the kill decision and the signal): work lost <= 1 epoch
    assert killed["after_epoch"] <= resumed < EPOCHS
    run = Path(fault_run["run_dir"])
    history = json.loads((run / "models/lstm/history.json").read_text())
    assert [h["epoch"] for h in history["epochs"]] == list(range(1, EPOCHS + 1))
    assert [h.get("resumed_from_epoch") for h in history["epochs"]] == [
        resumed if h["epoch"] == resumed + 1 else None for h in history["epochs"]
    ]
