"""Integration tests share one small local Ray cluster for the whole session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray with 2 CPUs and a small object store; shut down after the session."""
    import ray

    ray.init(
        address="local",
        num_cpus=2,
        object_store_memory=300 * 1024**2,
        include_dashboard=False,
        log_to_driver=False,
        ignore_reinit_error=True,
    )
    yield ray
    ray.shutdown()
