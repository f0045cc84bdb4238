"""Which worker runs which integration module under `make test` (pytest-xdist, `-n 3 --dist
loadgroup`): the unit tests spread over the workers one test at a time, and the integration
modules in two groups, each group run in file order by one worker with its own session Ray.

Modules using the session's tiny run are in group 1 (so it is trained once); group 2 holds the
other long modules and those with an isolated run (`ISOLATED_JOB`, started in the background
with the group's first test). Decided from the test's node id alone: xdist's scheduler sees
nothing else. (xdist's own `xdist_group` marker renames node ids, which pytest 9 no longer
allows; tests/conftest.py installs a scheduler that groups with `group_of` instead.)
"""

from __future__ import annotations

GROUP_2 = frozenset({
    "test_ensemble_forms", "test_mlflow", "test_retrain",
    "test_autoscaling", "test_job_submit", "test_multinode", "test_train_faults",  # isolated runs
})


def group_of(nodeid: str) -> str | None:
    """The integration group of a test (None for a unit test)."""
    path = nodeid.split("::", 1)[0]
    if not path.startswith("tests/integration/"):
        return None
    module = path.rsplit("/", 1)[-1].removesuffix(".py")
    return "integration-2" if module in GROUP_2 else "integration-1"
