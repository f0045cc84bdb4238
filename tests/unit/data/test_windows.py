"""Index-based windows, splits, scaler and targets against a plain-Python reference."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from fabray import schema
from fabray.config import SplitConfig, TaskConfig
from fabray.data.scaler import Scaler
from fabray.data.windows import (
    ALL,
    SPLITS,
    ends_with_target,
    gather_windows,
    latest_window_ends,
    prepare,
    segment_positions,
    valid_window_ends,
)
from fabray.errors import BadInputError

MINUTE = pd.Timedelta(minutes=1)
T0 = pd.Timestamp("2024-03-01 06:00")
TT = schema.FEATURES.index(schema.TRANSPORT_TIME)
IDENTITY = Scaler(schema.FEATURES, (0.0,) * len(schema.FEATURES), (1.0,) * len(schema.FEATURES))


def make_frame(
    minutes: dict[str, list[int]], *, nan_minutes: dict[str, set[int]] | None = None, seed: int = 0
) -> pd.DataFrame:
    """Integer-valued features (so means are exact) for zone → minute offsets; rows shuffled."""
    rng = np.random.default_rng(seed)
    nan_minutes = nan_minutes or {}
    parts = []
    for zone, mins in minutes.items():
        values = rng.integers(0, 50, size=(len(mins), len(schema.FEATURES))).astype(np.float64)
        values[:, TT] = rng.integers(70, 140, size=len(mins))
        for k, m in enumerate(mins):
            if m in nan_minutes.get(zone, set()):
                values[k, TT] = np.nan
        part = pd.DataFrame(values, columns=list(schema.FEATURES))
        part.insert(0, schema.ZONE, zone)
        part.insert(0, schema.TIMESTAMP, [T0 + m * MINUTE for m in mins])
        parts.append(part)
    df = pd.concat(parts, ignore_index=True)
    return df.iloc[rng.permutation(len(df))].reset_index(drop=True)


def two_zone_frame() -> pd.DataFrame:
    # Z1: a 3-minute gap at 15..17, empty transport times at its start, mid-way and a 3-minute
    # run (30..32) that leaves one horizon with nothing observed; Z2 starts later, no gap.
    return make_frame(
        {"Z2": list(range(10, 40)), "Z1": [m for m in range(40) if m not in (15, 16, 17)]},
        nan_minutes={"Z1": {0, 5, 6, 30, 31, 32}, "Z2": {12, 25}},
    )


def naive_windows(df, lookback, horizon, nominal, sla_delay_s):
    """Every window with a full input, by plain loops: [(zone, ts, window, delay_s, event)]."""
    out = []
    for zone in sorted(df[schema.ZONE].unique()):
        rows = df[df[schema.ZONE] == zone].sort_values(schema.TIMESTAMP)
        ts = list(rows[schema.TIMESTAMP])
        values = rows[list(schema.FEATURES)].to_numpy().tolist()
        observed = [v[TT] for v in values]
        last = nominal[zone]
        for v in values:  # carry the transport time forward, the nominal at the start
            if math.isnan(v[TT]):
                v[TT] = last
            else:
                last = v[TT]

        def contiguous(i, j):  # rows i..j are consecutive minutes
            return all(ts[k + 1] - ts[k] == MINUTE for k in range(i, j))

        for i in range(len(ts)):
            if i < lookback - 1 or not contiguous(i - lookback + 1, i):
                continue
            delay = float("nan")
            if i + horizon < len(ts) and contiguous(i, i + horizon):
                seen = [observed[k] for k in range(i + 1, i + horizon + 1) if not math.isnan(observed[k])]
                if seen:
                    delay = sum(seen) / len(seen) - nominal[zone]
            event = float("nan") if math.isnan(delay) else float(delay > sla_delay_s)
            out.append((zone, ts[i], np.array(values[i - lookback + 1 : i + 1], np.float32), delay, event))
    return out


def assert_same_floats(actual, expected):
    np.testing.assert_array_equal(np.asarray(actual, np.float32), np.asarray(expected, np.float32))


# ---------------------------------------------------------------------------- (1) naive reference


def test_windows_and_targets_equal_naive_reference():
    df = two_zone_frame()
    task = TaskConfig(lookback=5, horizon=3, sla_delay_s=10.0)
    nominal = {"Z1": 100.0, "Z2": 90.0}
    prepared = prepare(df, task, None, scaler=IDENTITY, nominal_s=nominal)
    expected = naive_windows(df, 5, 3, nominal, 10.0)

    ends = prepared.splits[ALL]
    assert set(prepared.splits) == {ALL}
    assert [(prepared.zones[prepared.zone_codes[e]], pd.Timestamp(prepared.timestamps[e])) for e in ends] == [
        (zone, ts) for zone, ts, *_ in expected
    ]
    np.testing.assert_array_equal(gather_windows(prepared.features, ends, 5), np.stack([w for *_, w, _, _ in expected]))
    assert_same_floats(prepared.delay_s[ends], [d for *_, d, _ in expected])
    assert_same_floats(prepared.target[ends], [e for *_, e in expected])
    assert np.isnan(prepared.target[ends]).sum() > 0  # the frame does exercise undefined targets
    assert prepared.features.dtype == np.float32 and not np.isnan(prepared.features).any()


def test_gather_windows_rejects_ends_without_a_full_window():
    features = np.arange(20, dtype=np.float32).reshape(10, 2)
    assert gather_windows(features, np.array([2, 9]), 3).shape == (2, 3, 2)
    np.testing.assert_array_equal(gather_windows(features, np.array([2]), 3)[0], features[0:3])
    for bad in ([1], [10]):
        with pytest.raises(ValueError, match="Received"):
            gather_windows(features, np.array(bad), 3)
    with pytest.raises(ValueError, match="integer"):
        gather_windows(features, np.array([2.0]), 3)


def test_segments_break_at_zones_and_gaps():
    ts = (T0 + pd.to_timedelta([0, 1, 2, 5, 6, 0, 1], unit="min")).to_numpy()
    codes = np.array([0, 0, 0, 0, 0, 1, 1])
    before, after = segment_positions(codes, ts)
    np.testing.assert_array_equal(before, [0, 1, 2, 0, 1, 0, 1])
    np.testing.assert_array_equal(after, [2, 1, 0, 1, 0, 1, 0])
    np.testing.assert_array_equal(valid_window_ends(codes, ts, 2), [1, 2, 4, 6])
    np.testing.assert_array_equal(valid_window_ends(codes, ts, 2, horizon=1), [1])


def test_latest_window_ends_per_zone():
    df = make_frame({"A": list(range(8)) + [20, 21], "B": [0, 1], "C": list(range(6))})
    prepared = prepare(df, TaskConfig(lookback=3, horizon=2), None, scaler=IDENTITY,
                       nominal_s={"A": 1.0, "B": 1.0, "C": 1.0})
    latest = latest_window_ends(prepared)
    assert set(latest) == {"A", "C"}  # B has no full window; A's last segment is too short
    assert pd.Timestamp(prepared.timestamps[latest["A"]]) == T0 + 7 * MINUTE
    assert pd.Timestamp(prepared.timestamps[latest["C"]]) == T0 + 5 * MINUTE
    assert latest["A"] in prepared.splits[ALL]


# ---------------------------------------------------------------------------- (2) splits


SPLIT = SplitConfig(train_fraction=0.5, val_fraction=0.25)


def split_frame() -> pd.DataFrame:
    return make_frame(
        {"Z1": [m for m in range(160) if m not in range(40, 44)], "Z2": list(range(30, 150))},
        nan_minutes={"Z1": {3, 100, 101, 102}, "Z2": {31, 60}},
        seed=1,
    )


def test_splits_are_time_ordered_gapped_and_inside_segments():
    df = split_frame()
    lookback, horizon = 6, 3
    prepared = prepare(df, TaskConfig(lookback=lookback, horizon=horizon), SPLIT)
    ts, codes = prepared.timestamps, prepared.zone_codes
    assert list(prepared.splits) == list(SPLITS)

    covered = {}
    for name, ends in prepared.splits.items():
        assert ends.dtype == np.int64 and len(ends) > 0 and np.all(np.diff(ends) > 0)
        assert not np.isnan(prepared.target[ends]).any()
        rows = ends[:, None] + np.arange(1 - lookback, horizon + 1)  # input and target minutes
        assert (codes[rows] == codes[ends][:, None]).all()  # never crosses a zone
        assert (np.diff(ts[rows], axis=1) == np.timedelta64(1, "m")).all()  # nor a gap
        covered[name] = set(rows.ravel().tolist())
    assert not covered["train"] & covered["val"] and not covered["val"] & covered["test"]
    assert not covered["train"] & covered["test"]

    for code in range(len(prepared.zones)):
        in_zone = {n: e[codes[e] == code] for n, e in prepared.splits.items()}
        for earlier, later in zip(SPLITS, SPLITS[1:]):
            gap = ts[in_zone[later].min()] - ts[in_zone[earlier].max()]
            assert gap >= np.timedelta64(lookback + horizon, "m")

    # complete: every labelled window whose minutes all lie in one split's span is in that split
    expected = {n: set() for n in SPLITS}
    for zone, t, _, delay, _ in naive_windows(df, lookback, horizon, prepared.nominal_s, 60.0):
        zone_ts = df.loc[df[schema.ZONE] == zone, schema.TIMESTAMP]
        total = (zone_ts.max() - zone_ts.min()) // MINUTE + 1
        a, b = math.floor(total * 0.5), math.floor(total * 0.75)
        span = lambda m: 0 if m < a else (1 if m < b else 2)  # noqa: E731
        first = (t - zone_ts.min()) // MINUTE - (lookback - 1)
        last = (t - zone_ts.min()) // MINUTE + horizon
        if not math.isnan(delay) and span(first) == span(last):
            expected[SPLITS[span(first)]].add((zone, t))
    for name, ends in prepared.splits.items():
        got = {(prepared.zones[codes[e]], pd.Timestamp(ts[e])) for e in ends}
        assert got == expected[name]


def test_an_end_whose_horizon_has_no_observed_minute_is_in_no_split():
    df = split_frame()
    prepared = prepare(df, TaskConfig(lookback=6, horizon=3), SPLIT)
    z1 = prepared.zones.index("Z1")
    row = np.flatnonzero((prepared.zone_codes == z1) & (prepared.timestamps == (T0 + 99 * MINUTE).to_datetime64()))
    assert len(row) == 1 and np.isnan(prepared.target[row[0]])
    assert all(row[0] not in ends for ends in prepared.splits.values())


def test_split_fractions_must_leave_a_test_split():
    with pytest.raises(BadInputError, match="train_fraction"):
        prepare(split_frame(), TaskConfig(lookback=6, horizon=3), SplitConfig(train_fraction=0.7, val_fraction=0.3))


# ---------------------------------------------------------------------------- (3) scaler


def _late(df: pd.DataFrame, after_minute: int) -> pd.Series:
    start = df.groupby(schema.ZONE)[schema.TIMESTAMP].transform("min")
    return (df[schema.TIMESTAMP] - start) // MINUTE >= after_minute


def test_scaler_and_nominal_are_fitted_on_train_rows_only():
    task = TaskConfig(lookback=6, horizon=3)
    df = split_frame()
    base = prepare(df, task, SPLIT)

    changed = df.copy()
    test_rows = _late(changed, 120)  # both zones' test spans start before minute 120 of the zone
    changed.loc[test_rows, list(schema.FEATURES)] *= 10
    again = prepare(changed, task, SPLIT)
    assert again.scaler == base.scaler and again.nominal_s == base.nominal_s
    assert not np.array_equal(again.features, base.features)  # the change did reach the features

    train_changed = df.copy()
    train_changed.loc[~_late(train_changed, 10), list(schema.FEATURES)] *= 10
    moved = prepare(train_changed, task, SPLIT)
    assert moved.scaler != base.scaler and moved.nominal_s != base.nominal_s

    # the nominal is the median of the zone's observed train transport times
    z1 = df[(df[schema.ZONE] == "Z1") & ~_late(df, 80)][schema.TRANSPORT_TIME]
    assert base.nominal_s["Z1"] == float(np.nanmedian(z1.to_numpy()))


def test_configured_nominal_wins_over_the_median():
    task = TaskConfig(lookback=6, horizon=3, nominal_transport_time_s={"Z2": 77.0})
    prepared = prepare(split_frame(), task, SPLIT)
    assert prepared.nominal_s["Z2"] == 77.0 and prepared.nominal_s["Z1"] != 77.0


def test_scaler_json_round_trip_and_floor():
    x = np.random.default_rng(0).normal(5, 3, size=(50, len(schema.FEATURES)))
    x[:, 10] = 0.0  # a constant feature (hot_lots never seen in training)
    scaler = Scaler.fit(x)
    assert scaler.scale[10] == 1.0  # centred only: no division by ~0
    restored = Scaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    assert restored == scaler
    np.testing.assert_array_equal(restored.transform(x), scaler.transform(x))
    z = scaler.transform(x)
    np.testing.assert_allclose(z[:, :10].mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z[:, :10].std(axis=0), 1.0, atol=1e-5)
    np.testing.assert_allclose(scaler.inverse_transform(z), x, atol=1e-4)
    big = x.copy()
    big[0, 10] = 1.0
    assert np.isfinite(scaler.transform(big)).all() and scaler.transform(big)[0, 10] == 1.0


def test_scaler_from_dict_rejects_damaged_data():
    good = Scaler.fit(np.random.default_rng(0).normal(size=(5, len(schema.FEATURES)))).to_dict()
    with pytest.raises(BadInputError, match="missing keys"):
        Scaler.from_dict({"mean": good["mean"]})
    with pytest.raises(BadInputError, match="invalid"):
        Scaler.from_dict({**good, "scale": good["scale"][:-1]})
    with pytest.raises(BadInputError, match="invalid"):
        Scaler.from_dict({**good, "scale": [0.0] * len(good["scale"])})


def test_reusing_a_stored_scaler_and_nominal_reproduces_the_features():
    task = TaskConfig(lookback=6, horizon=3)
    df = split_frame()
    fitted = prepare(df, task, SPLIT)
    reused = prepare(df, task, None, scaler=fitted.scaler, nominal_s=fitted.nominal_s)
    np.testing.assert_array_equal(reused.features, fitted.features)
    np.testing.assert_array_equal(reused.target, fitted.target)
    labelled = ends_with_target(reused, reused.splits[ALL])
    assert set(fitted.splits["train"]) < set(labelled)
    assert not np.isnan(reused.target[labelled]).any()


def test_scoring_mode_needs_the_models_scaler_and_known_zones():
    df = two_zone_frame()
    task = TaskConfig(lookback=5, horizon=3)
    with pytest.raises(ValueError, match="scaler"):
        prepare(df, task, None)
    with pytest.raises(BadInputError, match="Z2"):
        prepare(df, task, None, scaler=IDENTITY, nominal_s={"Z1": 100.0})


# ---------------------------------------------------------------------------- (4) NaN transport time


def test_empty_transport_time_is_carried_forward_as_input_and_skipped_in_targets():
    observed = [np.nan, np.nan, 100, np.nan, 120, np.nan, np.nan, 130, np.nan, np.nan, np.nan, 140]
    df = make_frame({"A": list(range(12))})
    df = df.sort_values(schema.TIMESTAMP).reset_index(drop=True)
    df[schema.TRANSPORT_TIME] = observed
    prepared = prepare(df, TaskConfig(lookback=2, horizon=3, sla_delay_s=35.0), None,
                       scaler=IDENTITY, nominal_s={"A": 90.0})
    assert_same_floats(prepared.features[:, TT], [90, 90, 100, 100, 120, 120, 120, 130, 130, 130, 130, 140])
    delay = prepared.delay_s
    assert delay[3] == 30.0  # minutes 4..6 → only 120 observed
    assert delay[4] == 40.0  # minutes 5..7 → only 130
    assert delay[1] == 20.0  # minutes 2..4 → mean(100, 120) − 90
    assert np.isnan(delay[7])  # minutes 8..10: nothing observed
    assert np.isnan(delay[9:]).all()  # the horizon runs past the end
    # the event target is undefined exactly where the delay is, else delay > sla_delay_s (35 s)
    np.testing.assert_array_equal(prepared.target, np.where(np.isnan(delay), np.nan, delay > 35.0))


# ---------------------------------------------------------------------------- bad input


def test_prepare_names_missing_columns_and_duplicates():
    task = TaskConfig(lookback=5, horizon=3)
    df = two_zone_frame()
    with pytest.raises(BadInputError, match="queue_len"):
        prepare(df.drop(columns=["queue_len"]), task, SPLIT)
    with pytest.raises(BadInputError, match="duplicate"):
        prepare(pd.concat([df, df.iloc[:1]]), task, SPLIT)
    bad = df.copy()
    bad.loc[3, "requests"] = np.nan
    with pytest.raises(BadInputError, match="requests"):
        prepare(bad, task, SPLIT)
