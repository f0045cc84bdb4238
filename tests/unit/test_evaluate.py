"""Pure pieces of `fabray evaluate`: bootstrap intervals, candidate scoring, drift notes."""

from __future__ import annotations

import numpy as np
import pytest

from fabray.evaluate import Candidate, _nominal_drift_notes, block_bootstrap_f1, score_candidate


def _series(n: int = 2000, seed: int = 0):
    rng = np.random.default_rng(seed)
    target = (np.convolve(rng.random(n) < 0.02, np.ones(15), "same") > 0).astype(float)  # episodes
    segments = np.repeat([0, 1], n // 2)
    return target, segments, rng


def test_bootstrap_of_a_perfect_alarm_is_one_and_pairs_are_exact():
    target, segments, rng = _series()
    noisy = (target == 1) ^ (rng.random(target.size) < 0.05)
    boot = block_bootstrap_f1(target, {"perfect": target == 1, "noisy": noisy, "same": noisy}, segments,
                              resamples=200)
    assert np.all(boot["perfect"] == 1.0)
    np.testing.assert_array_equal(boot["noisy"], boot["same"])  # same blocks for every name
    full = 2 * np.sum(noisy & (target == 1)) / (np.sum(noisy) + np.sum(target == 1))
    lo, hi = np.percentile(boot["noisy"], [2.5, 97.5])
    assert lo < full < hi and hi - lo < 0.2


def test_bootstrap_skips_undefined_targets():
    target, segments, _ = _series()
    with_nan = target.copy()
    with_nan[::7] = np.nan
    alarm = target == 1
    boot = block_bootstrap_f1(with_nan, {"a": alarm}, segments, resamples=50)
    assert np.all(boot["a"] == 1.0)


def test_score_candidate_adds_threshold_and_lead_time():
    target = np.array([0, 0, 1, 1, 0, 0, 1, 1, np.nan], dtype=float)
    prob = np.array([0.1, 0.8, 0.9, 0.9, 0.1, 0.1, 0.2, 0.9, 0.5])
    cand = score_candidate(Candidate("m", "model", prob, 0.5), target, np.zeros(9, dtype=int))
    m = cand.metrics
    assert (m["tp"], m["fp"], m["fn"], m["n"]) == (3, 1, 1, 8)
    assert m["threshold"] == 0.5
    # episode at row 2: alarm up since row 1 (lead 1); episode at row 6: alarm down (missed)
    assert m["lead_time"]["episodes"] == 2 and m["lead_time"]["caught"] == 1
    assert m["lead_time"]["median_lead_min"] == pytest.approx(1.0)


def test_nominal_drift_is_noted_only_beyond_the_tolerance():
    transport = np.array([150.0, 152, 149, 180, 182, 181])
    codes = np.array([0, 0, 0, 1, 1, 1])
    nominal = {"Z01": 150.0, "Z02": 150.0}
    notes = _nominal_drift_notes(transport, codes, ("Z01", "Z02"), nominal)
    assert len(notes) == 1 and "Z02 181 s vs 150 s" in notes[0] and "Z01" not in notes[0]
    assert _nominal_drift_notes(transport[:3], codes[:3], ("Z01", "Z02"), nominal) == []


def test_alarm_offsets_give_lead_lateness_or_never():
    from fabray.report import alarm_offsets

    #               episode A (rows 2-4)     episode B (rows 7-9)   episode C (rows 12-13)
    target = np.array([0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 1, 1], dtype=float)
    alarm = np.array([0, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0], dtype=bool)
    offsets = alarm_offsets(target, alarm, np.zeros(14, dtype=int))
    assert offsets[:2].tolist() == [1.0, -2.0] and np.isnan(offsets[2])
