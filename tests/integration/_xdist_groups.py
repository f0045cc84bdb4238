"""Which worker runs which integration module under `make test` (pytest-xdist, `-n 3 --dist
loadgroup`): the integration modules in three groups, each group run in file order by one worker
with its own session Ray; the unit tests, one test at a time, fill whichever worker is free
(xdist hands out the groups first: they are the largest scopes).

Group 1 holds the modules using the session's tiny run (so it is trained once per session:
test_ensemble_evaluate, test_ensemble_forms, test_feed, test_serve, test_train); groups 2 and 3
the modules that train their own runs or start Ray Train themselves. Every module with an
isolated run (`ISOLATED_JOB`: started in the background with its group's first test, one at a
time per group, the module run last) is in group 2: two isolated chains at once (multinode in
group 3) made the suite slower (19 min 25 s vs 16 min 48 s) and timed test_job_submit out.
Module times of a full run (2026-11-29, 2 cores, load ~15): serve 501 s, retrain 437 s,
backtest 340 s, the isolated chain about 950 s, ensemble_evaluate 198 s, quickstart 179 s,
mlflow 166 s, ensemble_forms 153 s, feed 153 s, ray_windows 71 s. Decided from the test's node id alone: xdist's scheduler sees
nothing else. (xdist's own `xdist_group` marker renames node ids, which pytest 9 no longer
allows; tests/conftest.py installs a scheduler that groups with `group_of` instead.)
"""

from __future__ import annotations

GROUP_2 = frozenset({
    "test_mlflow", "test_retrain",
    "test_autoscaling", "test_job_submit", "test_multinode", "test_train_faults",  # isolated runs
})
GROUP_3 = frozenset({"test_backtest", "test_quickstart", "test_ray_windows"})


def group_of(nodeid: str) -> str | None:
    """The integration group of a test (None for a unit test)."""
    path = nodeid.split("::", 1)[0]
    if not path.startswith("tests/integration/"):
        return None
    module = path.rsplit("/", 1)[-1].removesuffix(".py")
    if module in GROUP_2:
        return "integration-2"
    return "integration-3" if module in GROUP_3 else "integration-1"
