"""Return on investment from measured metrics (seed §6), pure arithmetic.

The seed assumes every one of 37 delays a day is avoided (37 × 2,000,000 KRW × 30 days = 2.22
billion KRW a month, "444×" one H100's 5,000,000 KRW). Here only delays **warned in time** count,
and the false alarms that come with them are measured too. With the `lead` object of the metrics
(episodes, `fabray.metrics.lead_metrics`):

    warned/day        = delays/day × episodes warned at or before their start / episodes
    false alarms/day  = delays/day × false-alarm units / episodes
    value/day         = warned × avoidable_fraction × cost/delay − false alarms × cost/false alarm
    value/month       = value/day × days/month
    net/month         = value/month − gpus × GPU cost/month
    roi_multiple      = value/month ÷ GPU cost/month     (the seed's "444×" is this ratio)

The measured ratios (warned episodes to episodes, false alarms to episodes) are carried over to
the seed's count of delays: one episode is one delay. A false alarm is a false-alarm *unit* as
the lead score counts them: a false-alarm run of m minutes is ⌈m / horizon⌉ needless
interventions (a standing alarm re-demands attention every horizon; counting runs only, an
always-on alarm would cost one intervention between two episodes). Metrics without units fall
back to runs. That is an approximation the report states.

Two more bases are given beside the headline one, so the figure's sensitivity is visible:
- stricter, `*_5min`: only episodes warned at least 5 minutes before the delay is first observed
  (time for a dispatcher to act);
- lenient, `*_minute`: the older per-minute reading, caught = minute recall × delays/day and
  false alarms = delays/day × FP / (TP + FN); it counts a delay as caught even when the alarm came
  after it had started. Without a `lead` object (older metrics) this is the only basis, and
  `basis` says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fabray.config import RoiConfig

BASIS_LEAD = "episodes warned at or before their start; false alarms = false-alarm units (runs, one per started horizon)"
BASIS_MINUTE = "minute recall and precision (no lead-time metrics given)"


def _num(metrics: Mapping[str, Any], key: str) -> float:
    value = metrics.get(key)
    return math.nan if value is None else float(value)


def _minute_figures(metrics: Mapping[str, Any], delays: float) -> tuple[float, float]:
    """(caught/day, false alarms/day) from minute recall and the confusion counts."""
    recall = _num(metrics, "recall")
    precision = _num(metrics, "precision")
    tp, fp, fn = (_num(metrics, k) for k in ("tp", "fp", "fn"))
    caught = recall * delays
    if math.isfinite(fp) and math.isfinite(tp + fn) and tp + fn > 0:
        false_alarms = delays * fp / (tp + fn)
    elif precision > 0:
        false_alarms = caught * (1.0 - precision) / precision
    else:  # no counts and no true alarm: the false alarms cannot be scaled from precision
        false_alarms = math.nan
    return caught, false_alarms


def roi(metrics: Mapping[str, Any], config: RoiConfig = RoiConfig()) -> dict[str, Any]:
    """ROI figures from a metrics object (`lead` object when present; recall, precision, tp, fp,
    fn for the per-minute figures). NaN where the metrics do not define a figure."""
    delays = config.delays_per_day
    gpu_month = config.gpus * config.gpu_cost_per_month_krw

    def net_month(warned: float, false_alarms: float) -> float:
        value_day = (warned * config.avoidable_fraction * config.cost_per_delay_krw
                     - false_alarms * config.false_alarm_cost_krw)
        return value_day * config.days_per_month - gpu_month

    minute_caught, minute_false = _minute_figures(metrics, delays)
    lead = metrics.get("lead")
    episodes = _num(lead, "episodes") if isinstance(lead, Mapping) else math.nan
    if math.isfinite(episodes):
        share = (lambda key: _num(lead, key) / episodes) if episodes > 0 else (lambda key: math.nan)
        warned = share("warned_at_start") * delays
        warned_5min = share("warned_5min_before_onset") * delays
        fa_key = "false_alarm_units" if lead.get("false_alarm_units") is not None else "false_alarm_runs"
        false_alarms = share(fa_key) * delays
        basis = BASIS_LEAD
    else:
        warned, false_alarms = minute_caught, minute_false
        warned_5min = math.nan
        basis = BASIS_MINUTE
    avoided = warned * config.avoidable_fraction
    value_day = avoided * config.cost_per_delay_krw - false_alarms * config.false_alarm_cost_krw
    value_month = value_day * config.days_per_month
    seed_value_month = delays * config.cost_per_delay_krw * config.days_per_month
    return {
        "basis": basis,
        "recall": _num(metrics, "recall"),
        "precision": _num(metrics, "precision"),
        "delays_per_day": delays,
        "delays_caught_per_day": warned,
        "delays_missed_per_day": delays - warned,
        "false_alarms_per_day": false_alarms,
        "alarms_per_day": warned + false_alarms,
        "delays_avoided_per_day": avoided,
        "value_per_day_krw": value_day,
        "value_per_month_krw": value_month,
        "gpu_cost_per_month_krw": gpu_month,
        "net_value_per_month_krw": value_month - gpu_month,
        "roi_multiple": value_month / gpu_month if gpu_month > 0 else math.nan,
        "delays_warned_5min_per_day": warned_5min,
        "net_value_per_month_5min_krw": net_month(warned_5min, false_alarms),
        "delays_caught_minute_recall_per_day": minute_caught,
        "false_alarms_minute_per_day": minute_false,
        "net_value_per_month_minute_krw": net_month(minute_caught, minute_false),
        "seed_claim_value_per_month_krw": seed_value_month,
        "seed_claim_roi_multiple": seed_value_month / gpu_month if gpu_month > 0 else math.nan,
        "parameters": config.model_dump(),
    }
