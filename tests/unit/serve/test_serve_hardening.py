"""Issue 15, below the HTTP layer: a store that heals, jobs that end, paths under the data
folders, scores that are never NaN answers, retrain settings that reach the trainer, SIGTERM.

No Ray is started here (building a Serve application needs none)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from fabray.errors import BadInputError
from fabray.serve.store import ConflictError, CorruptArtifactError, ModelStore

from tests.unit.serve.test_serve_store import fake_run


@pytest.fixture
def store(tmp_path) -> ModelStore:
    return ModelStore(tmp_path / "store")


def flip_a_byte(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))


# ------------------------------------------------------------------------------- (8) the store heals


def test_reimporting_an_intact_run_does_not_return_a_damaged_copy(store, tmp_path):
    run = fake_run(tmp_path, "r1")
    assert store.import_run(run) == "v1"
    flip_a_byte(store.run_dir("v1") / "models" / "lstm" / "model.keras")
    assert store.import_run(run) == "v2"
    store.verify("v2")


def test_a_damaged_version_file_hides_nothing_else(store, tmp_path):
    store.import_run(fake_run(tmp_path, "r1"))
    (store.versions_dir / "v1" / "VERSION.json").write_text("{ not json")
    assert store.import_run(fake_run(tmp_path, "r2", b"weights-2")) == "v2"


def test_a_damaged_live_version_falls_back_to_the_newest_intact_one(store, tmp_path):
    for i in (1, 2, 3):
        store.promote(store.import_run(fake_run(tmp_path, f"r{i}", f"w{i}".encode())))
    flip_a_byte(store.run_dir("v3") / "models" / "lstm" / "model.keras")
    flip_a_byte(store.run_dir("v2") / "models" / "lstm" / "model.keras")
    assert store.ensure_intact_live() == "v1"
    assert store.live() == "v1"
    assert "v3 is damaged" in store.pointer()["events"][-1]["reason"]


def test_no_intact_version_is_an_error_naming_the_damaged_file(store, tmp_path):
    store.promote(store.import_run(fake_run(tmp_path, "r1")))
    flip_a_byte(store.run_dir("v1") / "models" / "lstm" / "model.keras")
    with pytest.raises(CorruptArtifactError, match="models/lstm/model.keras does not match its checksum"):
        store.ensure_intact_live()


def test_the_builder_refuses_a_store_with_no_intact_version_before_ray(store, tmp_path):
    from fabray.serve.app import build_app

    store.promote(store.import_run(fake_run(tmp_path, "r1")))
    flip_a_byte(store.run_dir("v1") / "models" / "lstm" / "model.keras")
    with pytest.raises(CorruptArtifactError, match="model.keras"):
        build_app({"store": str(store.root)})


def test_restarting_with_the_same_run_keeps_a_later_promotion(store, tmp_path):
    from fabray.serve.app import build_app

    r1, r2 = fake_run(tmp_path, "r1"), fake_run(tmp_path, "r2", b"weights-2")
    build_app({"store": str(store.root), "run": str(r1)})
    store.promote(store.import_run(r2))
    build_app({"store": str(store.root), "run": str(r1)})  # `fabray serve --run r1` again
    assert store.live() == "v2"
    r3 = fake_run(tmp_path, "r3", b"weights-3")
    build_app({"store": str(store.root), "run": str(r3)})  # a new run still goes live
    assert store.live() == "v3"


def test_an_interrupted_import_leaves_nothing_behind(store, tmp_path):
    (store.versions_dir / ".v7.abc").mkdir()
    (store.versions_dir / ".v7.abc" / "half").write_bytes(b"x")
    store.import_run(fake_run(tmp_path, "r1"))
    assert [p.name for p in store.versions_dir.iterdir()] == ["v1"]


def test_nothing_to_roll_back_to_is_a_conflict(store, tmp_path):
    store.promote(store.import_run(fake_run(tmp_path, "r1")))
    with pytest.raises(ConflictError, match="nothing to roll back to"):
        store.rollback()


# ------------------------------------------------------------------------------- (7) jobs end


def test_jobs_left_running_by_a_crash_are_marked_failed(store):
    from fabray.serve.jobs import count_active, recover_interrupted

    for job_id, status in (("retrain-1", "running"), ("batch-1", "pending"), ("batch-2", "succeeded")):
        store.write_json(store.job_dir(job_id) / "status.json",
                         {"job_id": job_id, "kind": job_id.split("-")[0], "status": status})
    assert count_active(store, "batch") == 1 and count_active(store, "retrain") == 1
    assert sorted(recover_interrupted(store)) == ["batch-1", "retrain-1"]
    status = store.read_json(store.job_dir("retrain-1") / "status.json")
    assert status["status"] == "failed" and "interrupted" in status["error"]
    assert count_active(store, "retrain") == 0


def test_job_errors_are_messages_not_tracebacks(tmp_path):
    from fabray.serve.jobs import public_error

    class Wrapped(Exception):  # what Ray raises: the remote error as `cause`
        def __init__(self, cause):
            super().__init__(f"ray::JobManager (pid=4242, ip=10.0.0.7)\nTraceback ...\n{cause}")
            self.cause = cause

    root = tmp_path / "store"
    assert public_error(Wrapped(BadInputError(f"no job 'x' in {root}/jobs")), root) == "no job 'x' in jobs"
    message = public_error(Wrapped(RuntimeError("disk at /srv/secret")), root)
    assert message == "internal error (RuntimeError); details in the server log"


# ------------------------------------------------------------------------------- (4) paths


def test_client_paths_must_lie_under_the_data_folders(tmp_path):
    from fabray.serve.paths import resolve_under

    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("x")
    (tmp_path / "secret.csv").write_text("x")
    assert resolve_under(str(data / "a.csv"), [data]) == data / "a.csv"
    assert resolve_under("a.csv", [data]) == data / "a.csv"
    for given, fragment in ((str(tmp_path / "secret.csv"), "data folders"), ("../secret.csv", "data folders"),
                            ("", "empty"), ("a\x00b", "usable"), ("x" * 5000, "usable"),
                            ("y" * 300 + ".csv", "usable"), (str(data / "none.csv"), "not found")):
        with pytest.raises(BadInputError, match=fragment):
            resolve_under(given, [data], what="batch path")
    with pytest.raises(BadInputError, match="directory not found"):
        resolve_under("a.csv", [data], kind="dir")


# ------------------------------------------------------------------------------- (2) scores


def test_batch_windows_with_non_finite_scores_are_degraded_or_unscored():
    from fabray.serve.batch import combine_scores

    scores = np.array([[0.2, 0.4], [np.nan, 0.4], [np.nan, np.nan]])
    rules = np.array([0.1, 0.3, np.nan])
    prob, degraded, scored = combine_scores(scores, rules, np.full((3, 2), 0.5), np.zeros(3, bool))
    np.testing.assert_allclose(prob[:2], [0.3, 0.3])
    assert list(degraded) == [False, True, True] and list(scored) == [True, True, False]
    assert np.isnan(prob[2])


def _combine(version, zones, scores, rules, degraded, last_rows=None):
    assert np.isfinite(scores).all() and np.isfinite(rules).all()
    return [{"prediction_id": f"p{i}", "probability": float(rules[i] if d else scores[i].mean()),
             "weights": {}} for i, d in enumerate(degraded)]


def test_a_window_no_model_scores_is_answered_alone():
    from fabray.serve.answers import ScoredBatch, answer

    batch = ScoredBatch(version="v1", run_id="r1", threshold=0.5, model_names=("lstm", "rule"),
                        scores=np.array([[0.2, 0.4], [np.nan, 0.4], [np.nan, np.nan]]),
                        rules=np.array([0.1, 0.3, np.nan]), fired=[[], [], []], fast=np.zeros(3, bool),
                        last_rows=np.zeros((3, 12)))
    answers = answer(batch, ["A", "B", "C"], [(), (), ()], _combine)
    assert answers[0]["degraded"] is False and answers[0]["probability"] == pytest.approx(0.3)
    assert answers[1]["degraded"] is True and answers[1]["scores"] == {"lstm": None, "rule": 0.4}
    assert "no finite score from lstm" in answers[1]["degraded_reasons"][0]
    assert answers[1]["probability"] == pytest.approx(0.3)
    assert set(answers[2]) == {"error"}


# ------------------------------------------------------------------------------- (6) retrain settings


def test_retrain_hands_its_epochs_overrides_and_cut_to_the_retrain_library(tmp_path, monkeypatch):
    """The HTTP retrain calls the retrain library itself: the champion's config (serving settings
    dropped) with serve.retrain_overrides merged in, the epochs, and the holdout cut as `until`
    on the data file it was given (no CLI, no copy of the data)."""
    import types

    import fabray.train.retrain
    from fabray.serve.retrain import _train_challenger

    champion = tmp_path / "champion"
    champion.mkdir()
    (champion / "config.json").write_text(json.dumps({"train": {"epochs": 5, "max_concurrent": 4},
                                                      "serve": {"port": 1}}))
    seen = []

    def fake_retrain_run(parent, data, out, config, **kwargs):
        seen.append((parent, data, out, config, kwargs))
        return types.SimpleNamespace(ok=True, manifest={"status": "ok"}, table=lambda: "table")

    monkeypatch.setattr(fabray.train.retrain, "retrain_run", fake_retrain_run)
    out = tmp_path / "job" / "run"
    _train_challenger(champion, tmp_path / "new.parquet", "2025-01-06T12:00", out, 1,
                      {"train": {"max_concurrent": 1}})
    ((parent, data, got_out, config, kwargs),) = seen
    assert (parent, data, got_out) == (champion, tmp_path / "new.parquet", out)
    assert kwargs == {"epochs": 1, "until": "2025-01-06T12:00"}
    assert (config.train.epochs, config.train.max_concurrent) == (5, 1)
    assert config.serve.port != 1  # serving settings play no part in training
    assert not list(tmp_path.glob("job/*"))  # nothing written beside the run

    monkeypatch.setattr(fabray.train.retrain, "retrain_run",
                        lambda *a, **k: types.SimpleNamespace(ok=False, manifest={"status": "failed"},
                                                                  table=lambda: "table"))
    with pytest.raises(RuntimeError, match="failed"):
        _train_challenger(champion, tmp_path / "new.parquet", None, out, None, {})
    with pytest.raises(BadInputError, match="retrain_overrides"):
        _train_challenger(champion, tmp_path / "new.parquet", None, out, None, {"train": {"epochs": 0}})


# ------------------------------------------------------------------------------- (7) SIGTERM


def test_sigterm_stops_fabray_serve_gracefully(tmp_path):
    """`fabray serve` on SIGTERM leaves through the same door as Ctrl-C: the serving context
    exits (it saves the state and shuts Serve down gracefully) and the exit code is 0."""
    marker = tmp_path / "exited"
    script = textwrap.dedent(f"""
        import contextlib, sys
        import fabray.serve.runner as runner
        from fabray.cli import main

        @contextlib.contextmanager
        def fake_serving(*args, **kwargs):
            print("ready", flush=True)
            try:
                yield "http://127.0.0.1:1"
            finally:
                open({str(marker)!r}, "w").write("saved")

        runner.serving = fake_serving
        sys.exit(main(["serve", "--run", "r"]))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, proc.stderr.read()
    assert marker.read_text() == "saved"


