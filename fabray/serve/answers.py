"""Scores of a batch of windows → the answers of /v1/predict and of the live feed (pure).

A scoring replica scores windows (`ScoredBatch`: every model's score, or only the rules model's
for the windows the deadline sent to the fast lane, deadline.py) and `answer` turns them into
one answer per window with a `combine` function: the replica's local copy of the ensemble on
/v1/predict (local_ensemble.py), the keeper's own state for the live feed (deployments/keeper.py)
— the same code either way. Each answer names the rules that fired and each member's
contribution (weight × score, `alerts.contributions`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fabray.serve.alerts import contributions
from fabray.serve.deadline import deadline_reason
from fabray.serve.keeper import RULE_MODEL

#: combine(version, zones, scores [B, M], rules [B], degraded [B], last_rows [B, F]) → [{prediction_id, probability, weights}]
Combine = Callable[..., list[dict[str, Any]]]


@dataclass
class ScoredBatch:
    """Windows scored by one model version.

    scores: [B, M] in `model_names` order, NaN where a model gave no score (for a window of the
    fast lane: every model but the run's `rule` model). rules: [B] the rules model's score.
    fired: per window the rules that fired. fast: [B] True where the fast lane answered alone.
    last_rows: [B, F] each window's last minute, raw (the learned gate's context)."""

    version: str
    run_id: str
    threshold: float
    model_names: tuple[str, ...]
    scores: np.ndarray
    rules: np.ndarray
    fired: list[list[dict[str, Any]]]
    fast: np.ndarray
    last_rows: np.ndarray
    rules_model: str = RULE_MODEL  # what answers the fast lane, for the reason text
    error: str | None = field(default=None)


def answer(batch: ScoredBatch, zones: Sequence[str], reasons: Sequence[Sequence[str]], combine: Combine,
           budget_ms: float | None = None) -> list[dict[str, Any]]:
    """One answer per window (or {"error": ...} for a window no model, not even the rules,
    scored finitely: the caller answers that request 503)."""
    names = batch.model_names
    scores = np.asarray(batch.scores, dtype=np.float64)  # [B, M]
    rules = np.asarray(batch.rules, dtype=np.float64)  # [B]
    finite = np.isfinite(scores)  # [B, M]
    why = [tuple(r) for r in reasons]
    for i in range(len(zones)):
        if batch.fast[i]:
            dropped = [names[m] for m in np.flatnonzero(~finite[i])]
            why[i] = (*why[i], deadline_reason(dropped, budget_ms, batch.rules_model))
        elif not finite[i].all():  # a model answered NaN/inf: the rules decide
            bad = [names[m] for m in np.flatnonzero(~finite[i])]
            why[i] = (*why[i], f"model output: no finite score from {', '.join(bad)}")
    degraded = [bool(r) for r in why]
    combined = combine(batch.version, list(zones), np.where(finite, scores, 0.0),
                       np.where(np.isfinite(rules), rules, 0.0), degraded, batch.last_rows)
    out = []
    for i, (zone, c) in enumerate(zip(zones, combined)):
        probability = float(c["probability"])
        if (degraded[i] and not np.isfinite(rules[i])) or not np.isfinite(probability):
            out.append({"error": "the models gave no finite score for this window; retry or check its values"})
            continue
        a = {
            "prediction_id": c["prediction_id"],
            "zone": zone,
            "model_version": batch.version,
            "run_id": batch.run_id,
            "scores": {name: (float(v) if ok else None) for name, v, ok in zip(names, scores[i], finite[i])},
            "probability": probability,
            "decision": probability >= batch.threshold,
            "threshold": batch.threshold,
            "weights": c["weights"],
            "degraded": degraded[i],
            "degraded_reasons": list(why[i]),
            "rules_fired": list(batch.fired[i]),
        }
        if degraded[i] and a["scores"].get(RULE_MODEL) is None:  # the rules baseline answered: its score
            a["contributions"] = {RULE_MODEL: {"score": float(rules[i]), "weight": 1.0,
                                               "contribution": float(rules[i]), "share": 1.0}}
        else:
            a["contributions"] = contributions(a)
        out.append(a)
    return out
