"""Return on investment from measured metrics (seed §6), pure arithmetic.

The seed assumes every one of 37 delays a day is avoided (37 × 2,000,000 KRW × 30 days = 2.22
billion KRW a month, "444×" one H100's 5,000,000 KRW). Here the share caught is the measured
recall, and the false alarms that come with it follow from the measured confusion counts:

    caught/day        = recall × delays/day
    false alarms/day  = delays/day × FP / (TP + FN)      (= caught × (1 − precision) / precision)
    value/day         = caught × avoidable_fraction × cost/delay − false alarms × cost/false alarm
    value/month       = value/day × days/month
    net/month         = value/month − gpus × GPU cost/month
    roi_multiple      = value/month ÷ GPU cost/month     (the seed's "444×" is this ratio)

Recall and precision are measured per window (minute): the ratio of alarms to delays is carried
over to delays as the seed counts them. That is an approximation the report states.

A window counts as caught even when the alarm comes after the delay episode has started. When
the metrics carry a lead-time summary (`lead_time.caught_fraction`: episodes whose alarm was up
at their start), the stricter figures are given too: delays warned in advance per day and the
net value counting only those (`delays_warned_in_advance_per_day`, `net_value_per_month_warned_krw`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fabray.config import RoiConfig


def _num(metrics: Mapping[str, Any], key: str) -> float:
    value = metrics.get(key)
    return math.nan if value is None else float(value)


def roi(metrics: Mapping[str, Any], config: RoiConfig = RoiConfig()) -> dict[str, Any]:
    """ROI figures from `event_metrics`-style `metrics` (recall, precision; tp, fp, fn when
    present). NaN where the metrics do not define a figure."""
    recall = _num(metrics, "recall")
    precision = _num(metrics, "precision")
    tp, fp, fn = (_num(metrics, k) for k in ("tp", "fp", "fn"))
    delays = config.delays_per_day
    caught = recall * delays
    if math.isfinite(fp) and math.isfinite(tp + fn) and tp + fn > 0:
        false_alarms = delays * fp / (tp + fn)
    elif precision > 0:
        false_alarms = caught * (1.0 - precision) / precision
    else:  # no counts and no true alarm: the false alarms cannot be scaled from precision
        false_alarms = math.nan
    avoided = caught * config.avoidable_fraction
    value_day = avoided * config.cost_per_delay_krw - false_alarms * config.false_alarm_cost_krw
    value_month = value_day * config.days_per_month
    gpu_month = config.gpus * config.gpu_cost_per_month_krw
    seed_value_month = delays * config.cost_per_delay_krw * config.days_per_month
    lead = metrics.get("lead_time") or {}
    warned = _num(lead, "caught_fraction") * delays if isinstance(lead, Mapping) else math.nan
    value_warned_month = (
        warned * config.avoidable_fraction * config.cost_per_delay_krw
        - false_alarms * config.false_alarm_cost_krw
    ) * config.days_per_month
    return {
        "recall": recall,
        "precision": precision,
        "delays_per_day": delays,
        "delays_caught_per_day": caught,
        "delays_missed_per_day": delays - caught,
        "false_alarms_per_day": false_alarms,
        "alarms_per_day": caught + false_alarms,
        "delays_avoided_per_day": avoided,
        "value_per_day_krw": value_day,
        "value_per_month_krw": value_month,
        "gpu_cost_per_month_krw": gpu_month,
        "net_value_per_month_krw": value_month - gpu_month,
        "roi_multiple": value_month / gpu_month if gpu_month > 0 else math.nan,
        "delays_warned_in_advance_per_day": warned,
        "net_value_per_month_warned_krw": value_warned_month - gpu_month,
        "seed_claim_value_per_month_krw": seed_value_month,
        "seed_claim_roi_multiple": seed_value_month / gpu_month if gpu_month > 0 else math.nan,
        "parameters": config.model_dump(),
    }
