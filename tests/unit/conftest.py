"""Unit tests are fast and Ray-free: starting Ray here is a bug in the test.

`make_run` (tests/unit/run_factory.py, also a fixture here) is the one way unit tests build a run
directory (issue 10)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.run_factory import make_run as _make_run


@pytest.fixture(autouse=True)
def _forbid_ray_init(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is a dependency
        return

    def refuse(*args, **kwargs):
        raise RuntimeError("unit tests must not start Ray; move this test to tests/integration")

    monkeypatch.setattr(ray, "init", refuse)


@pytest.fixture(scope="session")
def make_run() -> Callable[..., Path]:
    """`make_run(path, models=None, *, files=None, extra=None, checksums=False, valid=True)`:
    a run directory written by fabray's own manifest writer (see tests/unit/run_factory.py)."""
    return _make_run
