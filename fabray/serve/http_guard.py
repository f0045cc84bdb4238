"""The HTTP layer's limits and auth (`HttpSettings`) and the `Guard` middleware that enforces them.

Before a route reads any body, the `Guard` middleware checks the bearer token of token routes
(401/403 without reading a byte), the route's body limit (413), and gives the body a read
deadline (408): a client that sends headers and stalls never holds a request slot for long.
Error answers carry a message for people: never a traceback, a pid or a server path.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fabray.config import DegradedRules
from fabray.serve.auth import AuthError, check_bearer
from fabray.serve.http_errors import auth_response, error_response


SMALL_BODY_BYTES = 64 * 1024  # routes whose bodies are a few fields (import, promote, rollback, retrain)


@dataclass(frozen=True)
class HttpSettings:
    """The HTTP layer's limits and auth (from `ServeConfig`; the token as read by the replica)."""

    max_body_bytes: int
    max_windows_per_request: int
    degraded: DegradedRules
    api_token: str | None
    api_token_env: str = "FABRAY_API_TOKEN"
    body_read_timeout_s: float = 10.0  # the whole body must arrive within this (408 otherwise)
    small_body_bytes: int = SMALL_BODY_BYTES  # limit of the routes whose bodies are a few fields
    max_observe_rows: int = 5000  # rows one /v1/observe call may carry (serve.feed.max_rows)


#: Routes behind the bearer token (method, path pattern), with their body limit: "body" means
#: `max_body_bytes` (bodies of windows or outcomes), "small" `small_body_bytes`.
TOKEN_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(r"/v1/feedback/?"), "body"),
    ("POST", re.compile(r"/v1/observe/?"), "body"),
    ("POST", re.compile(r"/v1/batch/?"), "body"),
    ("POST", re.compile(r"/v1/models/?"), "small"),
    ("POST", re.compile(r"/v1/models/[^/]*/promote/?"), "small"),
    ("POST", re.compile(r"/v1/rollback/?"), "small"),
    ("POST", re.compile(r"/v1/retrain/?"), "small"),
    ("GET", re.compile(r"/v1/(jobs|batch)/[^/]*/?"), "small"),  # job status: server files, errors
)
OPEN_BODY_ROUTES: tuple[tuple[str, re.Pattern[str]], ...] = (("POST", re.compile(r"/v1/predict/?")),)


class _Refused(Exception):
    """Raised inside `receive` when the guard has refused the request (too large, too slow)."""


def route_rule(settings: HttpSettings, method: str, path: str) -> tuple[bool, int]:
    """(token required, body limit in bytes) of a request."""
    for verb, pattern, size in TOKEN_ROUTES:
        if method == verb and pattern.fullmatch(path):
            return True, settings.max_body_bytes if size == "body" else settings.small_body_bytes
    for verb, pattern in OPEN_BODY_ROUTES:
        if method == verb and pattern.fullmatch(path):
            return False, settings.max_body_bytes
    return False, settings.small_body_bytes


class Guard:
    """ASGI middleware, outermost: auth, body limit and read deadline, before any route work.

    - a token route without the right bearer token is answered 401/403 before a byte of the
      body is read (nothing is parsed or validated for an anonymous client);
    - a body over the route's limit is answered 413, whether announced by Content-Length or
      found while reading (chunked);
    - the whole body must arrive within `body_read_timeout_s` of the request's start, else 408:
      a stalled client frees its slot instead of holding it for ever.

    Once the guard refuses, the app's own answer is dropped and the refusal is sent instead.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], settings: HttpSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = self.settings
        needs_token, limit = route_rule(settings, scope.get("method", "GET"), scope.get("path", ""))
        headers = dict(scope.get("headers") or [])
        if needs_token:
            try:
                authorization = headers.get(b"authorization")
                check_bearer(None if authorization is None else authorization.decode("latin-1"),
                             settings.api_token, settings.api_token_env)
            except AuthError as err:
                await auth_response(err)(scope, receive, send)
                return
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await error_response(413, f"request body larger than {limit} bytes (the limit of this route). "
                                      f"Received: Content-Length {int(length)}")(scope, receive, send)
            return
        deadline = time.monotonic() + settings.body_read_timeout_s
        state: dict[str, Any] = {"seen": 0, "done": False, "refusal": None, "answered": False}

        def refuse(status: int, message: str) -> _Refused:
            state["refusal"] = (status, message)
            return _Refused(message)

        async def guarded_receive() -> dict:
            if state["refusal"] is not None:
                raise _Refused(state["refusal"][1])
            if state["done"]:  # after the body: only a disconnect can come, no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise refuse(408, f"request body not received within {settings.body_read_timeout_s:g} s "
                                  "(read deadline); send the whole body at once") from None
            if message["type"] == "http.request":
                state["seen"] += len(message.get("body", b""))
                if state["seen"] > limit:
                    raise refuse(413, f"request body larger than {limit} bytes (the limit of this route)")
                if not message.get("more_body", False):
                    state["done"] = True
            else:
                state["done"] = True  # a disconnect
            return message

        async def answer_refusal() -> None:
            if not state["answered"]:
                state["answered"] = True
                status, message = state["refusal"]
                await error_response(status, message, headers={"Connection": "close"})(scope, receive, send)

        async def guarded_send(message: dict) -> None:
            if state["refusal"] is not None:
                await answer_refusal()
                return
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if state["refusal"] is None:
                raise
        if state["refusal"] is not None:
            await answer_refusal()
