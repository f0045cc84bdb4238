"""What Ray Tune optimizes: the ensemble replayed over validation scores, then scored.

Pure: the Tune driver loads the validation predictions once, puts them in the object store and
calls `score_params` from each trial.
"""

from __future__ import annotations

import numpy as np

from fabray.ensemble.dynamic import replay
from fabray.ensemble.params import EnsembleParams
from fabray.metrics import event_metrics, probability_losses


def score_params(
    params: EnsembleParams,
    scores: np.ndarray,
    outcomes: np.ndarray,
    zone_codes: np.ndarray,
    regimes: np.ndarray | None,
    feedback_lag: int,
) -> dict[str, float]:
    """Replay the ensemble over scores [N, M] and return `event_metrics` at params.threshold
    (f1, pr_auc, …) plus the ensemble's log_loss and brier. NaN outcomes are skipped."""
    prob, _ = replay(scores, outcomes, zone_codes, regimes, params, feedback_lag)  # [N]
    metrics = event_metrics(outcomes, prob, params.threshold)
    losses = probability_losses(outcomes, prob)
    metrics["log_loss"] = losses["log_loss"]
    metrics["brier"] = losses["brier"]
    return metrics
