"""Prometheus metrics for the Serve deployments: created and updated so that a metric never
fails a request (Ray's metrics may be unavailable, e.g. outside a replica)."""

import logging
from typing import Any, Optional

logger = logging.getLogger(__name__)


def _metric(kind: str, name: str, description: str, tag_keys: tuple[str, ...] = (), **kwargs: Any) -> Any:
    """A Ray metric exported to Prometheus, or None where metrics are unavailable."""
    try:
        from ray.serve import metrics

        return getattr(metrics, kind)(name, description=description, tag_keys=tag_keys, **kwargs)
    except Exception as err:  # noqa: BLE001 - metrics are never worth failing a request
        logger.warning("metric %s unavailable: %s", name, err)
        return None


def _record(metric: Any, method: str, value: float, tags: Optional[dict] = None) -> None:
    """Update a metric; a counter is only increased by a positive amount; never raises."""
    if metric is None or (method == "inc" and value <= 0):
        return
    try:
        getattr(metric, method)(value, tags=tags)
    except Exception:  # noqa: BLE001 - metrics are never worth failing a request
        logger.debug("metric update failed", exc_info=True)
