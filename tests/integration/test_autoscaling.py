"""Phase-3 autoscaling on one machine (DESIGN §7, issue 7): Ray's fake multi-node autoscaling
cluster grows the H100 worker type from 1 to 2 nodes when a retrain's trainers do not fit beside
the serving replicas, and shrinks back to 1 after they finish and the extra node sits idle.

The worker type's min/max come from cluster/phase3.yaml (1 and 2 H100 workers, no GPU on the
head); GPUs are fake resources and the idle timeout is shortened to seconds. The load has the
shapes of Phase 3: serving (real-time + batch replicas) holds `SERVING_GPU` of the first worker;
six trainers ask for the default per-model fraction (`ModelResources().gpus`), more than what is
left on it.

`ray.cluster_utils.AutoscalingCluster` cannot be used as shipped (DESIGN §10): its example YAML
is missing from the wheel, its start()/shutdown() run `ray stop --force` (ending every Ray process
of the user), and it uses the fixed ports 6379 / 8265. `IsolatedAutoscalingCluster` supplies the
config inline, starts the head on free ports under its own RAY_TMPDIR, and stops only the
processes of that temp dir, by PID. Everything runs in a subprocess (this file as a script), away
from the session's `ray_cluster` fixture; it starts early in the session and runs in the
background while the rest of the suite goes on (`ISOLATED_JOB`, conftest.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PHASE3 = REPO / "cluster" / "phase3.yaml"
GPU_TYPE = "gpu_h100"
SERVING_GPU = 0.5  # real-time + batch Serve replicas on the first H100 worker
N_TRAINERS = 6  # one single-worker trainer per model
IDLE_TIMEOUT_MINUTES = 0.1  # 6 s instead of phase3.yaml's 10 min


def phase3_worker_type() -> dict[str, Any]:
    """The H100 worker type of cluster/phase3.yaml, shrunk to fit this machine (1 CPU)."""
    config = yaml.safe_load(PHASE3.read_text())
    node_type = config["available_node_types"][GPU_TYPE]
    return {
        "min_workers": node_type["min_workers"],
        "max_workers": node_type["max_workers"],
        "resources": {"CPU": 1, "GPU": node_type["resources"]["GPU"], "object_store_memory": 80 * 1024**2},
        "node_config": {},
    }


# ---------------------------------------------------------------------------- the subprocess


def _isolated_cluster_class():
    import os
    import subprocess

    import ray
    from ray.cluster_utils import AutoscalingCluster

    sys.path.insert(0, str(Path(__file__).parent))
    from _local_clusters import LOCALHOST, free_port, stop_processes_of

    class IsolatedAutoscalingCluster(AutoscalingCluster):
        """AutoscalingCluster with an inline config, free ports, and a PID-scoped shutdown."""

        def __init__(self, head_resources: dict, worker_node_types: dict, **config_kwargs: Any) -> None:
            self.ray_tmp = Path(os.environ["RAY_TMPDIR"])  # set by the test: ours alone
            self.port, self.dashboard_port = free_port(), free_port()
            # The address Ray's nodes advertise (as the stock class assumes, with its own port).
            self.ip = ray._private.services.get_node_ip_address()
            super().__init__(head_resources, worker_node_types, **config_kwargs)

        @property
        def address(self) -> str:
            return f"{self.ip}:{self.port}"

        def _generate_config(self, head_resources, worker_node_types, autoscaler_v2=False, **config_kwargs):
            # The content of the fake_multi_node/example.yaml that the wheel lacks.
            config = {
                "cluster_name": "fabray-fake-phase3",
                "max_workers": sum(t.get("max_workers", 0) for t in worker_node_types.values()),
                "provider": {
                    "type": "fake_multinode",
                    "use_node_id_as_ip": True,
                    "disable_node_updaters": True,
                    "disable_launch_config_check": True,
                    "gcs_address": self.address,  # not the default 6379
                },
                "available_node_types": {
                    **worker_node_types,
                    "ray.head.default": {"resources": dict(head_resources), "node_config": {}, "max_workers": 0},
                },
                "head_node_type": "ray.head.default",
                "auth": {}, "docker": {}, "upscaling_speed": 1.0, "idle_timeout_minutes": 5,
                "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
                "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
                "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
                "rsync_exclude": [], "rsync_filter": [],
            }
            config.update(config_kwargs)
            return config

        def start(self, _system_config=None, override_env=None) -> None:
            config_path = self.ray_tmp / "autoscaling-config.json"
            config_path.write_text(json.dumps(self._config))
            head = dict(self._head_resources)
            cmd = [
                str(Path(sys.executable).parent / "ray"), "start", "--head",
                f"--autoscaling-config={config_path}", f"--port={self.port}",
                f"--dashboard-host={LOCALHOST}",
                f"--dashboard-port={self.dashboard_port}", f"--ray-client-server-port={free_port()}",
                f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}",
                f"--runtime-env-agent-port={free_port()}",
                f"--num-cpus={head.pop('CPU', 0)}", f"--num-gpus={head.pop('GPU', 0)}",
                f"--object-store-memory={head.pop('object_store_memory', 100 * 1024**2)}",
            ]
            env = {**os.environ, "AUTOSCALER_UPDATE_INTERVAL_S": "1", "RAY_FAKE_CLUSTER": "1",
                   **(override_env or {})}
            subprocess.check_call(cmd, env=env)
            ray._private.services.find_gcs_addresses.cache_clear()

        def shutdown(self) -> None:
            """Stop the head, the fake workers and their workers: the processes of our temp dir."""
            stop_processes_of(self.ray_tmp)
            ray._private.services.find_gcs_addresses.cache_clear()

    return IsolatedAutoscalingCluster


def _gpu_workers() -> list[str]:
    import ray

    return sorted(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU", 0) > 0)


def _run(timeline_path: Path) -> dict[str, Any]:
    import ray

    from fabray.config import ModelResources

    sys.path.insert(0, str(Path(__file__).parent))
    from _local_clusters import wait_for

    trainer_gpu = ModelResources().gpus
    worker_type = phase3_worker_type()
    cluster = _isolated_cluster_class()(
        head_resources={"CPU": 1, "GPU": 0},
        worker_node_types={GPU_TYPE: worker_type},
        idle_timeout_minutes=IDLE_TIMEOUT_MINUTES,
    )
    events: list[dict[str, Any]] = []
    t0 = time.monotonic()

    def note(event: str, **extra: Any) -> None:
        events.append({"t_s": round(time.monotonic() - t0, 1), "event": event,
                       "gpu_workers": len(_gpu_workers()), **extra})
        timeline_path.write_text(json.dumps(events, indent=1))

    cluster.start()
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        head_gpus = [n["Resources"].get("GPU", 0.0) for n in ray.nodes()
                     if n["Alive"] and "node:__internal_head__" in n["Resources"]]
        # min_workers: the autoscaler brings up the first H100 worker with no load at all.
        wait_for(lambda: len(_gpu_workers()) >= worker_type["min_workers"], timeout_s=120)
        note("min_workers up", head_gpus=head_gpus)

        @ray.remote(num_cpus=0)
        class Holder:
            """Stands for a process holding a GPU fraction (a Serve replica, a trainer)."""

            def node(self) -> str:
                return ray.get_runtime_context().get_node_id()

        serving = Holder.options(num_gpus=SERVING_GPU, name="serving").remote()
        serving_node = ray.get(serving.node.remote(), timeout=120)
        note("serving placed", node=serving_node)

        trainers = [Holder.options(num_gpus=trainer_gpu).remote() for _ in range(N_TRAINERS)]
        trainer_nodes = ray.get([t.node.remote() for t in trainers], timeout=180)
        note("trainers placed", nodes=trainer_nodes)
        peak = len(_gpu_workers())

        for t in trainers:  # the retrain ends
            ray.kill(t)
        note("trainers ended")
        wait_for(lambda: len(_gpu_workers()) <= worker_type["min_workers"], timeout_s=180, interval_s=1)
        note("after idle timeout")
        serving_alive_on = ray.get(serving.node.remote(), timeout=60)
        return {
            "worker_type": worker_type,
            "trainer_gpu": trainer_gpu,
            "serving_node": serving_node,
            "serving_node_after": serving_alive_on,
            "trainer_nodes": trainer_nodes,
            "peak_gpu_workers": peak,
            "final_gpu_workers": len(_gpu_workers()),
            "events": events,
        }
    finally:
        ray.shutdown()
        cluster.shutdown()


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--result", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = Path(args.result)
    out = _run(result.with_suffix(".timeline.json"))
    result.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))


# ---------------------------------------------------------------------------- the test


def _isolated_job(work: Path, stop: threading.Event) -> tuple[int, Path, Path, list[int]]:
    """This file as a script, with its own cluster: (exit code, result file, log, the PIDs of the
    cluster still alive when the script ended, before the temp dir's own cleanup)."""
    from _local_clusters import processes_of, ray_temp_dir, run_isolated

    result, log = work / "result.json", work / "subprocess.log"
    with ray_temp_dir("fbr-as-") as ray_tmp:
        proc = run_isolated([__file__, "--result", str(result)], ray_tmp, log, timeout_s=900, stop=stop)
        left = [p.pid for p in processes_of(ray_tmp)]  # before ray_temp_dir's own cleanup
    return proc.returncode, result, log, left


ISOLATED_JOB = _isolated_job  # run in the background, started early (conftest.py)


@pytest.fixture(scope="module")
def scaling(isolated_runs) -> dict[str, Any]:
    from _local_clusters import log_tail

    code, result, log, left = isolated_runs.result(__name__, _isolated_job)
    timeline = result.with_suffix(".timeline.json")
    assert code == 0 and result.is_file(), (
        f"autoscaling run failed:\n{log_tail(log)}\ntimeline: "
        f"{timeline.read_text() if timeline.is_file() else '-'}")
    out = json.loads(result.read_text())
    out["left_running"] = left
    return out


def test_phase3_worker_type_is_what_the_test_scales():
    worker_type = phase3_worker_type()
    assert (worker_type["min_workers"], worker_type["max_workers"]) == (1, 2)
    assert worker_type["resources"]["GPU"] == 1


def test_training_beside_serving_scales_h100_workers_from_1_to_2(scaling):
    events = {e["event"]: e for e in scaling["events"]}
    assert events["min_workers up"]["head_gpus"] == [0.0]  # the head has no GPU
    assert events["min_workers up"]["gpu_workers"] == 1
    assert events["serving placed"]["gpu_workers"] == 1
    # 0.5 (serving) + 6 x 0.16 > 1 GPU: the trainers needed a second H100 worker, and got it
    assert SERVING_GPU + N_TRAINERS * scaling["trainer_gpu"] > 1.0
    assert scaling["peak_gpu_workers"] == 2
    assert len(set(scaling["trainer_nodes"])) == 2
    assert scaling["serving_node"] in scaling["trainer_nodes"]


def test_idle_worker_is_removed_and_serving_keeps_its_node(scaling):
    assert scaling["final_gpu_workers"] == 1
    assert scaling["serving_node_after"] == scaling["serving_node"]


def test_nothing_is_left_running(scaling):
    assert scaling["left_running"] == []
