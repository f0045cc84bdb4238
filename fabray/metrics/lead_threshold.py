"""Threshold search on the lead score: the lead/false-alarm trade-off over candidate thresholds
and the lead-score-best threshold under a false-alarm budget."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import numpy as np

from fabray.metrics._inputs import _check_lengths
from fabray.metrics.alarm_policy import policy_alarms
from fabray.metrics.lead import LeadEpisodes, _LeadFrame, lead_score

logger = logging.getLogger(__name__)


def _threshold_grid(frame: _LeadFrame, prob: np.ndarray, candidates: int) -> np.ndarray:
    """Candidate thresholds, high → low: the distinct values among `candidates + 1` evenly spaced
    quantiles (0 … 1, "lower" method, so each is an observed probability) of the probabilities on
    rows whose event is defined."""
    scored = prob[frame.defined]
    if not np.isfinite(scored).all():
        raise ValueError("probabilities must be finite where the event is defined. Received: NaN/inf")
    levels = np.linspace(0.0, 1.0, max(int(candidates), 1) + 1)
    return np.unique(np.clip(np.quantile(scored, levels, method="lower"), 0.0, 1.0))[::-1]


def _threshold_scan(frame: _LeadFrame, prob: np.ndarray, candidates: int, clear_ratio: float,
                    hold_min: int) -> Iterator[tuple[float, "LeadEpisodes"]]:
    """(threshold, LeadEpisodes) for each candidate threshold, high → low, under the policy
    (threshold, clear_ratio, hold_min). The probabilities are checked before the first item."""
    prob = np.asarray(prob, dtype=np.float64).reshape(-1)
    _check_lengths(frame.n, prob=prob)
    grid = _threshold_grid(frame, prob, candidates) if frame.rows_scored else np.zeros(0)
    prob_filled = np.nan_to_num(prob, nan=-np.inf)

    def scan():
        for thr in grid:
            yield float(thr), frame.score(policy_alarms(prob_filled, frame.segments, float(thr), clear_ratio, hold_min))

    return scan()


def lead_tradeoff(
    event: np.ndarray,
    prob: np.ndarray,
    segments: np.ndarray,
    minute_delay_s: np.ndarray,
    sla_delay_s: float,
    horizon: int,
    candidates: int = 100,
    early_window: int | None = None,
    clear_ratio: float = 1.0,
    hold_min: int = 0,
) -> dict[str, np.ndarray]:
    """The early-warning trade-off of a probability series over its thresholds: what a site gets
    for each false-alarm rate it tolerates (the lead-time analogue of a precision-recall curve).

    For each candidate threshold (as `best_lead_threshold`'s, high → low), the alarm of the policy
    (threshold, `clear_ratio`, `hold_min`) scored by `lead_episodes`. Returns arrays [K]:
    threshold, false_alarm_runs_per_zone_day, warned_at_start_fraction,
    warned_before_onset_fraction, lead_score (standard profile). Empty arrays with no scored row;
    fractions and scores NaN with no episode.
    """
    frame = _LeadFrame(event, segments, minute_delay_s, sla_delay_s, horizon, early_window)
    rows = []
    for thr, rec in _threshold_scan(frame, prob, candidates, clear_ratio, hold_min):
        e = rec.n_episodes
        rows.append((
            float(thr), rec.false_alarm_runs / rec.zone_days,
            float(rec.warned_at_start.sum()) / e if e else math.nan,
            float(rec.warned_before_onset.sum()) / e if e else math.nan,
            lead_score(rec) if e else math.nan,
        ))
    keys = ("threshold", "false_alarm_runs_per_zone_day", "warned_at_start_fraction",
            "warned_before_onset_fraction", "lead_score")
    cols = list(zip(*rows)) if rows else [()] * len(keys)
    return {k: np.asarray(c, dtype=np.float64) for k, c in zip(keys, cols)}


def best_lead_threshold(
    event: np.ndarray,
    prob: np.ndarray,
    segments: np.ndarray,
    minute_delay_s: np.ndarray,
    sla_delay_s: float,
    horizon: int,
    profile: str = "standard",
    candidates: int = 100,
    early_window: int | None = None,
    clear_ratio: float = 1.0,
    hold_min: int = 0,
    max_false_alarms_per_zone_day: float | None = None,
) -> tuple[float, float]:
    """The threshold (alarm where `prob >= threshold`) that maximises `lead_score` under
    `profile`, and that score. `clear_ratio` / `hold_min` < 1 / > 0: the alarm is that of
    `fabray.alarm.AlarmPolicy(threshold, clear_ratio, hold_min)` (hysteresis, hold) instead.

    `max_false_alarms_per_zone_day`: the site's false-alarm budget. Only thresholds whose
    false-alarm runs per zone-day stay within it are eligible; when none does, the highest
    candidate (fewest alarms) is returned, with its score, and a warning is logged.

    Candidates are the distinct values among `candidates + 1` evenly spaced quantiles (0 … 1,
    "lower" method, so each is an observed probability) of the probabilities on rows whose event
    is defined: every candidate alarms at least once, and "never alarm" (score 0) is not offered.
    Ties go to the highest threshold (fewest alarms). With no episode (the score is NaN
    everywhere) or no defined row: returns (0.5, NaN).
    """
    frame = _LeadFrame(event, segments, minute_delay_s, sla_delay_s, horizon, early_window)
    scan = _threshold_scan(frame, prob, candidates, clear_ratio, hold_min)  # checks prob first
    if frame.start.size == 0 or frame.rows_scored == 0:
        logger.warning("best_lead_threshold: no delay episode among %d scored rows; returning 0.5",
                       frame.rows_scored)
        return 0.5, math.nan
    budget = math.inf if max_false_alarms_per_zone_day is None else float(max_false_alarms_per_zone_day)
    if not budget >= 0:
        raise ValueError(f"max_false_alarms_per_zone_day must be >= 0. Received: {max_false_alarms_per_zone_day}")
    best_thr, best = 0.5, -math.inf
    fallback: tuple[float, float] | None = None
    for thr, records in scan:
        score = lead_score(records, profile)
        if fallback is None:
            fallback = (float(thr), float(score))
        if records.false_alarm_runs / records.zone_days > budget:
            continue
        if score > best:  # strict: the first (highest) threshold keeps ties
            best_thr, best = float(thr), score
    if best == -math.inf and fallback is not None:
        logger.warning("best_lead_threshold: no threshold keeps false alarms within %.3g per zone-day; "
                       "returning the highest one (%.4g)", budget, fallback[0])
        return fallback
    return best_thr, float(best)
