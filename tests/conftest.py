"""Shared test set-up: the environment every test process starts with. Markers and the import
mode are in pyproject.toml ([tool.pytest.ini_options])."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
