"""fabray's Ray Train backend config does what Ray's TensorflowConfig does, without importing
TensorFlow where it is unpickled (every trainer's controller actor)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def test_importing_the_backend_does_not_import_tensorflow():
    code = ("import sys, pickle, fabray.train.backend as b; pickle.loads(pickle.dumps(b.TensorflowBackendConfig()));"
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_the_worker_environment_is_rays_tensorflow_one(monkeypatch):
    from ray.train.tensorflow.config import TensorflowConfig, _setup_tensorflow_environment

    from fabray.train.backend import TensorflowBackendConfig, _setup_tensorflow_environment as ours

    addresses = ["10.0.0.1:1234", "10.0.0.2:5678"]
    seen = []
    for setup in (_setup_tensorflow_environment, ours):
        monkeypatch.delenv("TF_CONFIG", raising=False)
        monkeypatch.delenv("TF_USE_LEGACY_KERAS", raising=False)
        setup(worker_addresses=addresses, index=1)
        seen.append((json.loads(os.environ["TF_CONFIG"]), os.environ["TF_USE_LEGACY_KERAS"]))
    assert seen[0] == seen[1]
    assert TensorflowBackendConfig().framework == TensorflowConfig().framework
    assert TensorflowBackendConfig().to_dict() == TensorflowConfig().to_dict() == {}


@pytest.mark.parametrize("workers", [1, 2])
def test_on_start_sets_every_worker_up_with_the_group_addresses(workers, monkeypatch):
    from fabray.train import backend

    calls = []

    class Group:
        def __len__(self):
            return workers

        def execute(self, fn):
            return [f"host{i}:{i}" for i in range(workers)]

        def execute_single_async(self, i, fn, **kwargs):
            calls.append((i, fn, kwargs))
            return i

    monkeypatch.setattr("ray.get", lambda refs: refs)
    backend._TensorflowBackend().on_start(Group(), backend.TensorflowBackendConfig())
    urls = [f"host{i}:{i}" for i in range(workers)]
    assert calls == [(i, backend._setup_tensorflow_environment, {"worker_addresses": urls, "index": i})
                     for i in range(workers)]