# ------------------------------------------------------------------------------- (9) the daily retrain


def test_the_daily_retrain_evaluates_and_promotes_through_the_retrain_path(store, tmp_path, monkeypatch):
    import fabray.serve.retrain as retrain
    from fabray.data.io import write_table
    from fabray.data.simulate import simulate_preset

    store.promote(store.import_run(fake_run(tmp_path, "r1")))
    data = write_table(simulate_preset("tiny", seed=1), tmp_path / "latest.parquet")
    trained = []

    def fake_train(champion, data, until, out, epochs, overrides):
        trained.append((champion, epochs))
        fake_run(out.parent, out.name, b"weights-2")

    def fake_evaluate(run, df, cut, ensemble_cfg):
        return {"windows": 7, "metrics": {"pr_auc": 0.4 if "versions" in str(run) else 0.5},
                "contract": {"lookback": 100, "n_features": 12, "task": "event"}}

    monkeypatch.setattr(retrain, "_train_challenger", fake_train)
    monkeypatch.setattr(retrain, "evaluate_version", fake_evaluate)
    assert retrain.main(["--store", str(store.root), "--data", str(data), "--epochs", "1"]) == 0
    assert trained == [(store.run_dir("v1"), 1)]  # the live version is the champion
    assert store.live() == "v2"
    (status,) = [json.loads(p.read_text()) for p in store.jobs_dir.glob("*/status.json")]
    assert status["kind"] == "retrain" and status["scheduled"] and status["status"] == "succeeded"
    assert status["result"]["promoted"] is True and status["result"]["champion"] == "v1"
    assert retrain.main(["--store", str(store.root), "--data", str(tmp_path / "none.parquet")]) == 2


def test_errors_raised_in_one_actor_are_rebuilt_in_another():
    import ray.cloudpickle as cloudpickle

    from fabray.serve.http_errors import ApiError, Unavailable

    busy = cloudpickle.loads(cloudpickle.dumps(ApiError(429, "2 batch jobs running")))
    assert (busy.status, busy.message) == (429, "2 batch jobs running")
    assert cloudpickle.loads(cloudpickle.dumps(Unavailable("retry"))).status == 503
