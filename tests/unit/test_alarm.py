"""The alarm policy: threshold, hysteresis and hold, offline (vectorised) and online (per minute)."""

import numpy as np
import pytest

from fabray.alarm import AlarmPolicy, AlarmState, fit_alarm_policy
from fabray.errors import BadInputError
from fabray.metrics import lead_episodes, lead_score


def _online(policy, prob, segments):
    state, out, prev = AlarmState(policy), [], None
    for p, s in zip(prob, segments):
        if s != prev:
            state.reset()
            prev = s
        out.append(state.step(p))
    return np.asarray(out)


def test_plain_policy_is_the_threshold():
    prob = np.array([0.1, 0.6, 0.5, 0.49, np.nan, 0.7])
    assert AlarmPolicy(0.5).alarms(prob).tolist() == [False, True, True, False, False, True]


def test_hysteresis_keeps_the_alarm_above_the_clear_level_only_after_a_raise():
    prob = np.array([0.45, 0.6, 0.45, 0.41, 0.39, 0.45, 0.55])
    # clear at 0.4: the first 0.45 has no raise before it, the later 0.45 follows a clear
    got = AlarmPolicy(0.5, clear_ratio=0.8).alarms(prob)
    assert got.tolist() == [False, True, True, True, False, False, True]


def test_hold_keeps_the_alarm_for_hold_minutes_after_the_last_raise():
    prob = np.array([0.0, 0.9, 0.0, 0.0, 0.0, 0.0, 0.9, 0.0])
    got = AlarmPolicy(0.5, hold_min=2).alarms(prob)
    assert got.tolist() == [False, True, True, True, False, False, True, True]


def test_state_restarts_at_each_segment():
    prob = np.array([0.9, 0.45, 0.45, 0.0])
    segments = np.array([0, 0, 1, 1])
    got = AlarmPolicy(0.5, clear_ratio=0.8, hold_min=1).alarms(prob, segments)
    # row 2 starts a new segment: neither the hysteresis nor the hold of row 0 carries over
    assert got.tolist() == [True, True, False, False]


@pytest.mark.parametrize("ratio,hold", [(1.0, 0), (0.8, 0), (1.0, 3), (0.6, 5), (0.3, 1)])
def test_online_steps_equal_the_vectorised_series(ratio, hold):
    rng = np.random.default_rng(3)
    prob = np.clip(np.cumsum(rng.normal(0, 0.08, 3000)) % 1.0, 0, 1)
    prob[rng.random(3000) < 0.01] = np.nan
    segments = np.repeat(np.arange(30), 100)
    policy = AlarmPolicy(0.55, ratio, hold)
    np.testing.assert_array_equal(policy.alarms(prob, segments), _online(policy, prob, segments))


def test_state_round_trips_through_its_dict():
    policy = AlarmPolicy(0.5, 0.8, 3)
    a = AlarmState(policy)
    a.step(0.9)
    a.step(0.1)
    b = AlarmState(policy).load(a.to_dict())
    assert [a.step(0.45), a.step(0.1)] == [b.step(0.45), b.step(0.1)]


def test_bad_policies_are_refused_with_the_field_named():
    with pytest.raises(BadInputError, match="threshold"):
        AlarmPolicy(1.5)
    with pytest.raises(BadInputError, match="clear_ratio"):
        AlarmPolicy(0.5, clear_ratio=0.0)
    with pytest.raises(BadInputError, match="hold_min"):
        AlarmPolicy(0.5, hold_min=-1)
    assert AlarmPolicy.from_dict(0.3) == AlarmPolicy(0.3)
    assert AlarmPolicy.from_dict({"threshold": 0.3, "hold_min": 2}) == AlarmPolicy(0.3, 1.0, 2)


def _flickering_case():
    """Episodes preceded by a precursor that flickers around 0.5: a plain threshold either misses
    the early part or raises many short false-alarm runs; hysteresis keeps one alarm on."""
    rng = np.random.default_rng(0)
    n_ep, gap = 40, 120
    event, prob = [], []
    for k in range(n_ep):
        quiet = rng.uniform(0.0, 0.35, gap)
        # false precursors in quiet time: a few isolated spikes just above 0.5
        spikes = rng.choice(gap - 40, 3, replace=False)
        quiet[spikes] = rng.uniform(0.5, 0.6, 3)
        pre = np.where(np.arange(10) % 2 == 0, 0.52, 0.42)  # flickering warning before the start
        ep = np.full(15, 0.9)
        event += [0] * gap + [0] * 10 + [1] * 15
        prob += [*quiet, *pre, *ep]
    event = np.asarray(event, dtype=np.float64)
    prob = np.asarray(prob)
    return event, prob, np.zeros(event.size, dtype=np.int64), np.where(event == 1, 100.0, 0.0)


