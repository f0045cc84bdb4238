"""fabray.metrics against values computed by hand on tiny arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fabray.metrics import (
    EVENT_METRICS,
    best_threshold,
    delay_metrics,
    episode_starts,
    event_metrics,
    lead_time_summary,
    lead_times,
    probability_losses,
)

NAN = math.nan
# Row 6 has an undefined target: it must be skipped whatever its probability.
Y = np.array([1, 1, 0, 0, 0, 1, NAN, 0])
P = np.array([0.9, 0.4, 0.6, 0.1, 0.2, 0.7, 0.99, 0.3])


def test_event_metrics_match_hand_computed_values():
    m = event_metrics(Y, P, threshold=0.5)
    assert set(m) == set(EVENT_METRICS)
    # TP: .9 .7   FN: .4   FP: .6   TN: .1 .2 .3
    assert (m["tp"], m["fp"], m["fn"], m["tn"], m["n"]) == (2, 1, 1, 3, 7)
    assert m["accuracy"] == pytest.approx(5 / 7)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 3 / 4) / 2)
    assert m["positive_rate"] == pytest.approx(3 / 7)
    # ROC-AUC: 11 of the 12 (positive, negative) pairs are ordered right (.4 < .6 is not).
    assert m["roc_auc"] == pytest.approx(11 / 12)
    # AP: positives at ranks 1, 2, 4 → (1 + 1 + 3/4) / 3.
    assert m["pr_auc"] == pytest.approx(11 / 12)


def test_threshold_is_inclusive():
    m = event_metrics(Y, P, threshold=0.4)  # .4 alarms now
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (3, 1, 0, 3)
    assert (m["precision"], m["recall"]) == (pytest.approx(3 / 4), 1.0)
    assert m["balanced_accuracy"] == pytest.approx((1.0 + 3 / 4) / 2)


def test_one_class_gives_nan_aucs_and_defined_ratios():
    y = np.array([0, 0, 0, NAN])
    m = event_metrics(y, np.array([0.1, 0.7, 0.2, 0.5]))
    assert math.isnan(m["pr_auc"]) and math.isnan(m["roc_auc"])
    assert (m["tp"], m["fp"], m["tn"]) == (0, 1, 2)
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)  # only the negative class is present


def test_no_defined_target_gives_nan_metrics():
    m = event_metrics(np.array([NAN, NAN]), np.array([0.2, 0.9]))
    assert m["n"] == 0 and math.isnan(m["f1"]) and math.isnan(m["accuracy"])


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="finite"):
        event_metrics(np.array([1, 0]), np.array([NAN, 0.2]))
    with pytest.raises(ValueError, match="0, 1 or NaN"):
        event_metrics(np.array([1, 2]), np.array([0.5, 0.2]))
    with pytest.raises(ValueError, match="same length"):
        event_metrics(np.array([1, 0]), np.array([0.5]))
    # A NaN prediction where the target is undefined is fine: that row is skipped.
    assert event_metrics(np.array([1, NAN, 0]), np.array([0.8, NAN, 0.1]))["n"] == 2


def test_delay_metrics():
    m = delay_metrics(np.array([10.0, NAN, -5.0, 0.0]), np.array([12.0, 100.0, -1.0, 0.0]))
    assert m["n"] == 3
    assert m["mae"] == pytest.approx(2.0)
    assert m["rmse"] == pytest.approx(math.sqrt(20 / 3))


def test_probability_losses():
    m = probability_losses(np.array([1, 0, NAN]), np.array([0.8, 0.4, 0.5]))
    assert m["n"] == 2
    assert m["log_loss"] == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    assert m["brier"] == pytest.approx((0.04 + 0.16) / 2)


def test_best_threshold_maximizes_f1_and_agrees_with_event_metrics():
    threshold, f1 = best_threshold(Y, P)
    # thresholds .9 .7 .6 .4 .3 …: F1 1/2, 4/5, 2/3, 6/7, 3/4, … → .4
    assert threshold == 0.4
    assert f1 == pytest.approx(6 / 7)
    assert event_metrics(Y, P, threshold)["f1"] == pytest.approx(f1)


def test_best_threshold_ties_and_equal_scores():
    # F1 2/3 at .9 and at .6: the higher threshold wins.
    tied = best_threshold(np.array([1, 0, 0, 1]), np.array([0.9, 0.8, 0.7, 0.6]))
    assert tied == (0.9, pytest.approx(2 / 3))
    # Equal scores alarm together: .8 means both .8 rows alarm (F1 2/3, not 1).
    assert best_threshold(np.array([1, 0, 0]), np.array([0.8, 0.8, 0.2])) == (0.8, pytest.approx(2 / 3))
    assert best_threshold(np.array([0, 0]), np.array([0.8, 0.2])) == (0.5, 0.0)


# Two zones, one row per minute. Zone 0's last episode runs into the zone boundary; zone 1's
# first row is an event: a new episode, and zone 0's alarm at row 11 must not count for it.
EVENT = np.array([0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 1, 1,   1, 1, 0, 0, 1, 0, 0, 1], dtype=float)
ALARM = np.array([0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1,   1, 1, 1, 1, 1, 0, 1, 1], dtype=bool)
ZONE = np.array([0] * 12 + [1] * 8)


def test_episode_starts():
    assert episode_starts(EVENT, ZONE).tolist() == [3, 8, 12, 16, 19]
    # NaN (undefined) breaks an episode; it is not an event.
    assert episode_starts(np.array([1, NAN, 1, 1, 0]), np.zeros(5)).tolist() == [0, 2]


def test_lead_times_on_hand_built_series():
    leads = lead_times(EVENT, ALARM, ZONE)
    # ep@3: alarm up since 1 → 2; ep@8: alarm down at 8 (raised late at 10) → missed;
    # ep@12: zone 1's first row, alarmed → 0; ep@16: alarm up since 12, through the quiet
    # rows 14–15 → 4; ep@19: alarm up since 18 → 1.
    np.testing.assert_array_equal(leads, [2, NAN, 0, 4, 1])
    summary = lead_time_summary(leads)
    assert summary == {
        "episodes": 5, "caught": 4, "caught_fraction": 0.8,
        "median_lead_min": 1.5, "mean_lead_min": 1.75,
    }


def test_lead_time_summary_with_nothing_caught():
    s = lead_time_summary(np.array([NAN, NAN]))
    assert s["caught"] == 0 and s["caught_fraction"] == 0.0 and math.isnan(s["median_lead_min"])
    assert math.isnan(lead_time_summary(np.array([]))["caught_fraction"])
