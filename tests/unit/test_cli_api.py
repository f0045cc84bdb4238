"""`fabray train / ensemble / evaluate` are thin shells over `fabray.api.Forecaster` (issue 16
item 1): the CLI parses flags and prints; the API does the work. No Ray, no TensorFlow here: the
API's methods (or, for the API's own orchestration, the driver and Ray session) are replaced."""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from fabray.api import Forecaster
from fabray.cli import main
from fabray.data.io import SqlSource
from fabray.errors import BadInputError
from fabray.train.driver import RunSummary


def _summary(run_dir: Path, failed: list[str]) -> RunSummary:
    entry = {"status": "failed", "error": "boom"} if failed else {"status": "done"}
    manifest = {"status": "failed" if failed else "complete", "task": {"task": "event"}, "models": {"lstm": entry}}
    return RunSummary(run_dir=run_dir, manifest=manifest, failed=failed)


@pytest.fixture()
def fake_train(monkeypatch, tmp_path):
    """Forecaster.train replaced: records what the CLI hands it."""
    calls: list[dict] = []
    outcome = {"failed": []}

    def train(cls, data, out, models=None, config=None, epochs=None, **kwargs):
        calls.append({"data": data, "out": out, "models": models, "config": config, "epochs": epochs, **kwargs})
        return cls(out, summary=_summary(Path(out).resolve(), outcome["failed"]))

    monkeypatch.setattr(Forecaster, "train", classmethod(train))
    return calls, outcome


def test_cli_train_hands_the_parsed_flags_to_the_api(fake_train, tmp_path, capsys):
    calls, _ = fake_train
    out = tmp_path / "r1"
    code = main(["train", "--data", "fab.parquet", "--out", str(out), "--models", "lstm, rule",
                 "--epochs", "3", "--budget", "60m", "--num-cpus", "2", "--use-gpu", "false",
                 "--address", "ray://head:10001", "--config", "c.yaml", "--mlflow", "sqlite:///m.db"])
    assert code == 0
    (call,) = calls
    assert call == {
        "data": Path("fab.parquet"), "out": str(out), "models": ["lstm", "rule"], "config": "c.yaml",
        "epochs": 3, "use_gpu": "false", "budget": "60m", "mlflow": "sqlite:///m.db",
        "address": "ray://head:10001", "num_cpus": 2, "worker_logs": False, "check": False,
    }
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("model") and printed[1].startswith("lstm")  # RunSummary.table()
    assert printed[-1] == f"run: {out.resolve()} (complete)"


def test_cli_train_sql_data_and_verbose(fake_train, tmp_path):
    calls, _ = fake_train
    assert main(["-v", "train", "--data", "sqlite:///fab.db", "--table", "oht", "--out", str(tmp_path / "r")]) == 0
    (call,) = calls
    assert call["data"] == SqlSource("sqlite:///fab.db", table="oht")
    assert call["models"] is None and call["epochs"] is None and call["worker_logs"] is True


def test_cli_train_failed_run_exits_1_and_prints_the_table(fake_train, tmp_path, capsys):
    _, outcome = fake_train
    outcome["failed"] = ["lstm"]
    assert main(["train", "--data", "fab.parquet", "--out", str(tmp_path / "r")]) == 1
    out = capsys.readouterr().out
    assert "lstm failed: boom" in out and out.rstrip().endswith("(failed)")


