"""Per-epoch progress from every trainer to the driver, as log lines a person can follow.

A Train V2 `UserCallback` runs in each trainer's controller actor, not in the driver. This one
forwards every report (epoch, loss, validation metrics) to a small `ray.util.queue.Queue` actor;
a thread in the driver drains it, logs a line per epoch and keeps the reports. Light on purpose:
the controller imports this module, and it must not pull in TensorFlow.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from ray.train import Checkpoint, UserCallback

logger = logging.getLogger(__name__)


class ForwardReports(UserCallback):
    """Puts `{"model": name, **metrics, "checkpoint_path": ...}` on the queue after each report."""

    def __init__(self, model: str, queue: Any) -> None:
        self.model = model
        self.queue = queue

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint: Checkpoint | None):
        item = {"model": self.model, **(metrics[0] if metrics else {})}
        if checkpoint is not None:
            item["checkpoint_path"] = checkpoint.path
        try:
            self.queue.put(item, timeout=10)
        except Exception as err:  # noqa: BLE001 - progress must never fail a training run
            logger.warning("progress for %s not forwarded: %s", self.model, err)

    def after_exception(self, run_context, worker_exceptions: dict[int, Exception]):
        for rank, err in worker_exceptions.items():
            try:
                self.queue.put({"model": self.model, "worker_error": f"rank {rank}: {err!r}"[:500]}, timeout=10)
            except Exception:  # noqa: BLE001
                pass


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if not math.isfinite(value) else f"{value:.4f}"
    return "—" if value is None else str(value)


def format_epoch(item: dict[str, Any]) -> str:
    """One progress line: 'lstm  epoch 2/5  loss 0.4123  val_pr_auc 0.3310  val_f1 0.2500  (best 2)'."""
    if "worker_error" in item:
        return f"{item['model']}: worker failed ({item['worker_error']}); Ray Train restarts it if retries remain"
    parts = [f"{item.get('model', '?')}", f"epoch {item.get('epoch', '?')}/{item.get('epochs', '?')}",
             f"loss {_fmt(item.get('loss'))}"]
    for key in ("val_loss", "val_pr_auc", "val_f1"):
        if key in item:
            parts.append(f"{key} {_fmt(item[key])}")
    stops = (", stopping early" if item.get("stopped_early") else "") + (
        ", budget spent" if item.get("stopped_by_budget") else "")
    parts.append(f"(best epoch {item.get('best_epoch', '?')}{stops})")
    return "  ".join(parts)


class ProgressMonitor:
    """Drains the queue in a daemon thread; `reports[model]` keeps every report, in order.

    `on_report(item)`, when given, is called (in the monitor's thread) with every report and
    worker error, after it is logged: a hook for callers that follow a run (a service's job
    status, a test that waits for the first checkpoint). Its exceptions are logged, not raised.
    """

    def __init__(self, poll_s: float = 0.5, on_report: Callable[[dict[str, Any]], None] | None = None) -> None:
        from ray.util.queue import Queue

        self.queue = Queue(actor_options={"num_cpus": 0})
        self.reports: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._on_report = on_report
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fabray-progress", daemon=True)

    def callback(self, model: str) -> ForwardReports:
        return ForwardReports(model, self.queue)

    def __enter__(self) -> ProgressMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._drain()
        try:
            self.queue.shutdown(force=True)
        except Exception:  # noqa: BLE001 - Ray may already be shutting down
            logger.debug("progress queue already gone")

    def _handle(self, item: dict[str, Any]) -> None:
        if "worker_error" not in item:
            self.reports[item.get("model", "?")].append(item)
        if item.get("resumed_from_epoch") is not None:
            logger.warning("resuming %s from epoch %s: its worker was restarted from the last "
                           "checkpoint", item.get("model", "?"), item["resumed_from_epoch"])
        logger.log(logging.WARNING if "worker_error" in item else logging.INFO, "%s", format_epoch(item))
        if self._on_report is not None:
            try:
                self._on_report(item)
            except Exception:  # noqa: BLE001 - a hook must never stop the progress thread
                logger.exception("on_report hook failed")

    def _drain(self) -> None:
        try:
            while True:
                self._handle(self.queue.get_nowait())
        except Exception:  # noqa: BLE001 - Empty, or the actor is gone
            return

    def _run(self) -> None:
        from ray.util.queue import Empty

        while not self._stop.is_set():
            try:
                item = self.queue.get(timeout=self._poll_s)
            except Empty:
                continue
            except Exception as err:  # noqa: BLE001 - actor gone: stop quietly
                logger.debug("progress queue closed: %s", err)
                return
            self._handle(item)
