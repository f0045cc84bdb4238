"""The Ray Train backend of fabray's single-worker `TensorflowTrainer`s: what Ray's own
`TensorflowConfig` does (TF_CONFIG and TF_USE_LEGACY_KERAS set in the worker before the loop
runs), defined in a module that does not import TensorFlow.

Ray's `TensorflowConfig` lives in the `ray.train.tensorflow` package, whose `__init__` imports
TensorFlow. Every trainer's controller actor unpickles the backend config, so with Ray's class
each controller loaded a TensorFlow it never uses: about 4.6 CPU-seconds and 0.9 GB of resident
memory per model trained (live controllers, 2026-11-30, Ray 2.60, 2 cores).
`benchmarks/trainer_backend.py` measures the unpickling alone against Ray's class in one run:
3.12 vs 0.0014 CPU-s and 586 vs 0.1 MB resident (load 1.2). The worker imports TensorFlow
anyway, for the model.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from ray._common.network_utils import build_address
from ray.train._internal.utils import get_address_and_port
from ray.train.backend import Backend, BackendConfig
from ray.train.v2._internal.util import TrainingFramework


def _worker_url() -> str:
    return build_address(*get_address_and_port())


def _setup_tensorflow_environment(worker_addresses: list[str], index: int) -> None:
    """In the worker: the distributed-TensorFlow settings Ray's TensorFlow backend writes."""
    os.environ["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": worker_addresses},
        "task": {"type": "worker", "index": index},
    })
    os.environ["TF_USE_LEGACY_KERAS"] = "1"


class _TensorflowBackend(Backend):
    def on_start(self, worker_group, backend_config: BackendConfig) -> None:  # noqa: ANN001 - Ray's type
        import ray

        urls = worker_group.execute(_worker_url)
        ray.get([
            worker_group.execute_single_async(i, _setup_tensorflow_environment, worker_addresses=urls, index=i)
            for i in range(len(worker_group))
        ])


@dataclass
class TensorflowBackendConfig(BackendConfig):
    """`TensorflowTrainer(..., tensorflow_config=TensorflowBackendConfig())`."""

    @property
    def backend_cls(self):  # noqa: ANN201 - Ray's property
        return _TensorflowBackend

    @property
    def framework(self) -> TrainingFramework:
        return TrainingFramework.TENSORFLOW

    def to_dict(self) -> dict:
        return {}