@pytest.mark.parametrize("flags, message", [
    (["--models", " , "], "--models names no model"),
    (["--num-cpus", "0"], "--num-cpus must be >= 1"),
])
def test_cli_train_flag_errors_exit_2_before_the_api(fake_train, tmp_path, capsys, flags, message):
    calls, _ = fake_train
    assert main(["train", "--data", "fab.parquet", "--out", str(tmp_path / "r"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert calls == []


def test_cli_ensemble_calls_the_api(monkeypatch, tmp_path, capsys):
    seen = {}

    def ensemble(self, trials=None, **kwargs):
        seen.update(run_dir=self.run_dir, trials=trials, **kwargs)
        return SimpleNamespace(table=lambda: "TRIALS", run_dir=self.run_dir, winner="trial_0003")

    monkeypatch.setattr(Forecaster, "ensemble", ensemble)
    run = tmp_path / "r1"
    assert main(["ensemble", "--run", str(run), "--trials", "8", "--search", "random", "--seed", "5",
                 "--num-cpus", "2", "--train-data", "t.parquet"]) == 0
    assert seen == {"run_dir": run.resolve(), "trials": 8, "search": "random", "seed": 5, "config": None,
                    "train_data": "t.parquet", "address": None, "num_cpus": 2}
    assert capsys.readouterr().out.splitlines() == [
        "TRIALS",
        f"ensemble: {run.resolve() / 'ensemble.json'} (winner trial_0003); trials: "
        f"{run.resolve() / 'ensemble_trials.csv'}",
    ]


@pytest.mark.parametrize("mlflow_run", [None, {"run_id": "abc123", "uri": "sqlite:///m.db"}])
def test_cli_evaluate_calls_the_api(monkeypatch, tmp_path, capsys, mlflow_run):
    import fabray.evaluate

    seen = {}

    def evaluate(self, test_data, report_dir=None, **kwargs):
        seen.update(run_dir=self.run_dir, test_data=test_data, report_dir=report_dir, **kwargs)
        self.last_evaluation = "RESULT"
        self.last_mlflow_run = mlflow_run
        return {"headline": "lead_score"}

    monkeypatch.setattr(Forecaster, "evaluate", evaluate)
    monkeypatch.setattr(fabray.evaluate, "leaderboard_text", lambda result: f"LEADERBOARD of {result}")
    run = tmp_path / "r1"
    assert main(["evaluate", "--run", str(run), "--data", "test.parquet", "--json", "e.json",
                 "--report", "rep", "--config", "c.yaml"]) == 0
    assert seen == {"run_dir": run.resolve(), "test_data": Path("test.parquet"), "report_dir": "rep",
                    "json_path": "e.json", "config": "c.yaml", "train_data": None, "mlflow": None}
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "LEADERBOARD of RESULT"
    if mlflow_run is None:
        assert len(lines) == 1
    else:
        assert lines[1] == "mlflow: evaluation run abc123 at sqlite:///m.db"


def test_cli_evaluate_bad_data_source_exits_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(Forecaster, "evaluate", lambda *a, **k: pytest.fail("the API must not be called"))
    assert main(["evaluate", "--run", str(tmp_path), "--data", "t.parquet", "--table", "oht"]) == 2
    assert "fabray evaluate: error:" in capsys.readouterr().err


# ---------------------------------------------------------------------------- the API's orchestration


@pytest.fixture()
def no_ray(monkeypatch):
    """prepare_run / train_models / ray_session replaced: records the job the API prepares."""
    import fabray.ray_session
    import fabray.train.driver as driver
    import fabray.train.prepare

    seen: dict = {"failed": []}

    def prepare_run(data, out, config):
        seen.update(data=data, out=out, config=config)
        return SimpleNamespace(data_info={}, out=Path(out).resolve())

    def train_models(job, can_autoscale):
        seen["can_autoscale"] = can_autoscale
        return _summary(job.out, seen["failed"])

    @contextlib.contextmanager
    def ray_session(address=None, num_cpus=None, *, worker_logs=False):
        seen.update(address=address, num_cpus=num_cpus, worker_logs=worker_logs)
        yield SimpleNamespace(joined=False)

    monkeypatch.setattr(fabray.train.prepare, "prepare_run", prepare_run)
    monkeypatch.setattr(driver, "train_models", train_models)
    monkeypatch.setattr(fabray.ray_session, "ray_session", ray_session)
    return seen


def test_api_train_applies_the_overrides_once(no_ray, tmp_path):
    fc = Forecaster.train(tmp_path / "fab.parquet", tmp_path / "r1", models=["lstm"], epochs=2,
                          config={"train": {"batch_size": 64}}, budget="1h30m", use_gpu="false",
                          num_cpus=1, worker_logs=True)
    cfg = no_ray["config"]
    assert cfg.train.models == ("lstm",) and cfg.train.epochs == 2 and cfg.train.batch_size == 64
    assert cfg.train.budget_min == 90 and cfg.train.use_gpu == "false"
    assert no_ray["data"] == tmp_path / "fab.parquet"
    assert (no_ray["num_cpus"], no_ray["worker_logs"], no_ray["can_autoscale"]) == (1, True, False)
    assert fc.run_dir == (tmp_path / "r1").resolve() and fc.summary.ok


def test_api_train_every_model_failed(no_ray, tmp_path):
    no_ray["failed"] = ["lstm"]
    with pytest.raises(RuntimeError, match="every model failed"):
        Forecaster.train(tmp_path / "fab.parquet", tmp_path / "r1")
    fc = Forecaster.train(tmp_path / "fab.parquet", tmp_path / "r2", check=False)
    assert fc.summary.manifest["status"] == "failed"


def test_api_train_bad_input_before_any_work(no_ray, tmp_path):
    with pytest.raises(BadInputError, match="num_cpus must be >= 1"):
        Forecaster.train(tmp_path / "fab.parquet", tmp_path / "r1", num_cpus=0)
    with pytest.raises(BadInputError, match="models names no model"):
        Forecaster.train(tmp_path / "fab.parquet", tmp_path / "r1", models=[" "])
    assert "config" not in no_ray  # prepare_run never reached
