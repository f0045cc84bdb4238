"""A wall-clock budget for training (issue 14), shared by the models (pure: no Ray, no clock).

`fabray train --budget 60m` (or `train.budget_min`) gives the whole training one deadline. The
models run `concurrency` at a time, so a model starting with `left` models still to start
(itself included) gets an equal share of what remains: `(deadline − now) ÷ ceil(left ÷
concurrency)` — the waves still to run split the time, and a model that stops early (or fails)
hands its unused time to the later ones. A model's loop stops starting new epochs once the next
epoch would end after its share (`fabray.train.spec.budget_allows_next_epoch`); early stopping
still picks the best epoch among those run. The manifest records each model's share, its epochs
and whether the budget stopped it.
"""

from __future__ import annotations

import math
import re

from fabray.errors import BadInputError

_UNIT_MIN = {"h": 60.0, "m": 1.0, "min": 1.0, "s": 1.0 / 60.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(h|min|m|s)")


def parse_duration_minutes(text: str | float | int) -> float:
    """'60m', '1h30m', '90s', '1.5h', '45min' or a plain number (minutes) → minutes (> 0)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        raw = str(text).strip().lower()
        try:
            value = float(raw)
        except ValueError:
            parts = _PART.findall(raw)
            if not parts or _PART.sub("", raw).strip():
                raise BadInputError(
                    "a duration is a number of minutes or units h/m/min/s, e.g. 60m, 1h30m, 90s. "
                    f"Received: {text!r}"
                ) from None
            value = sum(float(n) * _UNIT_MIN[u] for n, u in parts)
    if not (math.isfinite(value) and value > 0):
        raise BadInputError(f"a duration must be > 0. Received: {text!r}")
    return value


def model_deadline(now_unix: float, run_deadline_unix: float | None, models_left: int,
                   concurrency: int) -> float | None:
    """The deadline of a model starting now, with `models_left` (itself included) still to start
    and `concurrency` trainers at once: an equal share of the time left per wave still to run,
    never past the run's deadline. None without a budget."""
    if run_deadline_unix is None:
        return None
    if models_left < 1 or concurrency < 1:
        raise ValueError(f"need models_left >= 1 and concurrency >= 1. Received: {models_left=}, {concurrency=}")
    waves = math.ceil(models_left / concurrency)
    remaining = max(0.0, run_deadline_unix - now_unix)
    return min(run_deadline_unix, now_unix + remaining / waves)


def budget_summary(budget_min: float, started_unix: float, finished_unix: float,
                   models: dict[str, dict]) -> dict:
    """The manifest's "budget" entry: the budget, the time used, how far each model got."""
    return {
        "minutes": budget_min,
        "seconds_used": round(finished_unix - started_unix, 1),
        "within_budget": finished_unix - started_unix <= 60.0 * budget_min,
        "models": {
            name: {"epochs_run": entry.get("epochs_run", 0), "best_epoch": entry.get("best_epoch"),
                   "stopped_by_budget": bool(entry.get("stopped_by_budget")),
                   "stopped_early": bool(entry.get("stopped_early")),
                   "share_s": entry.get("budget_share_s"), "status": entry.get("status")}
            for name, entry in models.items()
        },
    }


__all__ = ["budget_summary", "model_deadline", "parse_duration_minutes"]
