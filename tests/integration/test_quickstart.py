"""examples/quickstart.py, run as a user would through the Python API (`fabray.Forecaster`) on
the session's local Ray: the returned objects, the run's files (TensorBoard event files for
every model included), the prediction frame and the evaluation JSON.

One run of the example (module fixture, ~2-4 minutes here) is shared by the checks.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("fabray_quickstart_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example():
    return _load_example()


@pytest.fixture(scope="module")
def outcome(ray_cluster, example, tmp_path_factory):
    """(working directory, what quickstart() returned); the session's Ray is reused."""
    out = tmp_path_factory.mktemp("quickstart")
    result = example.quickstart(out, epochs=1, trials=2)
    example.report(result, out)  # the script's printed lines work on what it returned
    return out, result


def test_the_run_holds_models_manifest_ensemble_and_tensorboard_files(outcome, example):
    out, result = outcome
    fc = result["forecaster"]
    assert fc.summary.ok and result["fit"].winner
    manifest = json.loads((fc.run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert set(manifest["models"]) == set(example.MODELS) == set(fc.model_names)
    assert fc.has_ensemble and (fc.run_dir / "ensemble.json").is_file()
    for name in example.MODELS:
        assert (fc.run_dir / manifest["models"][name]["model"]).is_file()
        board = fc.run_dir / "models" / name / "tensorboard"
        events = sorted(board.rglob("events.out.tfevents.*"))
        assert events, f"no TensorBoard events file for {name} under {board}"
        assert any(p.parent.name == "train" for p in events) and any(p.parent.name == "validation" for p in events)
    assert (out / "r1.eval.json").is_file()


def test_predict_returns_scores_probability_and_decision_per_window(outcome):
    import pandas as pd

    from fabray.data.simulate import simulate_preset

    _, result = outcome
    from fabray import Forecaster

    fc = Forecaster.load(result["forecaster"].run_dir)  # a run opened again, as in a new process
    frame = simulate_preset("tiny", seed=103)
    every = fc.predict(frame)
    expected = ["zone", "end_time", *[f"score_{n}" for n in fc.model_names], "probability", "threshold", "decision"]
    assert list(result["predictions"].columns) == expected and len(result["predictions"]) == len(every)
    assert list(every.columns) == expected
    assert len(every) > 1000 and set(every["zone"]) == set(frame["zone"])
    assert pd.api.types.is_datetime64_any_dtype(every["end_time"])
    assert every["probability"].between(0, 1).all() and every["decision"].dtype == bool
    assert (every["decision"] == (every["probability"] >= every["threshold"])).all()

    latest = fc.predict(frame, latest=True)
    assert len(latest) == frame["zone"].nunique()
    last = frame.groupby("zone")["timestamp"].max()
    assert all(latest.set_index("zone")["end_time"][z] == last[z] for z in latest["zone"])
    static = fc.predict(frame, latest=True, ensemble="static")
    assert list(static.columns) == expected


def test_evaluate_returns_the_evaluate_json(outcome):
    out, returned = outcome
    fc, result = returned["forecaster"], returned["evaluation"]
    assert json.loads((out / "r1.eval.json").read_text()) == json.loads(json.dumps(result))  # = --json
    for key in ("models", "ensemble", "static_ensemble", "baselines", "headline", "leaderboard", "roi"):
        assert key in result, key
    assert result["headline"] == "lead_score"
    assert set(result["models"]) == set(fc.model_names)
    for name, metrics in [*result["models"].items(), ("ensemble", result["ensemble"]),
                          ("static_ensemble", result["static_ensemble"])]:
        assert "lead" in metrics and "lead_score" in metrics, name
    assert {e["name"] for e in result["leaderboard"]} >= {*fc.model_names, "ensemble"}


def test_bad_input_is_refused_before_any_work(tmp_path):
    from fabray import Forecaster
    from fabray.errors import BadInputError

    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "something").write_text("x")
    with pytest.raises(BadInputError, match="already exists"):
        Forecaster.train(tmp_path / "data.parquet", tmp_path / "r1")
    with pytest.raises(BadInputError, match="DataFrame"):
        Forecaster.train(42, tmp_path / "r2")
    assert not (tmp_path / "r2").exists()
