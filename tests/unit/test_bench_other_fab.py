"""benchmarks/other_fab.py: an independent generator of contract data (issue 11, "Done when").

Only the generator and the files it writes; no training (the full pipeline is the benchmark's
`--run`).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from fabray import schema
from fabray.config import load_config
from fabray.data.validate import load_validated

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "other_fab.py"


@pytest.fixture(scope="module")
def other_fab():
    spec = importlib.util.spec_from_file_location("other_fab_bench", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def written(other_fab, tmp_path_factory):
    out = tmp_path_factory.mktemp("other_fab")
    data, config, rate = other_fab.write(out, days=3, seed=11)
    return data, config, rate


def test_generator_imports_nothing_from_fabray():
    lines = [line.strip() for line in _PATH.read_text().splitlines()]
    assert not [line for line in lines if line.startswith(("import fabray", "from fabray"))]


def test_frame_passes_the_validator_without_plan_or_cause(other_fab, written):
    data, _, _ = written
    clean = load_validated(data)
    assert list(clean.columns) == list(schema.COLUMNS)  # nothing optional: no plan, no cause
    raw = other_fab.generate(days=3, seed=11)
    assert not set(raw.columns) & set(schema.OPTIONAL_COLUMNS)
    assert set(raw.columns) == set(schema.COLUMNS)
    assert sorted(clean[schema.ZONE].unique()) == list(other_fab.BAYS)
    assert not any(z.startswith("Z0") for z in other_fab.BAYS)
    # units and bounds
    for name in schema.COUNT_FEATURES:
        values = clean[name].to_numpy()
        assert (values >= 0).all() and np.array_equal(values, np.round(values)), name
    for name in schema.FRACTION_FEATURES:
        assert clean[name].between(0, 1).all(), name
    empty = clean[schema.TRANSPORT_TIME].isna().to_numpy()
    assert np.array_equal(empty, clean["completions"].to_numpy() == 0)
    assert clean[schema.TIMESTAMP].min() == np.datetime64(other_fab.START)


def test_generator_is_seeded(other_fab):
    a = other_fab.generate(days=1, seed=3)
    b = other_fab.generate(days=1, seed=3)
    c = other_fab.generate(days=1, seed=4)
    assert a.equals(b) and not a.equals(c)


def test_delay_events_at_a_realistic_rate(written):
    _, _, rate = written
    assert 0.03 <= rate["event_rate"] <= 0.2, rate
    assert rate["episodes"] >= 10, rate


def test_config_loads_with_the_site_topology(other_fab, written):
    _, config_path, _ = written
    config = load_config(config_path)
    assert config.site.shift_changes == ("07:00", "19:00")
    topology = config.site.topology
    assert isinstance(topology, dict) and sorted(topology) == list(other_fab.BAYS)
    assert topology["BAY-C"] == ["BAY-B", "BAY-D", "BAY-E"]
    for bay, near in topology.items():  # symmetric, not a ring (the ends have one neighbour)
        assert all(bay in topology[n] for n in near)
    assert len(topology["BAY-A"]) == 1
    assert config.train.epochs == 4 and config.train.batch_size == 256
    assert config.train.resources.cpus == 0.5
