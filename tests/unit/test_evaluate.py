"""Pure pieces of `fabray evaluate`: bootstrap intervals, candidate scoring, drift notes."""

from __future__ import annotations

import numpy as np
import pytest

from fabray.evaluate.result import Candidate
from fabray.evaluate.run import _nominal_drift_notes
from fabray.evaluate.scoring import block_bootstrap_f1, score_candidate


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


def test_score_candidate_adds_threshold_lead_object_and_headline():
    target = np.array([0, 0, 1, 1, 0, 0, 1, 1, np.nan], dtype=float)
    prob = np.array([0.1, 0.8, 0.9, 0.9, 0.1, 0.1, 0.2, 0.9, 0.5])
    delay = np.array([0, 0, 0, 90, 0, 0, 0, 0, 0], dtype=float)  # episode 1's delay seen at row 3
    cand = score_candidate(Candidate("m", "model", prob, 0.5), target, np.zeros(9, dtype=int), delay, 60.0, 2)
    m = cand.metrics
    assert (m["tp"], m["fp"], m["fn"], m["n"]) == (3, 1, 1, 8)
    assert m["threshold"] == 0.5
    lead = m["lead"]
    # Episode at row 2 (onset 3): warned at row 1 → at start, lead 3 − 1 = 2. Episode at row 6
    # (no late minute: onset min(6 + 2, 8) = 8): first alarm at 7 → before onset, not at start.
    assert (lead["episodes"], lead["warned_at_start"], lead["warned_before_onset"]) == (2, 1, 2)
    assert lead["median_lead_min"] == pytest.approx(1.5)  # leads 2 and 1
    assert lead["false_alarm_runs"] == 0
    # credits 1 and (8 − 7)/(8 − 6) = ½: raw 1.5 → 100 · (1.5 + 2) / 4
    assert m["lead_score"] == lead["lead_score"] == pytest.approx(87.5)
    assert cand.lead_records.warned_at.tolist() == [1, 7]
    assert "lead_by_cause" not in m
    with_causes = score_candidate(Candidate("m", "model", prob, 0.5), target, np.zeros(9, dtype=int), delay,
                                  60.0, 2, episode_causes=np.array(["lot_wave", "breakdown"], dtype=object))
    assert with_causes.metrics["lead_by_cause"]["lot_wave"]["warned_at_start"] == 1
    assert with_causes.metrics["lead_by_cause"]["breakdown"]["warned_at_start_fraction"] == 0.0


def _result(with_causes: bool = True):
    """A small EvaluationResult: 2 zones × 60 minutes, three candidates scored for real."""
    from fabray.evaluate import EvaluationResult
    from fabray.metrics import episode_causes, episodes, observed_onsets
    from fabray.evaluate.roi import roi

    n = 120
    target = np.zeros(n)
    for s in (20, 45, 80, 100):
        target[s:s + 4] = 1
    segments = np.repeat([0, 1], 60)
    delay = np.where(np.roll(target, -2) == 1, 90.0, 0.0)
    early = np.zeros(n)  # warns every episode 3 minutes ahead
    for s in (20, 45, 80, 100):
        early[s - 3:s + 2] = 0.9
    late = np.roll(target, 2) * 0.9  # echoes the event two minutes late: high F1-ish, no warning
    spam = np.full(n, 0.8)
    cause = np.full(n, "", dtype=object)
    cause[20:24], cause[80:84] = "lot_wave", "breakdown"
    starts, ends = episodes(target, segments)
    causes = episode_causes(cause, starts, observed_onsets(starts, ends, segments, delay, 60.0, 10))
    cands = {}
    for name, kind, prob in (("late", "model", late), ("early", "model", early), ("ensemble", "ensemble", early),
                             ("gbt", "baseline", spam)):
        cands[name] = score_candidate(Candidate(name, kind, prob, 0.5), target, segments, delay, 60.0, 10,
                                      episode_causes=causes if with_causes else None)
    return EvaluationResult(
        run="r", data={"windows": n, "path": "x", "windows_used": "all", "events": 16, "zones": ["Z01", "Z02"],
                       "first_timestamp": "a", "last_timestamp": "b"},
        task={"horizon": 10, "sla_delay_s": 60.0}, model_names=("late", "early"), candidates=cands,
        target=target, future_delay_s=delay, minute_delay_s=delay, zone_codes=segments, zones=("Z01", "Z02"),
        segments=segments, timestamps=np.arange(n).astype("datetime64[m]"), weights=np.full((n, 2), 0.5),
        roi=roi(cands["ensemble"].metrics), roi_by_candidate={k: roi(c.metrics) for k, c in cands.items()},
        ensemble_info={}, cause=cause if with_causes else None, episode_causes=causes if with_causes else None,
    )


