"""Multi-node training on one machine (DESIGN §7, issue 7): `ray.cluster_utils.Cluster` with two
nodes, each with a fake `{"GPU": 1}` and 2 CPUs, trains the six models with fractional GPU requests.

Each trainer asks for 0.6 GPU, so no node can hold two at once: with two trainers running at a
time, the Ray state API must show trainer workers on BOTH nodes. The fake GPUs do not exist, so
Ray sets CUDA_VISIBLE_DEVICES to a GPU TensorFlow cannot find and training runs on the CPU in
float32 (the manifest says which precision each model used). The same code then trains one model
on a single-node cluster, and both runs' manifests must have the same structure.

The clusters run in a subprocess (this file, run as a script) with its own RAY_TMPDIR and free
ports, so they never meet the session's `ray_cluster` fixture or anyone else's Ray. The subprocess
starts early in the session and runs in the background while the rest of the suite goes on
(`ISOLATED_JOB`, conftest.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

MODELS = ("lstm", "gru", "cnn_lstm", "spike", "rule", "patchtst")
GPU_PER_TRAINER = 0.6  # > 0.5: at most one trainer per one-GPU node at a time
TINY = {
    "lstm": {"lstm_units": [8], "head_units": [8]},
    "gru": {"gru_units": [8], "head_units": [8]},
    "cnn_lstm": {"conv_filters": 4, "lstm_units": [8], "head_units": [8]},
    "spike": {"conv_filters": 8, "num_heads": 2, "key_dim": 4, "bilstm_units": 4, "head_units": [8]},
    "rule": {"lstm_units": 4, "head_units": [4]},
    "patchtst": {"d_model": 8, "num_heads": 2, "d_ff": 16, "num_layers": 1},
}


def _config(models: tuple[str, ...]) -> dict[str, Any]:
    return {
        "train": {
            "models": list(models),
            "epochs": 1,
            "batch_size": 256,
            # sampled epochs (the test checks placement and the manifest, not what was learnt)
            "windows_per_epoch": 2048,
            "val_windows": 1024,
            "shuffle_buffer": 1000,
            "use_gpu": "true",
            "resources": {"cpus": 0.5, "gpus": GPU_PER_TRAINER},
            "max_concurrent": 2,
            "model_overrides": {m: TINY[m] for m in models},
        }
    }


# ---------------------------------------------------------------------------- the subprocess


def _fake_gpu_probe_fn() -> dict[str, Any]:
    """What a task holding a fake GPU fraction sees: Ray's GPU id and CUDA_VISIBLE_DEVICES, and
    the GPUs TensorFlow finds (none: the device does not exist)."""
    import os

    import ray
    import tensorflow as tf

    return {
        "ray_gpu_ids": [str(i) for i in ray.get_gpu_ids()],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "tf_gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
    }


def _train_on(cluster_nodes: list[dict], data: Path, out: Path, models: tuple[str, ...]) -> dict[str, Any]:
    """Start a `Cluster` with these nodes, train, and report the manifest and where trainers ran."""
    import ray
    from ray.cluster_utils import Cluster
    from ray.util.state import list_actors

    from fabray.config import FabrayConfig
    from fabray.train.driver import train_models
    from fabray.train.prepare import prepare_run

    _fake_gpu_probe = ray.remote(num_cpus=0)(_fake_gpu_probe_fn)

    sys.path.insert(0, str(Path(__file__).parent))
    from _local_clusters import LOCALHOST, free_port

    def node_args(spec: dict, head: bool) -> dict:
        args = {
            "num_cpus": spec["cpus"], "num_gpus": spec["gpus"],
            "object_store_memory": 120 * 1024**2, "dashboard_agent_listen_port": free_port(),
            "metrics_export_port": free_port(), "runtime_env_agent_port": free_port(),
        }
        if head:
            # The dashboard serves the State API (and Train V2's placement-group cleaner uses it).
            args.update(include_dashboard=True, dashboard_host=LOCALHOST, dashboard_port=free_port(),
                        ray_client_server_port=free_port())
        return args

    cluster = Cluster(initialize_head=True, head_node_args=node_args(cluster_nodes[0], head=True))
    try:
        for spec in cluster_nodes[1:]:
            cluster.add_node(**node_args(spec, head=False))
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        nodes = [{"node_id": n["NodeID"], "gpus": n["Resources"].get("GPU", 0.0),
                  "cpus": n["Resources"].get("CPU", 0.0)} for n in ray.nodes() if n["Alive"]]
        gpu_probe = ray.get(_fake_gpu_probe.options(num_gpus=GPU_PER_TRAINER).remote())
        config = FabrayConfig.model_validate(_config(models))
        summary = train_models(prepare_run(data, out, config))
        workers = list_actors(filters=[("class_name", "=", "RayTrainWorker")], detail=True,
                              limit=1000, raise_on_missing_output=False)
        return {
            "nodes": nodes,
            "trainer_nodes": sorted({a.node_id for a in workers}),
            "trainer_count": len(workers),
            "gpu_probe": gpu_probe,
            "manifest": summary.manifest,
            "run_dir": str(summary.run_dir),
        }
    finally:
        ray.shutdown()
        cluster.shutdown()


def _main(argv: list[str]) -> int:
    from fabray.data.io import write_table
    from fabray.data.simulate import simulate_preset

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True, help="where the tiny fab (seed 5) is written")
    parser.add_argument("--runs", required=True)
    parser.add_argument("--result", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runs = Path(args.runs)
    data = write_table(simulate_preset("tiny", seed=5), Path(args.data))
    two_nodes = [{"cpus": 2, "gpus": 1}, {"cpus": 2, "gpus": 1}]
    result = {"multi": _train_on(two_nodes, data, runs / "multi", MODELS)}
    result["single"] = _train_on([{"cpus": 2, "gpus": 1}], data, runs / "single", ("rule",))
    Path(args.result).write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))


# ---------------------------------------------------------------------------- the test


def _shape(value: Any) -> Any:
    """The structure of a JSON value: dict keys (recursively) and leaf types, not values."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return "list"
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__


