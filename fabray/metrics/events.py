"""Event metrics of per-row predictions (the conventions are `fabray.metrics`'): the confusion
counts and ratios, PR-AUC and ROC-AUC of `event_metrics`, the probability losses and the F1-best
threshold."""

from __future__ import annotations

import logging
import math

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from fabray.metrics._inputs import _as_alarm, _check_lengths, _defined_pairs, _events, _ratio

logger = logging.getLogger(__name__)


#: Keys of `event_metrics`, in the order reports print them.
EVENT_METRICS: tuple[str, ...] = (
    "accuracy", "balanced_accuracy", "precision", "recall", "f1", "pr_auc", "roc_auc",
    "tp", "fp", "fn", "tn", "n", "positive_rate",
)


def event_metrics(
    y_true: np.ndarray, prob: np.ndarray, threshold: float = 0.5, alarm: np.ndarray | None = None,
) -> dict[str, float]:
    """Classification metrics of event probabilities, alarm where `prob >= threshold`.

    Args:
        y_true: [N] delay_event, 0/1, NaN where undefined (skipped).
        prob: [N] predicted probability of an event.
        threshold: decision threshold in [0, 1].
        alarm: [N] bool alarm to count instead of `prob >= threshold` (e.g. an
            `fabray.alarm.AlarmPolicy`'s); the AUCs still rank `prob`.

    Returns:
        A dict with the keys of `EVENT_METRICS`: accuracy, balanced_accuracy (mean of the recall
        of each class present), precision, recall, f1, pr_auc, roc_auc (NaN with one class),
        tp, fp, fn, tn, n (rows scored), positive_rate (share of events among scored rows).
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1]. Received: threshold={threshold}")
    if alarm is not None:
        alarm = _as_alarm(alarm)
        _check_lengths(np.asarray(y_true).reshape(-1).size, alarm=alarm)
        alarm = alarm[~np.isnan(np.asarray(y_true, dtype=np.float64).reshape(-1))]
    y_true, prob = _defined_pairs(y_true, prob, "probabilities")
    event = _events(y_true)  # [n]
    alarm = prob >= threshold if alarm is None else alarm  # [n]
    n = int(event.size)
    if n == 0:
        logger.warning("event_metrics: no row with a defined target; every metric is NaN")
        return {
            key: (0 if key in ("tp", "fp", "fn", "tn", "n") else math.nan) for key in EVENT_METRICS
        }
    tp = int(np.sum(alarm & event))
    fp = int(np.sum(alarm & ~event))
    fn = int(np.sum(~alarm & event))
    tn = int(np.sum(~alarm & ~event))
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    class_recalls = [tp / (tp + fn)] if tp + fn else []
    class_recalls += [tn / (tn + fp)] if tn + fp else []
    both_classes = 0 < tp + fn < n
    return {
        "accuracy": (tp + tn) / n,
        "balanced_accuracy": float(np.mean(class_recalls)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "pr_auc": float(average_precision_score(event, prob)) if both_classes else math.nan,
        "roc_auc": float(roc_auc_score(event, prob)) if both_classes else math.nan,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "n": n,
        "positive_rate": (tp + fn) / n,
    }


def probability_losses(y_true: np.ndarray, prob: np.ndarray, eps: float = 1e-4) -> dict[str, float]:
    """Proper scoring rules of event probabilities: {log_loss, brier, n}, NaN targets skipped.

    log_loss clips probabilities to [eps, 1 − eps] (one confident miss costs at most
    −log(eps) ≈ 9.2 nats); brier is the mean squared error of the probability.
    """
    y_true, prob = _defined_pairs(y_true, prob, "probabilities")
    event = _events(y_true)
    if event.size == 0:
        return {"log_loss": math.nan, "brier": math.nan, "n": 0}
    p = np.clip(prob, eps, 1.0 - eps)
    log_loss = -np.mean(np.where(event, np.log(p), np.log1p(-p)))
    return {
        "log_loss": float(log_loss),
        "brier": float(np.mean((prob - y_true) ** 2)),
        "n": int(event.size),
    }


def best_threshold(y_true: np.ndarray, prob: np.ndarray) -> tuple[float, float]:
    """The threshold that maximizes F1 (alarm where `prob >= threshold`) and that F1.

    The threshold is one of the predicted probabilities, so `event_metrics(y_true, prob,
    threshold)["f1"]` equals the F1 returned. Ties go to the highest threshold (fewest alarms).
    NaN targets are skipped. With no event among the scored rows no threshold helps: returns
    (0.5, 0.0).
    """
    y_true, prob = _defined_pairs(y_true, prob, "probabilities")
    event = _events(y_true)
    n_events = int(event.sum())
    if n_events == 0:
        logger.warning("best_threshold: no event among %d scored rows; returning 0.5", event.size)
        return 0.5, 0.0
    order = np.argsort(-prob, kind="stable")  # highest probability first
    prob_sorted = prob[order]  # [n]
    tp = np.cumsum(event[order])  # [n] alarms at threshold = prob_sorted[i] are rows 0..i ...
    fp = np.arange(1, prob.size + 1) - tp
    # ... but only at the last row of a run of equal probabilities (ties alarm together).
    last_of_value = np.append(prob_sorted[1:] != prob_sorted[:-1], True)
    f1 = np.where(last_of_value, 2 * tp / (2 * tp + fp + (n_events - tp)), -1.0)  # [n]
    best = int(np.argmax(f1))  # first maximum = highest threshold among ties
    return float(prob_sorted[best]), float(f1[best])
