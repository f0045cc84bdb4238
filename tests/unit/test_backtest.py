"""Rolling-origin folds (pure): the plan and the summary across folds. No Ray."""

import math

import numpy as np
import pytest

from fabray.backtest import fold_rows, plan_folds, summarize, summary_table
from fabray.errors import BadInputError


def _minutes(a: str, b: str) -> int:
    return int((np.datetime64(b, "m") - np.datetime64(a, "m")) / np.timedelta64(1, "m"))


def test_folds_move_the_origin_by_one_test_block_and_cover_the_end():
    # 10 days; test share 0.15 → blocks of 2160 minutes; three folds end 2·2160 and 2160 minutes
    # before the end, and at the end.
    folds = plan_folds("2024-01-01T00:00", "2024-01-10T23:59", 3, 0.7, 0.15, min_minutes=110)
    block = 2160
    assert [f.test_minutes for f in folds] == [block] * 3
    assert folds[-1].end == "2024-01-11T00:00"
    for k, f in enumerate(folds):
        assert _minutes(f.origin, f.end) == block
        assert f.minutes == 14400 - (2 - k) * block
        # the train / validation proportion of the config, and the test block at the end
        assert f.train_fraction / f.val_fraction == pytest.approx(0.7 / 0.15)
        assert f.minutes * (1 - f.train_fraction - f.val_fraction) == pytest.approx(block)
    # disjoint, consecutive test blocks: each fold's test starts where the previous one's ended
    assert [f.origin for f in folds[1:]] == [f.end for f in folds[:-1]]


def test_too_short_data_or_bad_fold_counts_are_refused():
    with pytest.raises(BadInputError, match="3 folds need more data: fold 0 would have 72 test minutes, 47 validation minutes"):
        plan_folds("2024-01-01T00:00", "2024-01-01T07:59", 3, 0.7, 0.15, min_minutes=110)
    with pytest.raises(BadInputError, match="--folds"):
        plan_folds("2024-01-01T00:00", "2024-01-10T23:59", 0, 0.7, 0.15, min_minutes=110)


def _entry(name, kind, lead, f1):
    return {"name": name, "kind": kind, "lead_score": lead, "f1": f1, "pr_auc": 0.5,
            "warned_at_start_fraction": 0.4, "warned_before_onset_fraction": 0.5, "median_lead_min": 5,
            "false_alarm_runs_per_zone_day": 3.0}


def test_summary_compares_the_ensemble_with_each_folds_best_member_and_gbt():
    folds = [
        fold_rows({"leaderboard": [_entry("ensemble", "ensemble", 40, 0.7), _entry("gru", "model", 35, 0.72),
                                   _entry("lstm", "model", 20, 0.6), _entry("gbt", "baseline", 41, 0.69)]}),
        fold_rows({"leaderboard": [_entry("ensemble", "ensemble", 30, 0.6), _entry("gru", "model", 25, 0.6),
                                   _entry("lstm", "model", 33, 0.65), _entry("gbt", "baseline", 28, 0.61)]}),
    ]
    s = summarize(folds)
    assert s["ranking"][0] == "ensemble"  # mean lead score 35 vs gbt 34.5, gru 30, lstm 26.5
    ens = s["candidates"]["ensemble"]["lead_score"]
    assert ens["per_fold"] == [40, 30] and ens["mean"] == 35 and ens["std"] == pytest.approx(math.sqrt(50))
    best = s["ensemble_versus"]["best_member"]
    assert best["names"] == ["gru", "lstm"]  # the best model differs by fold
    assert best["lead_score_difference"]["per_fold"] == [5, -3]
    assert best["f1_difference"]["per_fold"] == pytest.approx([-0.02, -0.05])
    assert best["folds_at_least_as_good"] == 1 and best["folds"] == 2
    gbt = s["ensemble_versus"]["gbt"]
    assert gbt["lead_score_difference"]["per_fold"] == [-1, 2] and gbt["folds_at_least_as_good"] == 1
    text = summary_table(s)
    assert "ensemble − best member: lead score +1.0 ± 5.7" in text and "1/2 folds" in text


def test_a_candidate_missing_from_a_fold_counts_only_where_it_ran():
    folds = [fold_rows({"leaderboard": [_entry("ensemble", "ensemble", 40, 0.7), _entry("gbt", "baseline", 30, 0.6)]}),
             fold_rows({"leaderboard": [_entry("ensemble", "ensemble", 20, 0.7)]})]
    s = summarize(folds)
    assert s["candidates"]["gbt"]["folds"] == 1 and s["candidates"]["gbt"]["lead_score"]["mean"] == 30
    assert s["ensemble_versus"]["gbt"]["folds"] == 1
    assert s["ensemble_versus"]["best_member"]["folds"] == 0  # no model in either fold
    assert math.isnan(s["candidates"]["gbt"]["lead_score"]["std"])  # one fold: no spread
    assert "30.0 " in summary_table(s).splitlines()[3] and "±" not in summary_table(s).splitlines()[3]
