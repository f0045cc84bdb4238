"""Every metric fabray reports (DESIGN §1), in one place: training, ensemble fitting, evaluation
and serving all call these functions, so a number means the same thing everywhere.

Conventions shared by every function here:

- **Undefined targets are skipped.** A target is NaN where it is undefined (fewer than `horizon`
  minutes follow the row, or none of them completed a transport). Such rows are dropped before
  anything is counted; `n` says how many rows were scored. A NaN or inf *prediction* for a row
  whose target is defined is a bug upstream and raises `ValueError`.
- **Events** are 0/1 targets (`delay_event`); scores are probabilities in [0, 1]; a row is an
  alarm where `prob >= threshold`.
- **0/0 ratios** (precision with no alarm, recall with no event, …) are 0.0, as scikit-learn's
  `zero_division=0`. **AUCs** need both classes: with only one class present (or no row at all)
  `pr_auc` and `roc_auc` are NaN. With no scored row at all every ratio is NaN.
- `pr_auc` is average precision (the step-wise area under the precision-recall curve,
  scikit-learn's `average_precision_score`), not the trapezoid, which overstates it.

Lead time (`lead_times`) is defined in its docstring.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

logger = logging.getLogger(__name__)

__all__ = [
    "EVENT_METRICS",
    "DELAY_METRICS",
    "event_metrics",
    "delay_metrics",
    "probability_losses",
    "best_threshold",
    "episode_starts",
    "lead_times",
    "lead_time_summary",
]

#: Keys of `event_metrics`, in the order reports print them.
EVENT_METRICS: tuple[str, ...] = (
    "accuracy", "balanced_accuracy", "precision", "recall", "f1", "pr_auc", "roc_auc",
    "tp", "fp", "fn", "tn", "n", "positive_rate",
)
#: Keys of `delay_metrics`.
DELAY_METRICS: tuple[str, ...] = ("mae", "rmse", "n")


def _defined_pairs(y_true: np.ndarray, y_pred: np.ndarray, pred_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Drop rows whose target is NaN; refuse non-finite predictions on the rows that remain."""
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)  # [N]
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)  # [N]
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"targets and {pred_name} must have the same length. "
            f"Received: {y_true.shape[0]} targets, {y_pred.shape[0]} {pred_name}"
        )
    keep = ~np.isnan(y_true)
    y_true, y_pred = y_true[keep], y_pred[keep]
    bad = ~np.isfinite(y_pred)
    if bad.any():
        raise ValueError(
            f"{pred_name} must be finite where the target is defined. "
            f"Received: {int(bad.sum())} NaN/inf values, first at defined row {int(np.argmax(bad))}"
        )
    if np.isinf(y_true).any():
        raise ValueError("targets must be finite or NaN (undefined). Received: inf")
    return y_true, y_pred


def _events(y_true: np.ndarray) -> np.ndarray:
    """0/1 float targets → bool; anything else is an error."""
    is_binary = (y_true == 0) | (y_true == 1)
    if not is_binary.all():
        bad = y_true[~is_binary][:5]
        raise ValueError(f"event targets must be 0, 1 or NaN. Received: {bad.tolist()}")
    return y_true == 1


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else 0.0


def event_metrics(y_true: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Classification metrics of event probabilities, alarm where `prob >= threshold`.

    Args:
        y_true: [N] delay_event, 0/1, NaN where undefined (skipped).
        prob: [N] predicted probability of an event.
        threshold: decision threshold in [0, 1].

    Returns:
        A dict with the keys of `EVENT_METRICS`: accuracy, balanced_accuracy (mean of the recall
        of each class present), precision, recall, f1, pr_auc, roc_auc (NaN with one class),
        tp, fp, fn, tn, n (rows scored), positive_rate (share of events among scored rows).
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1]. Received: threshold={threshold}")
    y_true, prob = _defined_pairs(y_true, prob, "probabilities")
    event = _events(y_true)  # [n]
    alarm = prob >= threshold  # [n]
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


