"""fabray.run: the typed manifest, its format checks, and `Run.open`'s file checks."""

from __future__ import annotations

import json

import pytest

from fabray.errors import BadInputError
from fabray.files import sha256_file
from fabray.run import MANIFEST, MANIFEST_FORMAT, MANIFEST_VERSION, Run, read_manifest


def test_a_run_of_the_current_format_opens_with_its_extra_keys(make_run, tmp_path):
    run = make_run(tmp_path / "run", extra={"retrain": {"parent": "x"}, "something_new": [1, 2]})
    opened = Run.open(run)
    assert opened.path == run.resolve() and opened.run_id == "run"
    assert opened.typed.format_version == MANIFEST_VERSION
    assert set(opened.models(status="ok")) == {"lstm"} and "gru" in opened.models()
    assert opened.manifest["something_new"] == [1, 2]  # unknown keys are kept, not dropped
    assert opened.typed.models["lstm"].model == "models/lstm/model.keras"


def test_a_manifest_without_format_version_is_version_one(make_run, tmp_path):
    run = make_run(tmp_path / "run")
    manifest = json.loads((run / MANIFEST).read_text())
    del manifest["format_version"]
    (run / MANIFEST).write_text(json.dumps(manifest))
    assert Run.open(run).typed.format_version == 1


def test_a_newer_format_version_is_refused_with_how_to_convert(make_run, tmp_path):
    run = make_run(tmp_path / "run", extra={"format_version": MANIFEST_VERSION + 1, "code": {"fabray": "9.0"}},
                   valid=False)
    with pytest.raises(BadInputError, match=rf"format_version {MANIFEST_VERSION + 1} \(written by fabray 9.0\).*fabray train"):
        Run.open(run)
    with pytest.raises(BadInputError, match="format_version"):
        read_manifest(run)


def test_another_format_is_refused_naming_it(make_run, tmp_path):
    run = make_run(tmp_path / "run", extra={"format": "fabray-ensemble"}, valid=False)
    with pytest.raises(BadInputError, match="not a fabray run manifest. Received: format='fabray-ensemble'"):
        Run.open(run)


@pytest.mark.parametrize("bad", [{"models": {"lstm": "not an entry"}}, {"format_version": "one"}])
def test_a_malformed_manifest_is_bad_input(make_run, tmp_path, bad):
    run = make_run(tmp_path / "run", extra=bad, valid=False)
    with pytest.raises(BadInputError, match=str(run.resolve() / MANIFEST)):
        Run.open(run, verify=False)


def test_not_a_run_directory(tmp_path):
    with pytest.raises(BadInputError, match="run directory not found"):
        Run.open(tmp_path / "nothing")
    with pytest.raises(BadInputError, match="not a fabray run directory"):
        Run.open(tmp_path)
    (tmp_path / MANIFEST).write_text("{")
    with pytest.raises(BadInputError, match="not valid JSON"):
        Run.open(tmp_path)


def test_verify_checks_every_listed_file_and_its_checksum(make_run, tmp_path):
    run = make_run(tmp_path / "run")
    (run / "models" / "lstm" / "history.json").unlink()
    Run.open(run, verify=False)  # without verify: the manifest only
    with pytest.raises(BadInputError, match="models/lstm/history.json, which is missing"):
        Run.open(run)

    run = make_run(tmp_path / "run2", checksums=True)
    Run.open(run)
    (run / "models" / "lstm" / "model.keras").write_bytes(b"changed")
    with pytest.raises(BadInputError, match="does not match its checksum"):
        Run.open(run)


def test_file_refuses_a_path_outside_the_run(make_run, tmp_path):
    run = make_run(tmp_path / "run")
    (tmp_path / "outside.json").write_text("{}")
    with pytest.raises(BadInputError, match="outside the run"):
        Run.open(run, verify=False).file("../outside.json")


def test_make_run_writes_what_read_manifest_reads(make_run, tmp_path):
    run = make_run(tmp_path / "run", checksums=True)
    manifest = read_manifest(run)
    assert manifest["format"] == MANIFEST_FORMAT and "updated_at" in manifest
    rel = "models/lstm/model.keras"
    assert manifest["models"]["lstm"]["checksums"][rel] == sha256_file(run / rel)


def test_the_writer_refuses_an_invalid_manifest(make_run, tmp_path):
    from fabray.run import write_manifest

    run = make_run(tmp_path / "run")
    with pytest.raises(RuntimeError, match="refusing to write an invalid manifest"):
        write_manifest(run, {"format": "something-else", "models": {}})
    assert read_manifest(run)["format"] == MANIFEST_FORMAT  # the old manifest is still there


def _two_model_run(make_run, path, gru_prep: dict, task: dict | None = None):
    lstm_prep = {"scaler": {"mean": [1.0]}, "nominal_s": {"Z1": 30.0}, "lookback": 100, "horizon": 10,
                 "features": ["a"], "context": None, **({"task": task} if task else {})}
    files = {"models/lstm/preprocessing.json": json.dumps(lstm_prep),
             "models/gru/preprocessing.json": json.dumps({**lstm_prep, **gru_prep})}
    return make_run(path, {"lstm": {"status": "ok"}, "gru": {"status": "ok"}}, files=files)


def test_preprocessing_and_task_are_read_once_for_every_model(make_run, tmp_path):
    run = Run.open(_two_model_run(make_run, tmp_path / "run", {}, task={"horizon": 10, "sla_delay_s": 45.0}))
    assert run.preprocessing()["nominal_s"] == {"Z1": 30.0}
    task = run.task()
    assert task.task == "event" and task.sla_delay_s == 45.0


@pytest.mark.parametrize("key, value", [("scaler", {"mean": [2.0]}), ("nominal_s", {"Z1": 31.0}), ("lookback", 60),
                                        ("context", {"calendar": True})])
def test_models_prepared_differently_are_refused_naming_the_key(make_run, tmp_path, key, value):
    run = Run.open(_two_model_run(make_run, tmp_path / "run", {key: value}))
    with pytest.raises(BadInputError, match=rf"'lstm' and 'gru' were prepared differently \('{key}' differs\)"):
        run.preprocessing()


def test_an_invalid_task_is_refused_naming_the_file(make_run, tmp_path):
    run = Run.open(_two_model_run(make_run, tmp_path / "run", {}, task={"task": "delay"}))
    with pytest.raises(BadInputError, match="(?s)invalid task in preprocessing.json.*only task 'event' is built"):
        run.task()
