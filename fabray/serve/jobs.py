"""Job bookkeeping of the serving application, on the store's files (no Ray): how many jobs of
a kind are active, jobs a crash or a stop left `running`, and errors fit to show a client.

A job's status is `STORE/jobs/<id>/status.json` (written by the job itself, see batch.py and
retrain.py). The JobManager deployment (deployments/jobs.py) is the only one starting jobs; when it starts,
every job still marked pending or running belongs to an earlier instance whose tasks died with
it: `recover_interrupted` marks them failed, so no job reports `running` for ever.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from pathlib import Path
from typing import Any

from fabray.errors import BadInputError
from fabray.files import utc_now
from fabray.serve.store import ModelStore

logger = logging.getLogger(__name__)

ACTIVE = ("pending", "running")
INTERRUPTED = "interrupted: the service stopped or crashed while the job ran; submit it again"


def new_job(store: ModelStore, kind: str, **fields: Any) -> dict[str, Any]:
    """Create a job's status (pending) in the store; the status, with its new `job_id`."""
    job_id = f"{kind}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
    status = {"job_id": job_id, "kind": kind, "status": "pending", "submitted_at": utc_now(),
              "scheduled": False, **fields}
    store.write_json(store.job_dir(job_id) / "status.json", status)
    return status


def job_statuses(store: ModelStore) -> list[dict[str, Any]]:
    """Every readable job status in the store (damaged ones are skipped, with a warning)."""
    out = []
    for path in sorted(store.jobs_dir.glob("*/status.json")):
        try:
            status = store.read_json(path)
        except BadInputError as err:
            logger.warning("unreadable job status %s: %s", path, err)
            continue
        if status:
            out.append(status)
    return out


def count_active(store: ModelStore, kind: str) -> int:
    """Jobs of `kind` that are pending or running."""
    return sum(1 for s in job_statuses(store) if s.get("kind") == kind and s.get("status") in ACTIVE)


def recover_interrupted(store: ModelStore, reason: str = INTERRUPTED) -> list[str]:
    """Mark every pending or running job failed (call once when the job manager starts)."""
    recovered = []
    for status in job_statuses(store):
        if status.get("status") in ACTIVE and status.get("job_id"):
            status.update(status="failed", finished_at=utc_now(), error=reason)
            store.write_json(store.job_dir(status["job_id"]) / "status.json", status)
            recovered.append(status["job_id"])
    if recovered:
        logger.warning("jobs interrupted by the last stop, now marked failed: %s", recovered)
    return recovered


def root_cause(err: BaseException) -> BaseException:
    """The exception a remote call raised, without Ray's wrappers (RayTaskError.cause)."""
    seen = 0
    while getattr(err, "cause", None) is not None and isinstance(err.cause, BaseException) and seen < 10:
        err = err.cause
        seen += 1
    return err


_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?!v1/|docs\b|healthz\b)(?:[^\s'\"/:,;()\[\]{}]+/)*([^\s'\"/:,;()\[\]{}]+)")


def redact_paths(text: str) -> str:
    """`text` with every absolute server path replaced by its last component (.../name); the
    API's own routes (/v1/..., /docs, /healthz) are left alone."""
    return _ABSOLUTE_PATH.sub(lambda m: f".../{m.group(1)}", text)


def public_error(err: BaseException, store_root: str | Path | None = None) -> str:
    """A message for a job's status: a bad input's own message (store paths made relative), or
    only the kind of an internal failure (its traceback goes to the log, not to clients)."""
    err = root_cause(err)
    if isinstance(err, BadInputError):
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        if store_root is not None:
            message = message.replace(str(Path(store_root)) + "/", "").replace(str(Path(store_root)), "<store>")
        return redact_paths(message)[:1000]
    return f"internal error ({type(err).__name__}); details in the server log"
