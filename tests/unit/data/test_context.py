"""Context inputs: calendar, known-future plan, neighbours (fabray.data.context via prepare).

The leakage test is the guard DESIGN §1 asks for: a window ending at t sees the plan for
t+1 … t+H and nothing observed after t; it fails if any column shifts by one row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fabray import schema
from fabray.config import SiteConfig, SplitConfig, TaskConfig
from fabray.data.context import ContextSpec, neighbour_codes, neighbours_of, window_context
from fabray.data.windows import early_warning_target, gather_windows, prepare
from fabray.errors import BadInputError

L, H = 12, 3
TASK = TaskConfig(lookback=L, horizon=H, early_warning_min=0)
SPLIT = SplitConfig(train_fraction=0.5, val_fraction=0.2)
N_MIN = 120


def _frame(zones=("Z01", "Z02", "Z03"), minutes=N_MIN, seed=0, gap=None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for z in zones:
        ts = pd.date_range("2025-01-06 05:00", periods=minutes, freq="min")  # a Monday
        part = pd.DataFrame({schema.TIMESTAMP: ts, schema.ZONE: z})
        for f in schema.FEATURES:
            part[f] = rng.integers(0, 20, minutes).astype(float)
        part["vehicle_util"] = rng.random(minutes)
        part["stocker_fill"] = rng.random(minutes)
        part[schema.TRANSPORT_TIME] = 100 + rng.random(minutes) * 100
        part["lots_planned"] = rng.integers(0, 5, minutes).astype(float)
        part["pm_planned"] = rng.integers(0, 2, minutes).astype(float)
        parts.append(part)
    df = pd.concat(parts, ignore_index=True)
    if gap is not None:
        zone, lo, hi = gap
        drop = (df[schema.ZONE] == zone) & df[schema.TIMESTAMP].between(lo, hi)
        df = df[~drop].reset_index(drop=True)
    return df


def _spec(df: pd.DataFrame, **site) -> ContextSpec:
    return ContextSpec.from_site(SiteConfig(**site), H, list(df.columns))


def _raw_inputs(df: pd.DataFrame, spec: ContextSpec):
    p = prepare(df, TASK, SPLIT, context=spec)
    return p, p.features.astype(np.float64)  # [N, 12 + C] raw units (prepare does not scale)


def test_columns_follow_the_switches():
    df = _frame()
    full = _spec(df)
    assert full.plan_columns == ("lots_planned", "pm_planned")
    names = full.column_names()
    assert names[:6] == ("cal_day_sin", "cal_day_cos", "cal_week_sin", "cal_week_cos",
                         "cal_to_shift_h", "cal_since_shift_h")
    assert f"lots_planned@+{H}" in names and "plan_known" in names and "nb1_present" in names
    assert _spec(df, calendar=False, plan=False, neighbours=False).empty
    no_plan_data = _spec(df.drop(columns=["lots_planned", "pm_planned"]))
    assert no_plan_data.plan_columns == () and "plan_known" not in no_plan_data.column_names()
    assert ContextSpec.from_dict(full.to_dict()) == full
    p = prepare(df, TASK, SPLIT, context=full)
    assert p.features.shape[1] == 12 + len(names)
    assert p.input_columns == (*schema.FEATURES, *names)


def test_calendar_values():
    df = _frame(zones=("Z01",))
    p, raw = _raw_inputs(df, _spec(df, plan=False, neighbours=False))
    cols = list(p.input_columns)
    ts = pd.to_datetime(p.timestamps)
    at = {t.strftime("%H:%M"): i for i, t in enumerate(ts)}
    to_shift, since = cols.index("cal_to_shift_h"), cols.index("cal_since_shift_h")
    assert raw[at["05:50"], to_shift] == pytest.approx(10 / 60, abs=1e-5)  # next change 06:00
    assert raw[at["06:00"], to_shift] == pytest.approx(0.0, abs=1e-5)
    assert raw[at["06:05"], since] == pytest.approx(5 / 60, abs=1e-5)
    assert raw[at["05:50"], since] == pytest.approx(7 + 50 / 60, abs=1e-5)  # since 22:00
    day = 2 * np.pi * (6 * 60) / 1440
    assert raw[at["06:00"], cols.index("cal_day_sin")] == pytest.approx(np.sin(day), abs=1e-5)
    assert raw[at["06:00"], cols.index("cal_week_cos")] == pytest.approx(np.cos(2 * np.pi * 360 / (7 * 1440)), abs=1e-5)


def test_window_sees_future_plan_and_nothing_observed_after_its_end():
    df = _frame()
    spec = _spec(df)
    p, _ = _raw_inputs(df, spec)
    end = int(p.splits["train"][20])
    zone = p.zones[p.zone_codes[end]]
    t_end = pd.Timestamp(p.timestamps[end])
    base = gather_windows(p.features, np.array([end]), L)[0]  # [L, F] raw
    cols = list(p.input_columns)
    plan_cols = [cols.index(f"{c}@+{H}") for c in spec.plan_columns]

    def window_after(change) -> np.ndarray:
        changed = df.copy()
        change(changed)
        q = prepare(changed, TASK, SPLIT, context=spec, scaler=p.scaler, nominal_s=p.nominal_s)
        return gather_windows(q.features, np.array([end]), L)[0]

    after = df[schema.TIMESTAMP] > t_end
    # every observed value after t, in every zone, changes: the window does not move
    def observed_later(d):
        d.loc[after, list(schema.FEATURES)] = d.loc[after, list(schema.FEATURES)] * 3 + 7
    np.testing.assert_array_equal(window_after(observed_later), base)

    # the plan beyond t+H changes: the window does not move
    far = df[schema.TIMESTAMP] > t_end + pd.Timedelta(minutes=H)
    def plan_later(d):
        d.loc[far, "lots_planned"] = d.loc[far, "lots_planned"] + 50
    np.testing.assert_array_equal(window_after(plan_later), base)

    # the plan for t+1 … t+H of the window's zone shows in exactly its last H rows
    for k in range(1, H + 1):
        minute = (df[schema.ZONE] == zone) & (df[schema.TIMESTAMP] == t_end + pd.Timedelta(minutes=k))

        def plan_k(d, minute=minute):
            d.loc[minute, "lots_planned"] = d.loc[minute, "lots_planned"] + 50
        moved = window_after(plan_k)
        diff_rows, diff_cols = np.nonzero(moved != base)
        assert diff_rows.tolist() == [L - 1 - H + k] and diff_cols.tolist() == [plan_cols[0]], k


def test_plan_unknown_at_the_tail_is_flagged_not_guessed():
    df = _frame(zones=("Z01",))
    spec = _spec(df, calendar=False, neighbours=False)
    p = prepare(df, TASK, None, context=spec, scaler=prepare(df, TASK, SPLIT, context=spec).scaler,
                nominal_s={"Z01": 150.0})
    raw = p.features.astype(np.float64)
    known = raw[:, p.input_columns.index("plan_known")]
    assert known[:-H].min() == pytest.approx(1) and np.allclose(known[-H:], 0)
    assert np.allclose(raw[-H:, p.input_columns.index(f"lots_planned@+{H}")], 0, atol=1e-4)


def _naive_neighbours(df, spec, nominal, zone_order):
    """Row-by-row reference: dict (zone, timestamp) → list of slot values."""
    rows = {(r[schema.ZONE], r[schema.TIMESTAMP]): r for _, r in df.iterrows()}
    slots = neighbour_codes(spec.topology, zone_order)
    out = {}
    for (zone, ts), _ in rows.items():
        values = []
        for code in slots[zone_order.index(zone)]:
            other = rows.get((zone_order[code], ts)) if code >= 0 else None
            for f in spec.neighbour_features:
                if other is None:
                    values.append(0.0)
                elif f == schema.TRANSPORT_TIME:
                    values.append(other[f] - nominal[zone_order[code]])
                else:
                    values.append(other[f])
            values.append(0.0 if other is None else 1.0)
        out[(zone, ts)] = values
    return out


@pytest.mark.parametrize("topology", ["ring", {"Z01": ["Z03"], "Z02": ["Z01", "Z03"]}])
def test_neighbour_features_equal_a_naive_reference(topology):
    gap = ("Z02", pd.Timestamp("2025-01-06 05:30"), pd.Timestamp("2025-01-06 05:34"))
    df = _frame(gap=gap)
    spec = _spec(df, calendar=False, plan=False, topology=topology)
    p, raw = _raw_inputs(df, spec)
    ref = _naive_neighbours(df, spec, p.nominal_s, list(p.zones))
    nb = [i for i, c in enumerate(p.input_columns) if c.startswith("nb")]
    got = raw[:, nb]
    expected = np.array([ref[(p.zones[c], pd.Timestamp(t))] for c, t in zip(p.zone_codes, p.timestamps)])
    np.testing.assert_allclose(got, expected, atol=1e-3)
    # Z01 and Z03 rows during Z02's gap see Z02 as absent
    if topology == "ring":
        assert expected[:, nb.index(nb[-1])].min() == 0.0


def test_topologies():
    assert neighbour_codes("ring", ["A", "B", "C"]).tolist() == [[2, 1], [0, 2], [1, 0]]
    assert neighbour_codes("ring", ["A"]).tolist() == [[-1, -1]]
    assert neighbour_codes({"A": ["C"], "B": ["A", "X"]}, ["A", "B", "C"]).tolist() == [[2, -1], [0, -1], [-1, -1]]
    with pytest.raises(BadInputError, match="itself"):
        neighbour_codes({"A": ["A"]}, ["A", "B"])
    assert neighbours_of(ContextSpec(horizon=H, topology="ring"), ("A", "B", "C"), "A") == ["C", "B"]


def test_one_window_context_equals_the_series_rows():
    """Serving builds a window's context on its own; it must equal what training built."""
    df = _frame()
    spec = _spec(df)
    p, raw = _raw_inputs(df, spec)
    end = int(p.splits["val"][5])
    zone = p.zones[p.zone_codes[end]]
    t_end = pd.Timestamp(p.timestamps[end])
    minutes = pd.date_range(t_end - pd.Timedelta(minutes=L - 1), t_end, freq="min")
    by_zone = {z: g.set_index(schema.TIMESTAMP) for z, g in df.groupby(schema.ZONE)}
    neighbours = {z: by_zone[z].reindex(minutes)[list(schema.FEATURES)].to_numpy() for z in p.zones if z != zone}
    future = pd.date_range(minutes[0], t_end + pd.Timedelta(minutes=H), freq="min")
    plan = {c: by_zone[zone].reindex(future)[c].to_numpy() for c in spec.plan_columns}
    ctx = window_context(spec, p.zones, zone, t_end, L, p.nominal_s, neighbours, plan)
    np.testing.assert_allclose(ctx, raw[end - L + 1:end + 1, 12:], atol=1e-3)
    # without neighbours and plan: those columns are marked absent / unknown, calendar unchanged
    bare = window_context(spec, p.zones, zone, t_end, L, p.nominal_s)
    cols = list(spec.column_names())
    assert np.all(bare[:, cols.index("plan_known")] == 0) and np.all(bare[:, cols.index("nb0_present")] == 0)
    np.testing.assert_allclose(bare[:, :6], ctx[:, :6])
    with pytest.raises(BadInputError, match="timestamp"):
        window_context(spec, p.zones, zone, None, L, p.nominal_s)
    with pytest.raises(BadInputError, match="plan"):
        window_context(spec, p.zones, zone, t_end, L, p.nominal_s, plan={"lots_planned": [1.0] * 3})


