"""The HTTP API (FastAPI) of the serving application, independent of Ray (DESIGN §6).

`build_http_app(service)` returns the FastAPI app; `service` does the work (on Ray Serve the
Predictor deployment, which scores /v1/predict itself and whose `HttpFront`, deployments/ingress.py,
talks to the ensemble keeper and the job manager for the other routes; in unit tests a fake). This module and its two neighbours (`http_errors`: the error answers;
`http_guard`: `HttpSettings` and the `Guard` middleware) own everything about HTTP: routes,
OpenAPI docs at /docs, request checks, auth, and the rule that bad input is always a 4xx JSON
error naming the problem, never a 500:

| problem                                         | status |
|-------------------------------------------------|--------|
| malformed JSON                                  | 400    |
| missing bearer token / wrong token              | 401    |
| mutating endpoint with no token configured      | 403    |
| unknown version or job                          | 404    |
| body not received within the read deadline      | 408    |
| corrupted / incompatible model version, nothing | 409    |
| to roll back to, feed rows out of order or      |        |
| duplicated (every such row named)               |        |
| body over the route's limit, too many windows   | 413    |
| wrong shape or type, NaN/inf, absurd values, ...| 422    |
| too many jobs of a kind running                 | 429    |
| no model loaded yet, backend unavailable, a     | 503    |
| window the models could not score               |        |

Before a route reads any body, the `Guard` middleware checks the bearer token of token routes
(401/403 without reading a byte), the route's body limit (413), and gives the body a read
deadline (408): a client that sends headers and stalls never holds a request slot for long.
Error answers carry a message for people: never a traceback, a pid or a server path.

`GET /` is the zone board (issue 13): static files shipped in the package (`board/`, no build
step) that read the public JSON routes (/v1/feed, /v1/alerts, /v1/weights, /v1/models) from the
browser; the page holds no token.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from fastapi import Body, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from fabray import schema
from fabray.errors import BadInputError
from fabray.serve.auth import AuthError, check_bearer
from fabray.serve.feed_rows import FeedRefused
from fabray.serve.http_errors import ApiError, _validation_message, auth_response, error_response
from fabray.serve.http_guard import Guard, HttpSettings
from fabray.serve.schemas import (
    BatchIn,
    ErrorOut,
    FeedbackItem,
    FeedbackOut,
    ImportIn,
    JobOut,
    ObserveIn,
    ObserveOut,
    PredictionOut,
    PromoteIn,
    RetrainIn,
    RollbackIn,
    WindowIn,
)
from fabray.serve.store import ConflictError, CorruptArtifactError, UnknownVersionError
from fabray.serve.validation import check_window

logger = logging.getLogger(__name__)


BOARD_DIR = Path(__file__).with_name("board")  # the zone board's page, script and style
MAX_FEEDBACK_ITEMS = 10_000
MAX_BATCH_WINDOWS = 100_000


class Service(Protocol):
    """What the routes call (see deployments/ingress.py for the real one)."""

    settings: HttpSettings

    async def meta(self) -> dict[str, Any]: ...
    async def predict(self, zones: list[str], windows: np.ndarray, reasons: list[tuple[str, ...]],
                      deadline_ms: float | None = None, started: float | None = None) -> list[dict[str, Any]]: ...
    async def feedback(self, items: list[dict[str, Any]]) -> dict[str, Any]: ...
    async def models(self) -> dict[str, Any]: ...
    async def import_run(self, body: ImportIn) -> dict[str, Any]: ...
    async def promote(self, version: str, body: PromoteIn) -> dict[str, Any]: ...
    async def rollback(self, body: RollbackIn) -> dict[str, Any]: ...
    async def submit_batch(self, body: BatchIn, windows: np.ndarray | None, reasons: list[tuple[str, ...]] | None) -> dict[str, Any]: ...
    async def submit_retrain(self, body: RetrainIn) -> dict[str, Any]: ...
    async def job(self, job_id: str) -> dict[str, Any]: ...
    async def health(self) -> tuple[bool, dict[str, Any]]: ...
    async def observe_feed(self, rows: list[dict[str, Any]]) -> dict[str, Any]: ...
    async def alerts(self, zone: str | None, status: str | None, limit: int) -> dict[str, Any]: ...
    async def weight_history(self, zone: str | None, limit: int) -> dict[str, Any]: ...
    async def feed_status(self) -> dict[str, Any]: ...
    def observe(self, route: str, status: int, seconds: float) -> None: ...


def _check_windows(items: list[WindowIn], meta: dict[str, Any], settings: HttpSettings,
                   single: bool) -> tuple[list[str], np.ndarray, list[tuple[str, ...]]]:
    """Zones known, shapes right, values sane → (zones, windows [B, L, F] float32, reasons)."""
    known = set(meta["zones"])
    zones, arrays, reasons = [], [], []
    for i, item in enumerate(items):
        where = "window" if single else f"[{i}].window"
        if item.zone not in known:
            raise ApiError(422, f"{'zone' if single else f'[{i}].zone'}: unknown zone {item.zone!r}; "
                                f"model version {meta['version']} knows {sorted(known)}")
        checked = check_window(item.window, lookback=int(meta["lookback"]), rules=settings.degraded,
                               features=schema.FEATURES, where=where)
        values = checked.values  # [L, 12]
        if meta.get("context"):
            values = np.concatenate([values, _window_context(item, meta, settings, where)], axis=1)
        zones.append(item.zone)
        arrays.append(values)
        reasons.append(checked.degraded_reasons)
    return zones, np.stack(arrays).astype(np.float32), reasons  # [B, L, F]


def _window_context(item: WindowIn, meta: dict[str, Any], settings: HttpSettings, where: str) -> np.ndarray:
    """The context columns [L, C] of one window (calendar, plan, neighbours), built exactly as
    training built them (`fabray.data.context.window_context`)."""
    from fabray.data.context import ContextSpec, window_context

    spec = ContextSpec.from_dict(meta["context"])
    lookback = int(meta["lookback"])
    prefix = where[: -len("window")]
    neighbours = {}
    for zone, rows in (item.neighbours or {}).items():
        if zone not in meta["zones"]:
            raise ApiError(422, f"{prefix}neighbours: unknown zone {zone!r}")
        neighbours[zone] = check_window(rows, lookback=lookback, rules=settings.degraded,
                                        features=schema.FEATURES, where=f"{prefix}neighbours.{zone}").values
    end_time = np.datetime64(datetime.now().replace(second=0, microsecond=0), "m")  # real time: now
    if item.timestamp is not None:
        try:
            end_time = np.datetime64(item.timestamp.replace("Z", ""), "m")
        except ValueError:
            raise ApiError(422, f"{prefix}timestamp: not an ISO-8601 minute. Received: {item.timestamp!r}") from None
    try:
        return window_context(spec, tuple(meta["zones"]), item.zone, end_time, lookback,
                              meta["nominal_s"], neighbours, item.plan)
    except BadInputError as err:
        raise ApiError(422, f"{prefix}{err}") from None


# ---------------------------------------------------------------------------- the app


_ERRORS = {code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 413, 422, 503)}


def build_http_app(service: Service) -> FastAPI:
    """The FastAPI app over `service` (routes, docs, checks, auth, error mapping)."""
    settings = service.settings
    app = FastAPI(
        title="fabray",
        description="Real-time, batch and retraining service for OHT transport-delay forecasts "
        "of a semiconductor fab (a Keras model zoo and a dynamic weighted ensemble on Ray Serve).",
        version="1",
    )
    app.add_middleware(Guard, settings=settings)

    @app.middleware("http")
    async def _observe(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        service.observe(getattr(route, "path", "unmatched"), response.status_code, time.perf_counter() - start)
        return response

    # ------------------------------------------------------------ error mapping

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        body = getattr(exc, "body", None)
        if isinstance(body, (bytes, bytearray)):  # not parsed: the client did not say it is JSON
            try:
                json.loads(body)
            except ValueError as err:
                return error_response(400, f"malformed JSON: {err}")
            return error_response(400, "the body is JSON but not declared as such: send "
                                       "'Content-Type: application/json'")
        if any(e.get("type") == "json_invalid" for e in errors):
            ctx = next(e for e in errors if e.get("type") == "json_invalid").get("ctx") or {}
            return error_response(400, f"malformed JSON: {ctx.get('error', 'cannot parse the body')}")
        message, details = _validation_message(errors, body)
        return error_response(422, message, details)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.details)

    @app.exception_handler(AuthError)
    async def _auth_error(request: Request, exc: AuthError) -> JSONResponse:
        return auth_response(exc)

    @app.exception_handler(BadInputError)
    async def _bad_input(request: Request, exc: BadInputError) -> JSONResponse:
        if isinstance(exc, FeedRefused):  # 409 out of order / duplicated, 422 bad rows: every row named
            return error_response(exc.status, str(exc), exc.problems[:50] or None)
        if isinstance(exc, UnknownVersionError):
            return error_response(404, str(exc))
        if isinstance(exc, CorruptArtifactError):
            return error_response(409, f"refused: {exc}")
        if isinstance(exc, ConflictError):
            return error_response(409, str(exc))
        return error_response(422, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        incident = uuid.uuid4().hex[:12]
        logger.exception("internal error %s on %s", incident, request.url.path)
        return error_response(500, f"internal error (incident {incident} in the server log)")

    def require_token(authorization: str | None) -> None:
        check_bearer(authorization, settings.api_token, settings.api_token_env)

    # ------------------------------------------------------------ read-only

    @app.get("/", include_in_schema=False)
    async def board() -> FileResponse:
        """The zone board: every zone's risk, recent alerts, the weights (board/index.html)."""
        return FileResponse(BOARD_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/board", StaticFiles(directory=BOARD_DIR), name="board")  # its script and style

    @app.get("/healthz", summary="Liveness and the live version", responses={503: {"model": ErrorOut}})
    async def healthz() -> JSONResponse:
        ok, body = await service.health()
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/v1/models", summary="Stored versions, which is live, their metrics")
    async def models() -> dict[str, Any]:
        return await service.models()

    # job status names server files and data problems: for token holders (who start jobs)
    @app.get("/v1/jobs/{job_id}", response_model=JobOut, responses=_ERRORS,
             summary="A batch or retraining job (token required)")
    async def job(job_id: str, authorization: str | None = Header(None)) -> dict[str, Any]:
        require_token(authorization)
        return await service.job(job_id)

    @app.get("/v1/batch/{job_id}", response_model=JobOut, responses=_ERRORS,
             summary="A batch job's status and output (token required)")
    async def batch_status(job_id: str, authorization: str | None = Header(None)) -> dict[str, Any]:
        require_token(authorization)
        return await service.job(job_id)

    # ------------------------------------------------------------ predictions

    @app.post(
        "/v1/predict", response_model=PredictionOut | list[PredictionOut], responses=_ERRORS,
        summary="Score one window, or a list of windows",
        description="Per-model scores, the ensemble probability and decision, the weights used and "
        "each member's contribution, the rules that fired, the model version and a `degraded` flag "
        "(with the reason: a gap, a stuck sensor, or the deadline). A list in gives a list out, in "
        "the same order.",
    )
    async def predict(body: WindowIn | list[WindowIn] = Body(...),
                      deadline_ms: float | None = Query(
                          None, gt=0, le=600_000, description="Time budget of this request, ms (default "
                          "serve.deadline_ms): windows the models cannot answer within it are answered by "
                          "the rules model alone, `degraded` with the reason naming the members dropped.")) -> Any:
        started = time.monotonic()
        single = not isinstance(body, list)
        items = [body] if single else body
        if not items:
            raise ApiError(422, "the list of windows is empty")
        if len(items) > settings.max_windows_per_request:
            raise ApiError(413, f"too many windows in one request: at most {settings.max_windows_per_request} "
                                f"(serve.max_windows_per_request); use /v1/batch for more. Received: {len(items)}")
        meta = await service.meta()
        zones, windows, reasons = _check_windows(items, meta, settings, single)
        results = await service.predict(zones, windows, reasons, deadline_ms=deadline_ms, started=started)
        failed = [i for i, answer in enumerate(results) if answer.get("error")]
        if failed:  # this request's windows only: the others in its batch were answered
            where = "window" if single else f"[{failed[0]}]"
            raise ApiError(503, f"{where}: {results[failed[0]]['error']}")
        return results[0] if single else results

    # ------------------------------------------------------------ mutating (token)

    @app.post("/v1/feedback", response_model=FeedbackOut, responses=_ERRORS,
              summary="Observed outcomes of earlier predictions: move the ensemble weights")
    async def feedback(body: FeedbackItem | list[FeedbackItem] = Body(...),
                       authorization: str | None = Header(None)) -> dict[str, Any]:
        require_token(authorization)
        items = [body] if not isinstance(body, list) else body
        if not items:
            raise ApiError(422, "the list of outcomes is empty")
        if len(items) > MAX_FEEDBACK_ITEMS:
            raise ApiError(413, f"too many outcomes in one request: at most {MAX_FEEDBACK_ITEMS}. "
                                f"Received: {len(items)}")
        meta = await service.meta()
        if meta["task"] == "event":
            bad = [i for i, item in enumerate(items) if item.outcome not in (0.0, 1.0)]
            if bad:
                raise ApiError(422, f"outcome must be 0 or 1 for task 'event'. Received: "
                                    f"{items[bad[0]].outcome} at item {bad[0]}")
        return await service.feedback([item.model_dump() for item in items])

    @app.post("/v1/observe", response_model=ObserveOut, responses=_ERRORS,
              summary="The latest minute rows of one or many zones: score them, derive outcomes, raise alerts",
              description="Rows in the data contract's columns and raw units (JSON null for an empty "
              "transport time), plus optional plan columns. The server keeps each zone's recent "
              "minutes (persisted before answering), refuses rows out of order or duplicated (409, "
              "naming them; nothing is applied), flags gaps, scores every zone that got its minute "
              "(neighbour inputs from the other zones' minutes), moves the ensemble weights with "
              "the outcomes that came due, and opens or closes alerts.")
    async def observe_feed(body: ObserveIn, authorization: str | None = Header(None)) -> dict[str, Any]:
        require_token(authorization)
        if len(body.rows) > settings.max_observe_rows:
            raise ApiError(413, f"too many rows in one request: at most {settings.max_observe_rows} "
                                f"(serve.feed.max_rows). Received: {len(body.rows)}")
        return await service.observe_feed([row.model_dump() for row in body.rows])

    @app.get("/v1/alerts", responses=_ERRORS, summary="Alerts raised by the live feed, newest first")
    async def alerts(zone: str | None = Query(None, max_length=128, description="Only this zone."),
                     status: str | None = Query(None, pattern="^(open|closed)$", description="open or closed."),
                     limit: int = Query(100, ge=1, le=1000, description="At most this many.")) -> dict[str, Any]:
        return await service.alerts(zone, status, limit)

    @app.get("/v1/weights", responses=_ERRORS,
             summary="The dynamic ensemble's current weights per zone and their history")
    async def weights(zone: str | None = Query(None, max_length=128, description="Only this zone."),
                      limit: int = Query(100, ge=1, le=5000, description="History entries, newest last.")) -> dict[str, Any]:
        return await service.weight_history(zone, limit)

    @app.get("/v1/feed", responses=_ERRORS, summary="The live feed: each zone's newest minute and risk")
    async def feed() -> dict[str, Any]:
        return await service.feed_status()

    @app.post("/v1/models", responses=_ERRORS, summary="Add a run directory to the store (optionally promote it)")
    async def import_run(body: ImportIn, authorization: str | None = Header(None)) -> dict[str, Any]:
        require_token(authorization)
        return await service.import_run(body)

    @app.post("/v1/models/{version}/promote", responses=_ERRORS,
              summary="Make a stored version live (verified, loaded and checked first)")
    async def promote(version: str, body: PromoteIn | None = None,
                      authorization: str | None = Header(None)) -> dict[str, Any]:
        require_token(authorization)
        return await service.promote(version, body or PromoteIn())

    @app.post("/v1/rollback", responses=_ERRORS, summary="Return to the previously live version")
    async def rollback(body: RollbackIn | None = None, authorization: str | None = Header(None)) -> dict[str, Any]:
        require_token(authorization)
        return await service.rollback(body or RollbackIn())

    @app.post("/v1/batch", response_model=JobOut, responses=_ERRORS,
              summary="Score a data file (latest window per zone, or all) or a list of windows, as a job")
    async def batch(body: BatchIn, authorization: str | None = Header(None)) -> dict[str, Any]:
        require_token(authorization)
        windows = reasons = None
        if body.windows is not None:
            if len(body.windows) > MAX_BATCH_WINDOWS:
                raise ApiError(413, f"too many windows: at most {MAX_BATCH_WINDOWS} in a body; "
                                    f"use a data file. Received: {len(body.windows)}")
            meta = await service.meta()
            _, windows, reasons = _check_windows(body.windows, meta, settings, single=False)
        return await service.submit_batch(body, windows, reasons)

    @app.post("/v1/retrain", response_model=JobOut, responses=_ERRORS,
              summary="Retrain the live version on newer data as a Ray job; promote if not worse")
    async def retrain(body: RetrainIn, authorization: str | None = Header(None)) -> dict[str, Any]:
        require_token(authorization)
        return await service.submit_retrain(body)

    return app