def test_leaderboard_ranks_by_lead_score_and_json_names_the_headline():
    from fabray.evaluate import leaderboard_text

    result = _result()
    order = [c.name for c in result.leaderboard()]
    assert order[:2] == ["early", "ensemble"] or order[:2] == ["ensemble", "early"]
    assert order.index("late") > order.index("early")
    out = result.to_json()
    assert out["headline"] == "lead_score"
    assert out["models"]["early"]["lead"]["warned_at_start"] == 4
    assert out["models"]["late"]["lead"]["warned_at_start"] == 0
    assert out["ensemble"]["lead_by_cause"]["lot_wave"]["episodes"] == 1
    entry = out["leaderboard"][0]
    assert {"lead_score", "warned_at_start", "median_lead_min", "false_alarm_runs_per_zone_day", "f1",
            "pr_auc"} <= set(entry)
    assert out["baselines"]["gbt"]["lead"]["false_alarm_runs"] > 0
    text = leaderboard_text(result)
    assert text.splitlines()[0].split()[3] == "lead_score" and "fa_runs/zone_day" in text
    assert "warned at or before their start" in text


def test_report_tables_and_lead_time_plot(tmp_path):
    from fabray.evaluate.report_plots import plot_alarm_tradeoff, plot_lead_times
    from fabray.evaluate.report_tables import cause_table, lead_table

    result = _result()
    rows = lead_table(result)
    early = next(r for r in rows if r[0] == "early")
    assert early[1] == "4" and early[2].startswith("4 (1.00)")
    causes = cause_table(result)
    assert causes[0][:2] == ["cause", "episodes"] and len(causes[0]) == 2 + 3  # ensemble, best model, gbt
    assert [r[0] for r in causes[1:]] == ["breakdown", "lot_wave", "unknown"]
    assert [r[1] for r in causes[1:]] == ["1", "1", "2"]
    assert cause_table(_result(with_causes=False)) == []
    path = plot_lead_times(result, tmp_path / "lead_times.png")
    assert path.stat().st_size > 5_000
    result.ensemble_info["max_false_alarms_per_zone_day"] = 2.0
    path = plot_alarm_tradeoff(result, tmp_path / "alarm_tradeoff.png")
    assert path.stat().st_size > 5_000


def test_nominal_drift_is_noted_only_beyond_the_tolerance():
    transport = np.array([150.0, 152, 149, 180, 182, 181])
    codes = np.array([0, 0, 0, 1, 1, 1])
    nominal = {"Z01": 150.0, "Z02": 150.0}
    notes = _nominal_drift_notes(transport, codes, ("Z01", "Z02"), nominal)
    assert len(notes) == 1 and "Z02 181 s vs 150 s" in notes[0] and "Z01" not in notes[0]
    assert _nominal_drift_notes(transport[:3], codes[:3], ("Z01", "Z02"), nominal) == []


def test_rules_baseline_of_a_run_without_rule_model_takes_the_context_inputs(tmp_path):
    """A run trained without `rule` still gets the rules baseline, on windows of its input
    columns (12 features + context): the rules name the first 12."""
    from types import SimpleNamespace

    from fabray.evaluate import baselines as bl
    from fabray.config import FabrayConfig
    from fabray.data.scaler import Scaler
    from fabray.run_data import rule_overrides
    from fabray.schema import FEATURES

    columns = (*FEATURES, "cal_day_sin", "nb0_present")
    scaler = Scaler(columns, tuple(0.0 for _ in columns), tuple(1.0 for _ in columns))
    predictor = SimpleNamespace(manifest={"models": {"lstm": {}}}, run_dir=tmp_path, scaler=scaler)
    overrides = rule_overrides(predictor, FabrayConfig())
    assert "feature_mean" not in overrides  # the rules read raw windows
    features = np.abs(np.random.default_rng(0).normal(size=(40, len(columns)))).astype(np.float32)
    scores = bl.rules_scores(features, np.arange(19, 40), 20, overrides)
    assert scores.shape == (21,) and np.isfinite(scores).all()
