"""Bearer-token auth of the mutating endpoints (feedback, promote, rollback, batch, retrain).

The token is read by the serving replica itself, from a file (`serve.api_token_file`, e.g. a
mounted secret) or else from the environment variable `serve.api_token_env`
(FABRAY_API_TOKEN), so it never passes through Serve's config or the dashboard. With no token
configured the mutating endpoints are refused (403) with a message saying how to enable them;
a missing or wrong token is 401. Tokens are compared in constant time (hmac.compare_digest).
"""

from __future__ import annotations

import hmac
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 16


class AuthError(Exception):
    """Refused: `status` is 401 (missing/wrong token) or 403 (mutations disabled)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def load_token(env_name: str = "FABRAY_API_TOKEN", token_file: str | None = None) -> str | None:
    """The configured token, or None (mutations disabled). A token shorter than 16 characters
    is refused outright (None), with a warning: a guessable token is worse than none."""
    token = None
    if token_file:
        try:
            token = Path(token_file).expanduser().read_text().strip()
        except OSError as err:
            logger.warning("cannot read the API token file %s: %s; mutating endpoints disabled", token_file, err)
            return None
    else:
        token = os.environ.get(env_name, "").strip()
    if not token:
        return None
    if len(token) < MIN_TOKEN_CHARS:
        logger.warning("the API token is shorter than %d characters; mutating endpoints disabled", MIN_TOKEN_CHARS)
        return None
    return token


def check_bearer(authorization: str | None, token: str | None, env_name: str = "FABRAY_API_TOKEN") -> None:
    """Raise AuthError unless `authorization` is 'Bearer <token>' for the configured token."""
    if token is None:
        raise AuthError(
            403,
            "mutating endpoints are disabled: no API token is configured. Start the service with "
            f"{env_name} set to a secret of at least {MIN_TOKEN_CHARS} characters (or set "
            "serve.api_token_file), then send 'Authorization: Bearer <token>'.",
        )
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise AuthError(401, "missing bearer token: send 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise AuthError(401, "invalid bearer token")
