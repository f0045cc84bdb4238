"""Session fixtures of the integration tests: one local Ray, one tiny trained run.

Everything here is made once per pytest session and shared by every module that asks for it;
treat what they return as read-only (copy a run before changing it: `_tiny_run.copy_run`).

- `ray_cluster`: a local Ray with 2 CPUs and a small object store, shut down after the session.
  Modules that need a special cluster (several nodes, autoscaling, a dashboard, a job head) start
  theirs in a subprocess with `_local_clusters` and never meet this one.
- `tiny_data`: the tiny simulated fab (`simulate_preset("tiny", seed=3)`) as Parquet.
- `tiny_config`: a YAML config file with `_tiny_run.TINY_CONFIG` (two small models, lstm and
  rule, half a CPU each so both train at once, 2 epochs).
- `tiny_run`: `fabray train --data tiny_data --config tiny_config` run once through the CLI, as
  a `TinyRun(code, run, data, config)`; `run` is a directory named `r1` with no ensemble. Used
  by test_train, test_serve and (through `tiny_ensemble_run`) test_ensemble_evaluate.
- `tiny_ensemble_run`: a copy of `tiny_run` on which `fabray ensemble --trials 4 --seed 1` ran.
- `isolated_runs`: modules that need a cluster of their own (multi-node, autoscaling, a killed
  worker, a job head) declare `ISOLATED_JOB`; those of an xdist group (`_xdist_groups`) start
  with the group's first test in this process, one at a time in a background thread, and the
  modules run last (`_local_clusters.IsolatedRuns`). They are all in group 2: one chain at a
  time (two at once overloaded 2 cores).

Names here are stable: other modules may use them. (The helper modules `_tiny_run` and
`_local_clusters` are importable because pyproject's pytest `pythonpath` lists this folder.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from _local_clusters import IsolatedRuns
from _tiny_run import TINY_CONFIG, TinyRun, copy_run
from _xdist_groups import group_of

_ISOLATED = pytest.StashKey[IsolatedRuns]()
_STARTED_GROUPS = pytest.StashKey[set]()


def _isolated(config: pytest.Config) -> IsolatedRuns:
    runs = config.stash.get(_ISOLATED, None)
    if runs is None:
        factory = config._tmp_path_factory  # the factory behind the tmp_path_factory fixture
        runs = config.stash[_ISOLATED] = IsolatedRuns(lambda name: factory.mktemp(name))
    return runs


def _has_isolated_job(item: pytest.Item) -> bool:
    return getattr(getattr(item, "module", None), "ISOLATED_JOB", None) is not None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules with an isolated run go last: their runs go on in the background meanwhile."""
    items[:] = [i for i in items if not _has_isolated_job(i)] + [i for i in items if _has_isolated_job(i)]


def pytest_runtest_setup(item: pytest.Item) -> None:
    """At the first test of an integration group in this process, start the isolated run of
    every module of that group that has one (one at a time, in the background)."""
    group = group_of(item.nodeid)
    started = item.config.stash.setdefault(_STARTED_GROUPS, set())
    if group is None or group in started:
        return
    started.add(group)
    runs = _isolated(item.config)
    for other in item.session.items:
        if _has_isolated_job(other) and group_of(other.nodeid) == group:
            runs.schedule(other.module.__name__, other.module.ISOLATED_JOB)


def pytest_sessionfinish(session: pytest.Session) -> None:
    runs = session.config.stash.get(_ISOLATED, None)
    if runs is not None:
        runs.close()


@pytest.fixture(scope="session")
def isolated_runs(request: pytest.FixtureRequest) -> IsolatedRuns:
    """Runs of modules that need a cluster of their own (`_local_clusters.IsolatedRuns`)."""
    return _isolated(request.config)


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


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    from fabray.data.io import write_table
    from fabray.data.simulate import simulate_preset

    path = tmp_path_factory.mktemp("tiny_data") / "tiny.parquet"
    write_table(simulate_preset("tiny", seed=3), path)
    return path


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny_cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_CONFIG))
    return path


@pytest.fixture(scope="session")
def tiny_run(ray_cluster, tiny_data, tiny_config, tmp_path_factory) -> TinyRun:
    """The tiny run, trained once per session through the CLI (tests assert on `code`)."""
    from fabray.cli import main

    run = tmp_path_factory.mktemp("tiny_runs") / "r1"
    code = main(["train", "--data", str(tiny_data), "--out", str(run), "--config", str(tiny_config)])
    return TinyRun(code, run, tiny_data, tiny_config)


@pytest.fixture(scope="module")
def data_file(tiny_data) -> Path:
    """The session's tiny data file (serve and feed modules read it by this name)."""
    return tiny_data


@pytest.fixture(scope="module")
def trained_run(tiny_run) -> Path:
    """The session's tiny run directory, trained (test_train overrides this with (code, run))."""
    assert tiny_run.code == 0, "the session's tiny run did not train"
    return tiny_run.run


@pytest.fixture(scope="session")
def tiny_ensemble_run(tiny_run, tmp_path_factory) -> Path:
    """A copy of the tiny run with a fitted ensemble (`fabray ensemble --trials 4 --seed 1`)."""
    from fabray.cli import main

    assert tiny_run.code == 0, "the tiny run did not train"
    run = copy_run(tiny_run.run, tmp_path_factory.mktemp("tiny_ens_runs") / "r1")
    assert main(["ensemble", "--run", str(run), "--trials", "4", "--seed", "1"]) == 0
    return run
