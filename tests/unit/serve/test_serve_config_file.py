"""cluster/serve.yaml is a config `serve deploy` accepts, and it builds the application (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fabray.errors import BadInputError

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "cluster" / "serve.yaml"


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load(CONFIG.read_text())


@pytest.fixture
def fake_run(make_run):
    """`fake_run(root)`: a finished run the store imports (it lists no model; bytes stand in)."""
    return lambda root: make_run(root / "champion", {}, files={"models/lstm/model.keras": b"weights"})


def test_serve_deploy_schema_accepts_the_file(raw):
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(raw)
    (app,) = schema.applications
    assert app.import_path == "fabray.serve.app:build_app"
    names = {d.name for d in app.deployments}
    from fabray.serve.deployments.jobs import JOBS
    from fabray.serve.deployments.keeper import KEEPER
    from fabray.serve.deployments.predictor import BATCH_SCORER, PREDICTOR

    # the file configures every deployment of the application (test_cluster_configs checks the
    # set against the built application); the Predictor is the HTTP ingress (one hop, issue 13)
    assert names == {PREDICTOR, KEEPER, JOBS, BATCH_SCORER}
    singletons = {d.name: d.num_replicas for d in app.deployments if d.name in (KEEPER, JOBS)}
    assert singletons == {KEEPER: 1, JOBS: 1}


def test_the_builder_accepts_the_file_args_and_builds_the_application(raw, make_run, fake_run, tmp_path):
    from ray.serve import Application
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

    from fabray.serve.app import ServeArgs, build_app
    from fabray.serve.store import ModelStore

    args = dict(raw["applications"][0]["args"])
    args.update(store=str(tmp_path / "store"), run=str(fake_run(tmp_path)), config=None)
    ServeArgs.model_validate(args)  # every key of the file is a known, typed argument
    built = call_user_app_builder_with_args_if_necessary(build_app, args)  # what `serve deploy` does
    assert isinstance(built, Application)
    store = ModelStore(tmp_path / "store")
    assert store.live() == "v1"

    # promote_run: if_no_live — a redeploy never undoes a promotion made through the API since
    second = make_run(tmp_path / "second", {}, extra={"run_id": "r2"})
    store.promote(store.import_run(second))
    call_user_app_builder_with_args_if_necessary(build_app, args)
    assert store.live() == "v2"


def test_unknown_args_and_bad_serve_settings_are_refused(tmp_path):
    from pydantic import ValidationError

    from fabray.serve.app import ServeArgs, build_app

    with pytest.raises(ValidationError, match="storee"):
        ServeArgs.model_validate({"store": "x", "storee": "y"})
    with pytest.raises(BadInputError, match="max_batch_size"):
        build_app({"store": str(tmp_path), "serve": {"max_batch_size": 0}})
    with pytest.raises(BadInputError, match="no live version"):
        build_app({"store": str(tmp_path / "empty")})