def _isolated_job(work: Path, stop: threading.Event) -> tuple[int, Path, Path]:
    """This file as a script, with its own clusters: (exit code, result file, log)."""
    from _local_clusters import ray_temp_dir, run_isolated

    result, log = work / "result.json", work / "subprocess.log"
    with ray_temp_dir("fbr-mn-") as ray_tmp:
        proc = run_isolated([__file__, "--data", str(work / "tiny.parquet"), "--runs", str(work / "runs"),
                             "--result", str(result)], ray_tmp, log, timeout_s=1500, stop=stop)
    return proc.returncode, result, log


ISOLATED_JOB = _isolated_job  # run in the background, started early (conftest.py)


@pytest.fixture(scope="module")
def multinode_result(isolated_runs) -> dict[str, Any]:
    from _local_clusters import log_tail

    code, result, log = isolated_runs.result(__name__, _isolated_job)
    assert code == 0 and result.is_file(), f"multi-node run failed:\n{log_tail(log)}"
    return json.loads(result.read_text())


def test_two_fake_gpu_nodes_both_run_trainers(multinode_result):
    multi = multinode_result["multi"]
    assert len(multi["nodes"]) == 2
    assert all(n["gpus"] == 1.0 for n in multi["nodes"])
    assert multi["trainer_count"] >= len(MODELS)  # one single-worker trainer per model
    assert set(multi["trainer_nodes"]) == {n["node_id"] for n in multi["nodes"]}


def test_fake_gpu_is_assigned_by_ray_and_invisible_to_tensorflow(multinode_result):
    probe = multinode_result["multi"]["gpu_probe"]
    assert probe["ray_gpu_ids"] and probe["cuda_visible_devices"] == ",".join(probe["ray_gpu_ids"])
    assert probe["tf_gpus"] == []  # so training falls back to the CPU (and float32)


def test_every_model_trained_on_a_gpu_fraction_in_float32(multinode_result):
    manifest = multinode_result["multi"]["manifest"]
    assert manifest["status"] == "complete"
    assert manifest["cluster"]["use_gpu"] is True
    assert manifest["cluster"]["resources"]["GPU"] == 2.0
    assert manifest["cluster"]["concurrent_trainers"] == 2
    assert set(manifest["models"]) == set(MODELS)
    for name, entry in manifest["models"].items():
        assert entry["status"] == "ok", (name, entry.get("error"))
        assert entry["resources"] == {"CPU": 0.5, "GPU": GPU_PER_TRAINER}
        assert entry["precision"] == "float32"  # the fake GPU is invisible to TensorFlow
        assert entry["epochs_run"] == 1
        run = Path(multinode_result["multi"]["run_dir"])
        for key in ("model", "history", "preprocessing", "config"):
            assert (run / entry[key]).is_file(), (name, key)


def test_multi_node_manifest_has_the_single_node_structure(multinode_result):
    multi = multinode_result["multi"]["manifest"]
    single = multinode_result["single"]["manifest"]
    assert single["status"] == "complete" and len(multinode_result["single"]["nodes"]) == 1
    assert _shape({k: v for k, v in multi.items() if k != "models"}) == \
        _shape({k: v for k, v in single.items() if k != "models"})
    reference = _shape(single["models"]["rule"])
    for name, entry in multi["models"].items():
        assert _shape(entry) == reference, name