def delay_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Regression metrics of predicted `delay_s`: {mae, rmse, n}; NaN targets skipped.

    With no defined target, mae and rmse are NaN and n is 0.
    """
    y_true, y_pred = _defined_pairs(y_true, y_pred, "predictions")
    if y_true.size == 0:
        return {"mae": math.nan, "rmse": math.nan, "n": 0}
    err = y_pred - y_true  # [n]
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err * err))),
        "n": int(err.size),
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


def episode_starts(event_true: np.ndarray, zone_codes: np.ndarray) -> np.ndarray:
    """Row indices where a delay episode starts: an event row whose previous row is not an event
    of the same zone (or which is its zone's first row). NaN targets count as "not an event"."""
    event = np.nan_to_num(np.asarray(event_true, dtype=np.float64).reshape(-1), nan=0.0) == 1  # [N]
    zone_codes = np.asarray(zone_codes).reshape(-1)
    if zone_codes.shape != event.shape:
        raise ValueError(
            f"event_true and zone_codes must have the same length. "
            f"Received: {event.size} and {zone_codes.size}"
        )
    new_zone = np.ones(event.size, dtype=bool)
    new_zone[1:] = zone_codes[1:] != zone_codes[:-1]
    prev_event = np.zeros(event.size, dtype=bool)
    prev_event[1:] = event[:-1]
    return np.flatnonzero(event & (new_zone | ~prev_event))


def lead_times(event_true: np.ndarray, alarm: np.ndarray, zone_codes: np.ndarray) -> np.ndarray:
    """Minutes of warning the alarm gave before each delay episode; NaN for an episode it missed.

    The series is given in (zone, time) order, one row per minute and no gap inside a zone (pass a
    segment id that changes at a gap as `zone_codes` when the data has gaps).

    What "episode start" means: the label at row t concerns minutes t+1 … t+horizon, so an
    *episode* is a maximal run of consecutive event rows of one zone, and its *start* is its
    first row s: the first minute at which the coming `horizon` minutes are, on average, late
    beyond the SLA. It is a forecast time, not the minute the delay is first observed (that is
    somewhere in s+1 … s+horizon); a lead of 0 therefore still means a warning before the delay.

    The lead of the episode starting at s is s − a, where a is the first row of the unbroken run
    of alarm rows (same zone) that reaches s: 0 if the alarm is raised exactly at s, k if it was
    raised k minutes earlier and stayed up. If the alarm is down at s the episode is missed: NaN.
    (An alarm raised only after s does not count: it is late.) An episode at a zone's first row
    is left-censored: its lead counts only alarms from that row on.

    Args:
        event_true: [N] delay_event (0/1, NaN counts as not an event).
        alarm: [N] bool (or 0/1) alarms, e.g. `prob >= threshold`.
        zone_codes: [N] zone (or segment) id of each row.

    Returns:
        [episodes] float lead times in minutes, in row order, NaN where missed.
    """
    alarm = np.asarray(alarm).reshape(-1)
    if alarm.dtype != bool:
        alarm = np.nan_to_num(alarm.astype(np.float64), nan=0.0) != 0
    zone_codes = np.asarray(zone_codes).reshape(-1)
    starts = episode_starts(event_true, zone_codes)  # [E]
    if alarm.shape != zone_codes.shape:
        raise ValueError(
            f"alarm and zone_codes must have the same length. Received: {alarm.size} and {zone_codes.size}"
        )
    rows = np.arange(alarm.size)
    new_zone = np.ones(alarm.size, dtype=bool)
    new_zone[1:] = zone_codes[1:] != zone_codes[:-1]
    prev_alarm = np.zeros(alarm.size, dtype=bool)
    prev_alarm[1:] = alarm[:-1]
    run_begins = alarm & (new_zone | ~prev_alarm)  # [N] first row of each alarm run
    run_start = np.maximum.accumulate(np.where(run_begins, rows, 0))  # [N] valid where alarm
    return np.where(alarm[starts], (starts - run_start[starts]).astype(np.float64), np.nan)


def lead_time_summary(leads: np.ndarray) -> dict[str, float]:
    """Summary of `lead_times`: episodes, caught (alarm up at the start), caught_fraction, and the
    median and mean lead (minutes) over the caught episodes (NaN when none was caught)."""
    leads = np.asarray(leads, dtype=np.float64).reshape(-1)
    caught = leads[~np.isnan(leads)]
    episodes = int(leads.size)
    return {
        "episodes": episodes,
        "caught": int(caught.size),
        "caught_fraction": caught.size / episodes if episodes else math.nan,
        "median_lead_min": float(np.median(caught)) if caught.size else math.nan,
        "mean_lead_min": float(np.mean(caught)) if caught.size else math.nan,
    }