def test_scoring_data_without_the_trained_plan_columns_is_refused():
    df = _frame()
    spec = _spec(df)
    p = prepare(df, TASK, SPLIT, context=spec)
    with pytest.raises(BadInputError, match="plan columns"):
        prepare(df.drop(columns=["lots_planned"]), TASK, None, scaler=p.scaler, nominal_s=p.nominal_s, context=spec)
    with pytest.raises(BadInputError, match="input columns"):
        prepare(df, TASK, None, scaler=p.scaler, nominal_s=p.nominal_s, context=None)


def test_early_warning_target():
    target = np.array([0, 0, 0, 0, 1, 1, 0, 0, np.nan, 0, 0, 1], dtype=np.float32)
    after = np.array([7, 6, 5, 4, 3, 2, 1, 0, 3, 2, 1, 0])  # a segment break after row 7
    got = early_warning_target(target, after, 2)
    np.testing.assert_array_equal(got[:8], [0, 0, 1, 1, 1, 1, 0, 0])
    assert np.isnan(got[8])
    np.testing.assert_array_equal(got[9:], [1, 1, 1])
    np.testing.assert_array_equal(early_warning_target(target, after, 0)[:8], target[:8])
    p = prepare(_frame(zones=("Z01",)), TaskConfig(lookback=L, horizon=H, early_warning_min=4), SPLIT)
    assert np.nansum(p.fit_target) >= np.nansum(p.target)
    assert p.fit_target is p.train_target


def test_prepared_data_carries_the_minute_delay_and_the_diagnostic_cause():
    df = _frame(zones=("Z01",))
    df["cause"] = ""
    df.loc[5, "cause"] = "breakdown"
    df.loc[6, "cause"] = None
    p = prepare(df, TASK, SPLIT, nominal_s={"Z01": 150.0})
    assert p.cause[5] == "breakdown" and p.cause[6] == "" and p.cause.dtype == object
    np.testing.assert_allclose(p.minute_delay_s[:10], df[schema.TRANSPORT_TIME][:10] - 150.0, rtol=1e-5)
    assert prepare(df.drop(columns=["cause"]), TASK, SPLIT).cause is None
