"""The fabray Ray Serve application (DESIGN §6): real-time, feedback, batch and retraining.

    HTTP ──▶ Predictor × N   the HTTP ingress (FastAPI: checks, auth, errors) AND every model of
               │             the live version: /v1/predict is validated, scored (one compiled
               │             call; @serve.batch groups concurrent windows), held to its deadline
               │             and combined with the replica's copy of the ensemble weights, in
               │             this one replica: ONE Serve hop (issue 13, item 5)
               ├ ─ ─▶ EnsembleKeeper × 1   off the request path: the pending predictions, sent
               │             in the background; the weights' copy, synced every
               │             serve.ensemble_refresh_s and after each forwarded outcome
               ├──▶ EnsembleKeeper   /v1/feedback moves the weights (the owner of the online
               │        │            state, persisted to the store); /v1/observe: the live
               │        │            feed's buffers, derived outcomes and alerts (feed.py,
               │        │            alerts.py) live beside the weights they move
               │        └──▶ Predictor   `score_raw`: the feed's windows, combined by the keeper
               └──▶ JobManager × 1   batch jobs (Ray Data) and retraining (a Ray task), the
                        │            periodic scheduler; job status lives in the store
                        └──▶ BatchScorer × 1   the same models, warm, apart from the real-time
                                               replicas: Ray Data's tasks gather the windows
                                               and call it

Hops per route: /v1/predict 1 (proxy → Predictor); /v1/feedback, /v1/observe, /v1/alerts,
/v1/weights, /v1/feed 2 (→ keeper; the feed's scoring a third, keeper → Predictor); the jobs 2
(→ JobManager); /healthz, /v1/models and the board 1.

Each deployment is one module of `fabray/serve/deployments/` (keeper.py, predictor.py, jobs.py;
ingress.py is the HTTP front's service the Predictor inherits); this module only binds them
into the application.

Model versions live in a `ModelStore`. Promotion rewrites the store's LIVE.json atomically
after the new version has been verified (checksums) and loaded on a predictor replica; each
replica polls LIVE.json and swaps its in-memory bundle between two batches, so requests never
fail during a swap and a damaged version never replaces a working one.

`build_app(args)` is the typed application builder: `serve run fabray.serve.app:build_app
store=... run=...`, `serve deploy cluster/serve.yaml`, or `fabray serve --run RUN`.
"""

# No `from __future__ import annotations` here: Ray Serve reads build_app's annotation at run
# time to validate the arguments of `serve deploy` against ServeArgs.

import logging
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field
from ray.serve import Application

from fabray.config import EnsembleConfig, ServeConfig, load_config
from fabray.errors import BadInputError
from fabray.serve.deployments.jobs import JobManagerDeployment
from fabray.serve.deployments.keeper import EnsembleKeeperDeployment
from fabray.serve.deployments.predictor import BatchScorerDeployment, PredictorDeployment
from fabray.serve.store import ModelStore

logger = logging.getLogger(__name__)


class ServeArgs(BaseModel):
    """Arguments of `build_app` (the `args:` of an application in a Serve config file)."""

    model_config = ConfigDict(extra="forbid")

    store: str = Field(description="Model store directory (created if missing).")
    run: Optional[str] = Field(
        None, description="Run directory to import into the store and make live before starting.",
    )
    promote_run: Literal["always", "if_no_live"] = Field(
        "always", description="'always': `run` becomes live (`fabray serve --run`); 'if_no_live': only "
        "when the store has no live version yet, so redeploying never undoes a promotion made since.",
    )
    config: Optional[str] = Field(
        None, description="fabray YAML config; its `serve` and `ensemble` sections are used.",
    )
    serve: dict[str, Any] = Field(
        default_factory=dict, description="Values overriding the config's `serve` section.",
    )


def resolve_config(args: ServeArgs) -> tuple[ServeConfig, EnsembleConfig]:
    config = load_config(args.config)
    try:
        serve_cfg = ServeConfig.model_validate({**config.serve.model_dump(), **args.serve})
    except Exception as err:  # noqa: BLE001 - pydantic ValidationError
        raise BadInputError(f"invalid serve settings: {err}") from err
    return serve_cfg, config.ensemble


def build_app(args: ServeArgs) -> Application:
    """The fabray Serve application over the store `args.store` (importing and promoting
    `args.run` first when given)."""
    if not isinstance(args, ServeArgs):
        args = ServeArgs.model_validate(args)
    serve_cfg, ensemble_cfg = resolve_config(args)
    store = ModelStore(args.store)
    if args.run:
        before = set(store.versions())
        version = store.import_run(args.run)
        live = store.live()
        if live is None or (live != version and args.promote_run == "always" and version not in before):
            store.promote(version, reason=f"serve --run {Path(args.run).name}")
        elif live != version:  # a restart with the same run: promotions made since stand
            logger.warning("run %s is stored as %s; %s, promoted since, stays live (promote %s "
                           "explicitly to serve it again)", args.run, version, live, version)
    if store.live() is None:
        raise BadInputError(f"the model store {store.root} has no live version: pass a run to serve")
    store.ensure_intact_live()  # a damaged live version: the newest intact one, or a clear error
    cfg = serve_cfg.model_dump(mode="json")
    ens = ensemble_cfg.model_dump(mode="json")
    root = str(store.root)
    logs = {"logging_config": {"enable_access_log": serve_cfg.access_log}}

    keeper = EnsembleKeeperDeployment.options(ray_actor_options={"num_cpus": 0.05}, **logs).bind(
        root, serve_cfg.state_persist_interval_s, serve_cfg.pending_predictions, cfg)
    if serve_cfg.autoscaling is not None:
        scaling = {"autoscaling_config": {
            "min_replicas": serve_cfg.autoscaling.min_replicas,
            "max_replicas": serve_cfg.autoscaling.max_replicas,
            "target_ongoing_requests": serve_cfg.autoscaling.target_ongoing_requests,
        }}
    else:
        scaling = {"num_replicas": serve_cfg.predictor_replicas}
    scorer = BatchScorerDeployment.options(  # the models again, warm, kept apart from real-time traffic
        num_replicas=1, max_ongoing_requests=8,
        ray_actor_options={"num_cpus": serve_cfg.batch_num_cpus}, health_check_period_s=10.0, **logs,
    ).bind(root, ens, cfg)
    jobs = JobManagerDeployment.options(ray_actor_options={"num_cpus": 0.05}, **logs).bind(
        root, cfg, ens, keeper, scorer)
    # the HTTP ingress: checks, models, deadline and the ensemble's local copy in one replica. A
    # request waiting for its body holds a slot (408 after limits.body_read_timeout_s): the
    # ingress's limit; the deadline, not the slot count, bounds how long a window waits to be scored
    return PredictorDeployment.options(
        max_ongoing_requests=max(serve_cfg.max_ongoing_requests, serve_cfg.limits.ingress_max_ongoing_requests),
        ray_actor_options={"num_cpus": serve_cfg.predictor_num_cpus},
        health_check_period_s=5.0,
        **scaling, **logs,
    ).bind(root, ens, cfg, keeper, jobs)


def default_store(run: str | Path) -> Path:
    """`serve-store` next to the run directory (shared by the runs of one folder)."""
    return Path(run).expanduser().resolve().parent / "serve-store"
