"""The served ensemble decides each zone's alarm as the offline alarm series does."""

import numpy as np

from fabray.alarm import AlarmPolicy
from fabray.ensemble.dynamic import DynamicEnsemble
from fabray.ensemble.params import EnsembleParams
from fabray.ensemble.served import ServedEnsemble


def _served(policy: AlarmPolicy) -> ServedEnsemble:
    names = ("a", "b")
    inner = DynamicEnsemble(EnsembleParams.static([1.0, 1.0], threshold=policy.threshold), names)
    return ServedEnsemble("static", names, names, policy.threshold, inner, alarm=policy)


def test_decisions_over_minutes_equal_the_offline_series_with_gaps_as_segments():
    rng = np.random.default_rng(1)
    policy = AlarmPolicy(0.5, clear_ratio=0.7, hold_min=3)
    minutes = np.r_[np.arange(0, 200), np.arange(230, 400)]  # a 30-minute gap
    prob = np.clip(0.5 + np.cumsum(rng.normal(0, 0.06, minutes.size)) % 0.8 - 0.4, 0, 1)
    served = _served(policy)
    online = [served.decide("Z1", p, int(m)) for p, m in zip(prob, minutes)]
    segments = np.r_[0, np.cumsum(np.diff(minutes) != 1)]
    np.testing.assert_array_equal(online, policy.alarms(prob, segments))
    assert not policy.plain and np.any(np.asarray(online) != (prob >= 0.5))


def test_a_repeated_minute_answers_the_same_and_the_state_survives_a_restart():
    policy = AlarmPolicy(0.5, clear_ratio=0.6, hold_min=2)
    served = _served(policy)
    assert served.decide("Z1", 0.9, 100) is True
    assert served.decide("Z1", 0.1, 100) is True  # same minute again: same answer, no step
    restored = ServedEnsemble.from_state(served.to_state())
    assert restored.alarm == policy
    # minute 101: the hold keeps both on; minute 104: past the hold, below the clear level
    assert [served.decide("Z1", 0.1, m) for m in (101, 102, 103, 104)] == \
        [restored.decide("Z1", 0.1, m) for m in (101, 102, 103, 104)] == [True, True, False, False]
    # another zone and a minute after a gap start fresh
    assert served.decide("Z2", 0.4, 104) is False
    assert served.decide("Z1", 0.4, 200) is False
