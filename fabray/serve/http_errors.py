"""The HTTP API's error answers (`fabray.serve.http`): `ApiError` / `Unavailable`, the JSON
`ErrorOut` body with its error kind per status, 401's `WWW-Authenticate`, and FastAPI's validation
errors turned into a short message naming the fields."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from fabray.serve.auth import AuthError
from fabray.serve.jobs import redact_paths
from fabray.serve.schemas import ErrorOut


_KINDS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "bad_request",
          408: "timeout", 409: "conflict", 413: "too_large", 422: "invalid_input", 429: "busy",
          503: "unavailable"}


class ApiError(Exception):
    """An answer other than 200, with a JSON body `ErrorOut`."""

    def __init__(self, status: int, message: str, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details

    def __reduce__(self) -> tuple:  # raised in one Ray actor, answered by another
        return ApiError, (self.status, self.message, self.details)


class Unavailable(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(503, message)

    def __reduce__(self) -> tuple:
        return Unavailable, (self.message,)


def error_response(status: int, message: str, details: list[Any] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorOut(error=_KINDS.get(status, "internal" if status >= 500 else "bad_request"),
                    message=redact_paths(message), details=details)  # no server paths to clients
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def auth_response(err: AuthError) -> JSONResponse:
    response = error_response(err.status, err.message)
    if err.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _validation_message(errors: list[dict[str, Any]], body: Any) -> tuple[str, list[Any]]:
    """A short message and clean details from FastAPI's validation errors.

    The predict/feedback bodies are `X | list[X]`: pydantic reports a failure against both
    branches; keep only the branch that matches what was sent (an object or a list).
    """
    sent_list = isinstance(body, list)
    details = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] == "body":
            loc = loc[1:]
        if loc and ("[" in loc[0] or loc[0][:1].isupper()):  # union branch tag, e.g. 'list[WindowIn]'
            if loc[0].startswith("list[") != sent_list:
                continue
            loc = loc[1:]
        where = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc).lstrip(".") or "body"
        details.append({"field": where, "problem": err.get("msg", "invalid"), "type": err.get("type")})
    if not details:  # keep something rather than nothing
        details = [{"field": "body", "problem": str(e.get("msg")), "type": e.get("type")} for e in errors]
    shown = "; ".join(f"{d['field']}: {d['problem']}" for d in details[:3])
    more = f" (and {len(details) - 3} more)" if len(details) > 3 else ""
    return f"invalid request: {shown}{more}", details[:50]
