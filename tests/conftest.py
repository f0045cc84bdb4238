"""Shared test set-up: the environment every test process starts with. Markers and the import
mode are in pyproject.toml ([tool.pytest.ini_options])."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# Ray Train's controller polls its workers every 2 s by default, so each training ends up to 2 s
# after its last epoch; the tests train a dozen tiny runs.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
# The integration tests share 2 cores with the unit tests (make test: two xdist workers) and
# with the isolated clusters running in the background: give Ray Train's workers time to start.
os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "300")
# Ray Train starts a preemption watcher actor per trainer (cloud spot-node notices; none on this
# machine): one process and ~1.5 CPU-s per model trained, and the suite trains about 35.
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """With `--dist loadgroup`, keep each integration group on one worker (`_xdist_groups`)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from _xdist_groups import group_of
    from xdist.scheduler import LoadScopeScheduling

    class IntegrationGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid) or nodeid

    return IntegrationGroups(config, log)
