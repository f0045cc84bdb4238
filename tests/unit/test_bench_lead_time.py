"""benchmarks/lead_time.py on a tiny case: the JSON structure and the DESIGN §8 `lead` keys.
No timing and no quality is asserted."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from fabray.evaluate.baselines import gbt_available

REPO_ROOT = Path(__file__).resolve().parents[2]

#: The `lead` object of DESIGN §8.
LEAD_KEYS = {
    "episodes", "warned_at_start", "warned_before_onset", "warned_5min_before_onset",
    "median_lead_min", "false_alarm_runs_per_zone_day", "lead_score",
}
CAUSE_KEYS = {"episodes", "warned_at_start", "warned_before_onset", "warned_5min_before_onset"}


def _load():
    spec = importlib.util.spec_from_file_location("lead_time_benchmark", REPO_ROOT / "benchmarks" / "lead_time.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load()


@pytest.fixture(scope="module")
def doc(bench):
    family = "gbt" if gbt_available() else "rule"
    return bench.run(seeds=(301,), zones=2, days=2, models=(family,), variants=("none", "all"),
                     early_warning=(5,), epochs=1, train_windows=2_000, progress=False)


def test_lead_keys_match_the_module(bench):
    assert set(bench.LEAD_KEYS) == LEAD_KEYS


def test_json_structure(bench, doc):
    json.dumps(doc, allow_nan=False)  # NaN already mapped to null
    assert {"machine", "versions", "arguments", "rows", "aggregate", "data", "wall_s"} <= set(doc)
    machine = doc["machine"]
    assert machine["cpu_count"] >= 1
    assert len(machine["loadavg_start"]) == 3 and len(machine["loadavg_end"]) == 3
    assert {"numpy", "keras", "fabray"} <= set(doc["versions"])
    args = doc["arguments"]
    assert args["seeds"] == [301] and args["zones"] == 2 and args["days"] == 2
    trained = ["gbt"] if gbt_available() else ["rule"]
    models = {r["model"] for r in doc["rows"]}
    assert models == {*bench.BASELINES, *trained}
    # one row per seed x early_warning x variant x model, and one mean per group
    assert len(doc["rows"]) == 1 * 1 * 2 * len(models)
    assert len(doc["aggregate"]) == 1 * 2 * len(models)
    assert {(a["variant"], a["model"]) for a in doc["aggregate"]} == {(v, m) for v in ("none", "all") for m in models}
    # the variants differ in their inputs: "all" has context columns, "none" has none
    widths = {d["variant"]: d["n_features"] for d in doc["data"]}
    assert widths["none"] == 12 and widths["all"] > 12


def test_every_lead_object_has_the_design_keys(doc):
    objects = [r["lead"] for r in doc["rows"]] + [a["lead"] for a in doc["aggregate"]]
    assert objects
    for lead in objects:
        assert LEAD_KEYS <= set(lead), sorted(LEAD_KEYS - set(lead))


def test_rows_carry_threshold_f1_prauc_and_causes(doc):
    for row in doc["rows"]:
        assert {"seed", "early_warning", "variant", "model", "threshold", "f1", "pr_auc", "by_cause",
                "by_cause_group"} <= set(row)
        assert set(row["by_cause_group"]) <= {"foreseeable", "other", "unknown"}
        for counts in (*row["by_cause"].values(), *row["by_cause_group"].values()):
            assert CAUSE_KEYS <= set(counts)
        # cause counts add up to the episode count
        assert sum(c["episodes"] for c in row["by_cause"].values()) == row["lead"]["episodes"]
        assert sum(c["episodes"] for c in row["by_cause_group"].values()) == row["lead"]["episodes"]
        if row["model"] == "persistence":
            assert row["threshold"] == 0.5 and row["val_lead_score"] is None


def test_table_prints_every_group(bench, doc):
    text = bench.table(doc)
    assert text.count("\n") >= len(doc["aggregate"]) + 1
    best = bench.best_group(doc)
    if best is not None:
        assert "cause" in bench.cause_table(doc, best[0], best[1])


def test_means_are_finite_or_null(doc):
    for a in doc["aggregate"]:
        for value in a["lead"].values():
            assert value is None or math.isfinite(value)
