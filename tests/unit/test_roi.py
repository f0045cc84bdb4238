"""ROI from measured metrics, against figures computed by hand."""

from __future__ import annotations

import math

import pytest

from fabray.config import RoiConfig
from fabray.evaluate.roi import roi


def test_counts_give_caught_false_alarms_and_monthly_value():
    # recall 30/40 = 0.75, precision 30/40 = 0.75, 40 delays a day
    metrics = {"recall": 0.75, "precision": 0.75, "tp": 30, "fp": 10, "fn": 10}
    out = roi(metrics, RoiConfig(delays_per_day=40))
    assert out["delays_caught_per_day"] == pytest.approx(30.0)  # 0.75 × 40
    assert out["delays_missed_per_day"] == pytest.approx(10.0)
    assert out["false_alarms_per_day"] == pytest.approx(10.0)  # 40 × 10 / (30 + 10)
    assert out["alarms_per_day"] == pytest.approx(40.0)
    assert out["value_per_day_krw"] == pytest.approx(60_000_000.0)  # 30 × 2,000,000
    assert out["value_per_month_krw"] == pytest.approx(1_800_000_000.0)  # × 30 days
    assert out["gpu_cost_per_month_krw"] == pytest.approx(5_000_000.0)
    assert out["net_value_per_month_krw"] == pytest.approx(1_795_000_000.0)
    assert out["roi_multiple"] == pytest.approx(360.0)  # 1.8e9 / 5e6


def test_seed_claim_is_reproduced_with_perfect_recall_and_precision():
    out = roi({"recall": 1.0, "precision": 1.0, "tp": 100, "fp": 0, "fn": 0})
    assert out["value_per_month_krw"] == pytest.approx(2_220_000_000.0)  # 37 × 2M × 30
    assert out["roi_multiple"] == pytest.approx(444.0)
    assert out["seed_claim_roi_multiple"] == pytest.approx(444.0)
    assert out["false_alarms_per_day"] == 0.0


def test_false_alarm_cost_avoidable_share_and_two_gpus():
    cfg = RoiConfig(delays_per_day=40, avoidable_fraction=0.5, false_alarm_cost_krw=1_000_000, gpus=2)
    out = roi({"recall": 0.75, "precision": 0.75, "tp": 30, "fp": 10, "fn": 10}, cfg)
    # avoided 15 × 2M − 10 false alarms × 1M = 20M a day; 600M a month; GPUs 10M
    assert out["delays_avoided_per_day"] == pytest.approx(15.0)
    assert out["value_per_day_krw"] == pytest.approx(20_000_000.0)
    assert out["net_value_per_month_krw"] == pytest.approx(590_000_000.0)
    assert out["roi_multiple"] == pytest.approx(60.0)


def test_without_counts_false_alarms_come_from_precision():
    out = roi({"recall": 0.5, "precision": 0.4}, RoiConfig(delays_per_day=10))
    assert out["delays_caught_per_day"] == pytest.approx(5.0)
    assert out["false_alarms_per_day"] == pytest.approx(7.5)  # 5 × 0.6 / 0.4
    assert math.isnan(roi({"recall": 0.0, "precision": 0.0})["false_alarms_per_day"])


def test_with_lead_metrics_only_episodes_warned_at_start_count():
    lead = {"episodes": 8, "warned_at_start": 2, "warned_before_onset": 5, "warned_5min_before_onset": 1,
            "false_alarm_runs": 4}
    metrics = {"recall": 0.75, "precision": 0.75, "tp": 30, "fp": 10, "fn": 10, "lead": lead}
    cfg = RoiConfig(delays_per_day=40, false_alarm_cost_krw=1_000_000)
    out = roi(metrics, cfg)
    assert out["basis"].startswith("episodes warned at or before their start")
    assert out["delays_caught_per_day"] == pytest.approx(10.0)  # 40 × 2/8
    assert out["false_alarms_per_day"] == pytest.approx(20.0)  # 40 × 4 false-alarm runs / 8 episodes
    # With units (a long run counts once per started horizon) those are the false alarms.
    assert roi({**metrics, "lead": {**lead, "false_alarm_units": 6}}, cfg)["false_alarms_per_day"] == pytest.approx(30.0)
    assert out["value_per_day_krw"] == pytest.approx(10 * 2e6 - 20 * 1e6)
    assert out["net_value_per_month_krw"] == pytest.approx(0.0 * 30 - 5e6)
    # Stricter: ≥ 5 min before the delay is observed (40 × 1/8 = 5 a day).
    assert out["delays_warned_5min_per_day"] == pytest.approx(5.0)
    assert out["net_value_per_month_5min_krw"] == pytest.approx((5 * 2e6 - 20 * 1e6) * 30 - 5e6)
    # Lenient per-minute reading kept beside it: recall 0.75 × 40, FP 10/(TP+FN 40) × 40.
    assert out["delays_caught_minute_recall_per_day"] == pytest.approx(30.0)
    assert out["net_value_per_month_minute_krw"] == pytest.approx((30 * 2e6 - 10 * 1e6) * 30 - 5e6)


def test_no_episode_gives_nan_and_no_lead_falls_back_to_minutes():
    out = roi({"recall": 0.0, "precision": 0.0, "tp": 0, "fp": 3, "fn": 0,
               "lead": {"episodes": 0, "warned_at_start": 0, "warned_5min_before_onset": 0, "false_alarm_runs": 2}})
    assert math.isnan(out["delays_caught_per_day"]) and math.isnan(out["false_alarms_per_day"])
    assert roi({"recall": 0.5, "precision": 0.5, "tp": 1, "fp": 1, "fn": 1})["basis"].startswith("minute")
