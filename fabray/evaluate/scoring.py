"""How `fabray evaluate` scores one candidate on the test windows: its metrics and lead records
(`score_candidate`), the minute delays the lead metrics need, the alarm policy chosen on
validation (`lead_policy`) and the block-bootstrap F1 interval."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from fabray.evaluate.result import Candidate


def score_candidate(
    cand: Candidate,
    target: np.ndarray,
    segments: np.ndarray,
    minute_delay_s: np.ndarray | None = None,
    sla_delay_s: float = 60.0,
    horizon: int = 10,
    *,
    episode_causes: np.ndarray | None = None,
) -> Candidate:
    """Fill `cand.metrics`: event metrics at its threshold, the threshold, the `lead` object and
    the headline `lead_score` (and `lead_by_cause` when `episode_causes` [E] is given); keep the
    per-episode records in `cand.lead_records`.

    `minute_delay_s` [W] is each window end's own delay (None: no onset is observed before the
    fallback s + horizon)."""
    from fabray.metrics import HEADLINE_METRIC, event_metrics, lead_by_cause, lead_episodes, lead_summary

    target = np.asarray(target, dtype=np.float64)
    if minute_delay_s is None:
        minute_delay_s = np.zeros(target.size)
    cand.alarm = cand.policy.alarms(cand.prob, segments)  # [W]
    metrics: dict[str, Any] = event_metrics(target, cand.prob, cand.threshold, alarm=cand.alarm)
    metrics["threshold"] = float(cand.threshold)
    metrics["alarm_policy"] = cand.policy.to_dict()
    records = lead_episodes(target, cand.alarm, segments, minute_delay_s, sla_delay_s, horizon)
    metrics["lead"] = lead_summary(records)
    metrics[HEADLINE_METRIC] = metrics["lead"][HEADLINE_METRIC]
    if episode_causes is not None:
        metrics["lead_by_cause"] = lead_by_cause(records, episode_causes)
    if cand.note:
        metrics["note"] = cand.note
    cand.metrics = metrics
    cand.lead_records = records
    return cand


def minute_delays(prepared: Any, ends: np.ndarray) -> np.ndarray:
    """[W] float64 each window end's own transport delay, seconds: `prepared.minute_delay_s` when
    the prepared data carries it, else the (raw) transport-time feature (carried over empty
    minutes) minus the zone's nominal."""
    from fabray import schema

    ends = np.asarray(ends, dtype=np.int64)
    carried = getattr(prepared, "minute_delay_s", None)
    if carried is not None:
        return np.asarray(carried, dtype=np.float64)[ends]
    tt = schema.FEATURES.index(schema.TRANSPORT_TIME)
    raw_tt = prepared.features[ends, tt].astype(np.float64)
    nominal = np.asarray([prepared.nominal_s[z] for z in prepared.zones])[prepared.zone_codes[ends]]
    return raw_tt - nominal


def lead_policy(
    target: np.ndarray, prob: np.ndarray, segments: np.ndarray, minute_delay_s: np.ndarray,
    sla_delay_s: float, horizon: int, max_false_alarms_per_zone_day: float | None = None,
) -> Any:
    """The validation alarm policy of a scorer (`fabray.alarm.fit_alarm_policy`: threshold,
    hysteresis and hold by the lead score, within the false-alarm budget when one is set); the
    F1-best plain threshold when validation holds no delay episode (the lead score is undefined
    there)."""
    from fabray.alarm import AlarmPolicy, fit_alarm_policy

    policy, score = fit_alarm_policy(target, prob, segments, minute_delay_s, sla_delay_s, horizon,
                                     max_false_alarms_per_zone_day=max_false_alarms_per_zone_day)
    if not math.isfinite(score):
        return AlarmPolicy(_f1_threshold(target, prob))
    return policy


def block_bootstrap_f1(
    target: np.ndarray,
    alarms: Mapping[str, np.ndarray],
    segments: np.ndarray,
    *,
    block_minutes: int = 60,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """F1 of each alarm series on `resamples` block-bootstrap resamples of the test windows:
    {name: [resamples] F1}. Blocks are `block_minutes` consecutive windows of one segment (delay
    episodes and alarms are autocorrelated, so single windows are not independent); every name
    is scored on the same resampled blocks, so differences between names are paired.

    F1 needs only the TP/FP/FN sums, so each resample is a weighted sum of per-block counts.
    NaN targets are skipped."""
    target = np.asarray(target, dtype=np.float64)
    defined = ~np.isnan(target)
    event = np.nan_to_num(target) == 1
    seg = np.asarray(segments)
    new_seg = np.r_[True, seg[1:] != seg[:-1]]
    pos_in_seg = np.arange(seg.size) - np.maximum.accumulate(np.where(new_seg, np.arange(seg.size), 0))
    block = np.cumsum(new_seg | (pos_in_seg % block_minutes == 0)) - 1  # [W] block id
    n_blocks = int(block[-1]) + 1 if block.size else 0
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n_blocks, np.full(n_blocks, 1.0 / n_blocks), size=resamples) if n_blocks else None
    out = {}
    for name, alarm in alarms.items():
        alarm = np.asarray(alarm, dtype=bool)
        counts = np.stack([
            np.bincount(block, weights=(alarm & event & defined).astype(float), minlength=n_blocks),
            np.bincount(block, weights=(alarm & ~event & defined).astype(float), minlength=n_blocks),
            np.bincount(block, weights=(~alarm & event & defined).astype(float), minlength=n_blocks),
        ], axis=1)  # [blocks, 3]: tp, fp, fn
        if weights is None:
            out[name] = np.full(resamples, np.nan)
            continue
        tp, fp, fn = (weights @ counts).T  # [resamples] each
        den = 2 * tp + fp + fn
        out[name] = np.where(den > 0, 2 * tp / np.maximum(den, 1e-12), 0.0)
    return out


def _f1_threshold(y: np.ndarray, prob: np.ndarray) -> float:
    from fabray.metrics import best_threshold

    return float(min(max(best_threshold(y, prob)[0], 0.0), 1.0))