def test_fit_prefers_the_plain_threshold_when_nothing_flickers():
    event = np.r_[np.zeros(50), np.ones(10), np.zeros(50)]
    prob = np.r_[np.zeros(45), np.ones(15), np.zeros(50)]
    policy, score = fit_alarm_policy(event, prob, np.zeros(110), np.where(event == 1, 100.0, 0.0), 60.0, 10)
    assert policy.plain and score == pytest.approx(100.0)


def test_fit_finds_a_policy_that_beats_the_plain_threshold_on_flicker():
    event, prob, segments, delay = _flickering_case()
    policy, score = fit_alarm_policy(event, prob, segments, delay, 60.0, 10)
    plain, plain_score = fit_alarm_policy(event, prob, segments, delay, 60.0, 10, clear_ratios=(1.0,), hold_minutes=(0,))
    assert plain.plain and not policy.plain
    assert score > plain_score
    records = lead_episodes(event, policy.alarms(prob, segments), segments, delay, 60.0, 10)
    assert lead_score(records) == pytest.approx(score)


def _budget_case():
    """One zone-day: five episodes forecast clearly (0.9 from 5 min before), five faintly (0.55),
    and ten one-minute spikes of 0.6 in quiet time. Unbudgeted, 0.55 wins (every episode, ten
    false alarms); within 2 false alarms per zone-day only a threshold above 0.6 qualifies."""
    n = 1440
    event, prob = np.zeros(n), np.full(n, 0.05)
    for k in range(10):
        s = 60 + 130 * k
        event[s:s + 10] = 1.0
        prob[s - 5:s + 10] = 0.9 if k % 2 == 0 else 0.55
        prob[s + 60] = 0.6  # quiet time: far from both neighbouring episodes' spans
    delay = np.where(event == 1, 100.0, 0.0)
    return event, prob, np.zeros(n), delay


def test_a_false_alarm_budget_trades_faint_episodes_for_fewer_false_alarms():
    from fabray.metrics import best_lead_threshold, lead_metrics

    event, prob, segments, delay = _budget_case()
    thr, _ = best_lead_threshold(event, prob, segments, delay, 60.0, 10)
    assert thr == pytest.approx(0.55)
    free = lead_metrics(event, prob >= thr, segments, delay, 60.0, 10)
    assert free["warned_at_start"] == 10 and free["false_alarm_runs_per_zone_day"] == pytest.approx(10.0)

    thr, score = best_lead_threshold(event, prob, segments, delay, 60.0, 10, max_false_alarms_per_zone_day=2)
    assert thr == pytest.approx(0.9)
    kept = lead_metrics(event, prob >= thr, segments, delay, 60.0, 10)
    assert kept["warned_at_start"] == 5 and kept["false_alarm_runs_per_zone_day"] == 0
    assert score == pytest.approx(kept["lead_score"])

    policy, _ = fit_alarm_policy(event, prob, segments, delay, 60.0, 10, max_false_alarms_per_zone_day=2)
    fitted = lead_metrics(event, policy.alarms(prob, segments), segments, delay, 60.0, 10)
    assert fitted["false_alarm_runs_per_zone_day"] <= 2 and fitted["warned_at_start"] == 5


def test_an_unreachable_budget_falls_back_to_the_fewest_alarms():
    from fabray.metrics import best_lead_threshold

    event, prob, segments, delay = _budget_case()
    prob[660] = 1.0  # a quiet-time spike above every episode's probability
    thr, _ = best_lead_threshold(event, prob, segments, delay, 60.0, 10, max_false_alarms_per_zone_day=0)
    assert thr == pytest.approx(1.0)
    policy, _ = fit_alarm_policy(event, prob, segments, delay, 60.0, 10, max_false_alarms_per_zone_day=0)
    assert policy.threshold == pytest.approx(1.0)
    with pytest.raises(ValueError, match="max_false_alarms_per_zone_day"):
        best_lead_threshold(event, prob, segments, delay, 60.0, 10, max_false_alarms_per_zone_day=-1)


def test_the_tradeoff_curve_is_the_lead_metrics_of_each_threshold():
    from fabray.metrics import lead_metrics, lead_tradeoff

    event, prob, segments, delay = _budget_case()
    curve = lead_tradeoff(event, prob, segments, delay, 60.0, 10, clear_ratio=0.8, hold_min=3)
    assert np.all(np.diff(curve["threshold"]) < 0)  # high → low
    assert np.all(np.diff(curve["warned_at_start_fraction"]) >= 0)  # lower thresholds warn no later
    for i in range(curve["threshold"].size):
        alarm = AlarmPolicy(float(curve["threshold"][i]), 0.8, 3).alarms(prob, segments)
        want = lead_metrics(event, alarm, segments, delay, 60.0, 10)
        for key in ("false_alarm_runs_per_zone_day", "warned_at_start_fraction", "warned_before_onset_fraction",
                    "lead_score"):
            assert curve[key][i] == pytest.approx(want[key]), key
    assert curve["warned_at_start_fraction"][-1] == 1.0 and curve["false_alarm_runs_per_zone_day"][-1] > 2
