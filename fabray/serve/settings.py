"""Limits of the serving application that protect it from its clients (issue 15).

They are the `limits:` argument of `build_app` (`serve deploy` args, `fabray serve` defaults);
the rest of the serving settings are the config's `serve` section (`fabray.config.ServeConfig`).
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field


class ServeLimits(BaseModel):
    """How long, how much and how many a client may ask of the service."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dirs: Optional[list[str]] = Field(
        None, description="Folders whose files clients may name (batch `path`, retrain `data`, "
        "model import `run`). None: the folder holding the model store (and the folder of "
        "`serve.batch_source`). An empty list: no server files at all.",
    )
    body_read_timeout_s: float = Field(
        10.0, gt=0, description="The whole request body must arrive within this many seconds "
        "of the request's start, else 408 (slow or stalled clients free their slot).",
    )
    request_timeout_s: float = Field(
        120.0, gt=0, description="Ray Serve's end-to-end HTTP request timeout (http_options."
        "request_timeout_s), set where `fabray serve` starts Serve and in cluster/serve.yaml.",
    )
    ingress_max_ongoing_requests: int = Field(
        2048, ge=1, description="Requests in flight at the HTTP ingress replica; a request "
        "waiting for its body costs a coroutine, so this is well above the predictor's.",
    )
    small_body_bytes: int = Field(
        64 * 1024, ge=1024, description="Body limit of the routes that take a few fields "
        "(import, promote, rollback, retrain).",
    )
    max_active_batch_jobs: int = Field(
        2, ge=1, description="Batch jobs pending or running at once (scheduled ones included); "
        "more are refused with 429 until one ends.",
    )
    max_active_retrains: int = Field(
        1, ge=1, description="Retraining jobs pending or running at once; more are refused with 429.",
    )
