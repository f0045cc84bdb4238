"""Server paths named by clients (batch data files, retraining data, run directories to import).

A client may only name files under the service's data folders (`serve.limits.data_dirs`, `fabray.config.ServeLimits`): a path
is resolved (symlinks and `..` included) and must land inside one of them. Anything else, and
every mistake a client can make with a path (empty, too long, a NUL byte, not there, the wrong
kind), is a `BadInputError` (HTTP 422) that names the path as the client gave it, never the
server's folders.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fabray.errors import BadInputError

MAX_PATH_CHARS = 1024


def resolve_under(given: str, roots: Sequence[str | Path], *, kind: str = "file", what: str = "path") -> Path:
    """The resolved path of `given` (relative paths are taken from the first root) if it is a
    `kind` ("file" or "dir") inside one of `roots`; else BadInputError naming `what`."""
    if not isinstance(given, str) or not given.strip():
        raise BadInputError(f"{what}: empty. Received: {given!r}")
    if len(given) > MAX_PATH_CHARS or "\x00" in given:
        raise BadInputError(f"{what}: not a usable path (at most {MAX_PATH_CHARS} characters, no NUL)")
    if not roots:
        raise BadInputError(f"{what}: this service reads no server files (no data folder configured)")
    resolved_roots = [Path(r).expanduser().resolve() for r in roots]
    try:
        path = Path(given).expanduser()
        if not path.is_absolute():
            path = resolved_roots[0] / path
        path = path.resolve()
        inside = any(path == root or root in path.parents for root in resolved_roots)
        exists = path.is_file() if kind == "file" else path.is_dir()
    except (OSError, RuntimeError, ValueError):  # too long a name, a symlink loop, ...
        raise BadInputError(f"{what}: not a usable path. Received: {given[:200]!r}") from None
    if not inside:
        raise BadInputError(f"{what}: only files under the service's data folders can be used "
                            f"(serve limits.data_dirs). Received: {given[:200]!r}")
    if not exists:
        raise BadInputError(f"{what}: {'file' if kind == 'file' else 'directory'} not found on the server. "
                            f"Received: {given[:200]!r}")
    return path
