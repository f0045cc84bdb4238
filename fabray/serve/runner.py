"""Start the serving application from Python: `fabray serve`, `fabray demo` and benchmarks.

    with serving("runs/r1") as url:      # Ray (embedded, or the one already running), Serve,
        requests.post(url + "/v1/predict", json=...)   # the app on 127.0.0.1:8000 by default

On exit, the ensemble's online state is saved, Serve is shut down gracefully (requests in
flight are answered first), and Ray is stopped too when this call started it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fabray.errors import BadInputError

logger = logging.getLogger(__name__)


@contextmanager
def serving(
    run: str | Path | None,
    *,
    store: str | Path | None = None,
    config: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
) -> Iterator[str]:
    """Serve `run` (imported into the store and made live; None: the store's live version);
    yields the base URL. Bad arguments raise BadInputError before Ray starts."""
    from fabray.serve.app import ServeArgs, build_app, default_store, resolve_config

    if run is None and store is None:
        raise BadInputError("give a run directory to serve (or a store that has a live version)")
    if run is not None and not Path(run).is_dir():
        raise BadInputError(f"run directory not found: {run}")
    args = ServeArgs(
        store=str(store or default_store(run)), run=None if run is None else str(run),
        config=None if config is None else str(config),
        serve={**dict(overrides or {}), **({"limits": dict(limits)} if limits else {})},
    )
    serve_cfg, _ = resolve_config(args)
    app = build_app(args)  # imports and promotes the run: a bad run fails here, before Ray

    from ray import serve

    from fabray.ray_session import ray_session

    with ray_session(address, num_cpus=num_cpus):
        serve.start(http_options={"host": serve_cfg.host, "port": serve_cfg.port,
                                  "request_timeout_s": serve_cfg.limits.request_timeout_s})
        try:
            serve.run(app, name=serve_cfg.app_name, route_prefix="/")
            url = f"http://{serve_cfg.host}:{serve_cfg.port}"
            logger.info("fabray serving on %s (store %s)", url, args.store)
            yield url
        finally:
            save_state(serve_cfg.app_name)
            serve.shutdown()  # graceful: each replica finishes its requests in flight first


def save_state(app_name: str, timeout_s: float = 20.0) -> list[str]:
    """Persist the ensemble's online state now (feedback since the last periodic save); the
    versions written. Never raises: a stop must go on."""
    from ray import serve

    from fabray.serve.deployments.keeper import KEEPER

    try:
        saved = serve.get_deployment_handle(KEEPER, app_name).save.remote().result(timeout_s=timeout_s)
        logger.info("saved the ensemble state of %s", saved)
        return list(saved)
    except Exception as err:  # noqa: BLE001 - shutting down
        logger.warning("could not save the ensemble state before stopping: %s", err)
        return []
