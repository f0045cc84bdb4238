"""fabray.metrics against values computed by hand on tiny arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fabray.metrics import (
    EVENT_METRICS,
    LEAD_PROFILES,
    best_lead_threshold,
    best_threshold,
    episode_causes,
    episode_starts,
    episodes,
    event_metrics,
    lead_by_cause,
    lead_episodes,
    lead_metrics,
    lead_score,
    lead_time_summary,
    lead_times,
    observed_onsets,
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


# ---- lead time (warnings before the delay) -------------------------------------------------
# One segment of 60 minutes, H = W = 3. Episode A rows 10..12, its delay first seen at row 12
# (o = 12); episode B rows 30..31, never seen (o = min(30 + 3, 59) = 33). The last H rows have an
# undefined target (57 rows scored). Spans [s − W, e + H]: A [7, 15], B [27, 34]; credit
# windows [s − W, o − 1]: A [7, 11], B [27, 32].
H = 3
SLA = 60.0
LEAD_EVENT = np.zeros(60)
LEAD_EVENT[10:13] = 1
LEAD_EVENT[30:32] = 1
LEAD_EVENT[57:] = NAN
LEAD_DELAY = np.zeros(60)
LEAD_DELAY[12] = 90.0
LEAD_DELAY[20] = 500.0  # outside every search range: never an onset
LEAD_SEG = np.zeros(60, dtype=int)


def _alarm(*rows: int | range) -> np.ndarray:
    out = np.zeros(60, dtype=bool)
    for r in rows:
        out[list(r) if isinstance(r, range) else [r]] = True
    return out


def _lead(alarm, **kw):
    return lead_episodes(LEAD_EVENT, alarm, LEAD_SEG, LEAD_DELAY, SLA, H, **kw)


def test_episodes_respect_segments_and_nan():
    starts, ends = episodes(LEAD_EVENT, LEAD_SEG)
    assert starts.tolist() == [10, 30] and ends.tolist() == [12, 31]
    # Matches the older episode_starts; a segment change splits a run, NaN breaks one.
    assert episodes(EVENT, ZONE)[0].tolist() == episode_starts(EVENT, ZONE).tolist()
    assert episodes(EVENT, ZONE)[1].tolist() == [4, 11, 13, 16, 19]
    s, e = episodes(np.array([1, NAN, 1, 1, 0]), np.zeros(5))
    assert s.tolist() == [0, 2] and e.tolist() == [0, 3]


def test_observed_onset_search_range_and_fallback():
    starts, ends = episodes(LEAD_EVENT, LEAD_SEG)
    assert observed_onsets(starts, ends, LEAD_SEG, LEAD_DELAY, SLA, H).tolist() == [12, 33]
    # The search runs up to e + H: a late minute at row 15 (= 12 + 3) is A's onset, at 16 it is not.
    delay = np.zeros(60)
    delay[15] = 61.0
    assert observed_onsets(starts, ends, LEAD_SEG, delay, SLA, H).tolist() == [15, 33]
    delay[15], delay[16] = 0.0, 61.0
    assert observed_onsets(starts, ends, LEAD_SEG, delay, SLA, H).tolist() == [13, 33]
    # The SLA is strict (> not >=), NaN never counts, and a late row at s itself is the onset.
    delay = np.full(60, NAN)
    delay[10], delay[30] = SLA, 61.0
    assert observed_onsets(starts, ends, LEAD_SEG, delay, SLA, H).tolist() == [13, 30]


def test_onset_and_credit_window_are_clipped_to_the_segment():
    # Two segments of 10 rows. Segment 0's episode 8..9 runs into its end: onset min(8 + 3, 9) = 9.
    # Segment 1's episode starts at its first row 10; segment 0's alarm at rows 7..9 does not warn it.
    seg = np.array([0] * 10 + [1] * 10)
    event = np.zeros(20)
    event[8:10] = 1
    event[10:12] = 1
    delay = np.zeros(20)
    delay[15] = 100.0  # beyond e + H = 14: segment 1's onset falls back to 10 + 3
    alarm = np.zeros(20, dtype=bool)
    alarm[7:10] = True
    rec = lead_episodes(event, alarm, seg, delay, SLA, H)
    assert rec.start.tolist() == [8, 10] and rec.onset.tolist() == [9, 13]
    assert rec.warned_at.tolist() == [7, -1]
    assert rec.warned_at_start.tolist() == [True, False]
    np.testing.assert_array_equal(rec.lead_min, [2, NAN])
    np.testing.assert_array_equal(rec.lead_vs_start_min, [1, NAN])
    assert rec.false_alarm_runs == 0  # rows 7..9 lie in segment 0's episode span
    # An alarm from segment 1's first row warns it at start; its window does not reach back.
    alarm[10] = True
    assert lead_episodes(event, alarm, seg, delay, SLA, H).warned_at.tolist() == [7, 10]


def test_warning_time_flags_and_leads():
    # A: run from row 2 reaches into the window: cut at s − W = 7 → lead 5, 3 before start.
    # B: first alarm at 31 (after s = 30, before o = 33) → warned before onset, not at start.
    rec = _lead(_alarm(range(2, 9), 31))
    assert rec.warned_at.tolist() == [7, 31]
    assert rec.warned_at_start.tolist() == [True, False]
    assert rec.warned_before_onset.tolist() == [True, True]
    assert rec.warned_5min_before_onset.tolist() == [True, False]
    np.testing.assert_array_equal(rec.lead_min, [5, 2])
    np.testing.assert_array_equal(rec.lead_vs_start_min, [3, -1])
    np.testing.assert_allclose(rec.credit, [1.0, 2 / 3])
    # Rows 2..6 lie outside every span: one false-alarm run (the run is split at the span).
    assert rec.false_alarm_runs == 1
    # An alarm at the onset or later is no warning (and no false alarm: it lies in the span).
    rec = _lead(_alarm(12, range(33, 35)))
    assert rec.warned_at.tolist() == [-1, -1] and rec.false_alarm_runs == 0
    # A wider early window gives earlier credit; W = 0 only credits from s on.
    assert _lead(_alarm(range(2, 9)), early_window=8).warned_at.tolist() == [2, -1]
    assert _lead(_alarm(range(2, 10)), early_window=0).warned_at.tolist() == [-1, -1]


def test_false_alarm_runs_split_by_spans_and_segments():
    # 40..41 and 44 are two runs; 16..26 (between A's span end 15 and B's span start 27) is one
    # more; 56..59 counts rows 56 only (57.. are unscored) → 4 runs in 57 scored rows.
    m = lead_metrics(LEAD_EVENT, _alarm(range(14, 28), 40, 41, 44, range(56, 60)), LEAD_SEG, LEAD_DELAY, SLA, H)
    assert m["false_alarm_runs"] == 4
    assert m["zone_days"] == pytest.approx(57 / 1440)
    assert m["false_alarm_runs_per_zone_day"] == pytest.approx(4 / (57 / 1440))
    # Consecutive alarm rows across a segment change are two runs.
    rec = lead_episodes(np.zeros(6), np.ones(6), np.array([0, 0, 0, 1, 1, 1]), np.zeros(6), SLA, H)
    assert rec.false_alarm_runs == 2 and rec.n_episodes == 0


def test_always_on_alarm_is_penalised_for_runs_between_episodes():
    m = lead_metrics(LEAD_EVENT, np.ones(60, dtype=bool), LEAD_SEG, LEAD_DELAY, SLA, H)
    assert (m["episodes"], m["warned_at_start"], m["warned_5min_before_onset"]) == (2, 2, 2)
    # False-alarm runs: 0..6, 16..26, 35..56 → 3.
    assert m["false_alarm_runs"] == 3
    assert m["median_lead_min"] == pytest.approx(5.5)  # leads 5 (12 − 7) and 6 (33 − 27)
    assert m["median_lead_vs_start_min"] == pytest.approx(3.0)
    # The runs last 7, 11 and 22 minutes: ⌈7/H⌉ + ⌈11/H⌉ + ⌈22/H⌉ false-alarm units.
    units = sum(-(-n // H) for n in (7, 11, 22))
    assert (m["false_alarm_minutes"], m["false_alarm_units"]) == (40, units)
    # raw = 2 − 0.25·units; null −2; perfect 2.
    assert m["lead_score"] == pytest.approx(100 * (2 - 0.25 * units + 2) / 4)
    assert m["lead_score_low_fp"] == pytest.approx(100 * (2 - 0.5 * units + 2) / 4)
    assert m["lead_score_low_fn"] == pytest.approx(100 * (2 - 0.25 * units + 4) / 6)
    assert m["lead_score"] < lead_metrics(LEAD_EVENT, _alarm(range(7, 13), range(27, 32)),
                                          LEAD_SEG, LEAD_DELAY, SLA, H)["lead_score"]


def test_null_scores_zero_perfect_100_and_late_warnings_decay():
    null = lead_metrics(LEAD_EVENT, np.zeros(60, dtype=bool), LEAD_SEG, LEAD_DELAY, SLA, H)
    assert null["lead_score"] == 0.0 and null["lead_score_low_fn"] == 0.0
    assert null["warned_before_onset"] == 0 and math.isnan(null["median_lead_min"])
    assert null["false_alarm_runs_per_zone_day"] == 0.0
    perfect = lead_metrics(LEAD_EVENT, _alarm(range(7, 13), range(27, 32)), LEAD_SEG, LEAD_DELAY, SLA, H)
    assert perfect["lead_score"] == pytest.approx(100.0)
    assert perfect["warned_at_start_fraction"] == 1.0 and perfect["false_alarm_runs"] == 0
    # Warned at the start s exactly still earns full credit.
    assert lead_score(_lead(_alarm(10, 30))) == pytest.approx(100.0)
    # A warned one minute after its start: credit (12 − 11)/(12 − 10) = ½; B missed → raw −½.
    rec = _lead(_alarm(11))
    assert lead_score(rec) == pytest.approx(100 * (0.5 - 1 + 2) / 4)
    assert lead_score(rec, "low_fn") == pytest.approx(100 * (0.5 - 2 + 4) / 6)
    # No episode: NaN scores and fractions; unknown profile refused.
    none = lead_metrics(np.zeros(5), np.ones(5), np.zeros(5), np.zeros(5), SLA, H)
    assert math.isnan(none["lead_score"]) and math.isnan(none["warned_at_start_fraction"])
    with pytest.raises(ValueError, match="profile"):
        lead_score(rec, "nab")
    assert set(LEAD_PROFILES) == {"standard", "low_fp", "low_fn"}


def test_lead_metrics_keys_match_the_lead_object():
    m = lead_metrics(LEAD_EVENT, _alarm(11), LEAD_SEG, LEAD_DELAY, SLA, H)
    for key in ("episodes", "warned_at_start", "warned_before_onset", "warned_5min_before_onset",
                "median_lead_min", "median_lead_vs_start_min", "false_alarm_runs",
                "false_alarm_runs_per_zone_day", "zone_days", "warned_at_start_fraction",
                "warned_before_onset_fraction", "warned_5min_before_onset_fraction",
                "lead_score", "lead_score_low_fp", "lead_score_low_fn"):
        assert key in m
    with pytest.raises(ValueError, match="one value per row"):
        lead_metrics(LEAD_EVENT, _alarm(11)[:-1], LEAD_SEG, LEAD_DELAY, SLA, H)


def test_best_lead_threshold_maximises_the_lead_score_not_f1():
    # High scores come late (11..12, 31: after each start), lower ones early (8..10, 28..30).
    prob = np.full(60, 0.1)
    prob[[11, 12, 31]] = 0.9
    prob[[8, 9, 10, 28, 29, 30]] = 0.4
    prob[57:] = 0.99  # unscored rows: not a candidate, no false alarm
    assert best_threshold(LEAD_EVENT, prob)[0] == 0.9  # F1 prefers the late alarms
    thr, score = best_lead_threshold(LEAD_EVENT, prob, LEAD_SEG, LEAD_DELAY, SLA, H)
    assert thr == 0.4 and score == pytest.approx(100.0)
    late = lead_score(_lead(prob >= 0.9))
    assert late == pytest.approx(100 * (0.5 + 2 / 3 + 2) / 4) and late < score
    # Ties go to the highest threshold: 0.95 and 0.4 alarm the same way inside the spans.
    prob[[8, 28]] = 0.95
    assert best_lead_threshold(LEAD_EVENT, prob, LEAD_SEG, LEAD_DELAY, SLA, H) == (0.95, pytest.approx(100.0))
    # No episode: (0.5, NaN).
    thr, score = best_lead_threshold(np.zeros(60), prob, LEAD_SEG, LEAD_DELAY, SLA, H)
    assert thr == 0.5 and math.isnan(score)


def test_episode_causes_and_lead_by_cause():
    cause = np.full(60, "", dtype=object)
    cause[11:13] = "lot_wave"
    cause[13] = "breakdown"  # after A's onset 12: not counted
    cause[10] = "breakdown"
    starts, ends = episodes(LEAD_EVENT, LEAD_SEG)
    causes = episode_causes(cause, starts, observed_onsets(starts, ends, LEAD_SEG, LEAD_DELAY, SLA, H))
    assert causes.tolist() == ["lot_wave", "unknown"]
    assert episode_causes(None, starts, starts).tolist() == ["unknown", "unknown"]
    table = lead_by_cause(_lead(_alarm(range(5, 9))), causes)
    assert table["lot_wave"] == {
        "episodes": 1, "warned_at_start": 1, "warned_before_onset": 1, "warned_5min_before_onset": 1,
        "warned_at_start_fraction": 1.0, "warned_before_onset_fraction": 1.0,
        "warned_5min_before_onset_fraction": 1.0,
    }
    assert table["unknown"]["episodes"] == 1 and table["unknown"]["warned_before_onset"] == 0
    with pytest.raises(ValueError, match="one value per episode"):
        lead_by_cause(_lead(_alarm(5)), causes[:1])
