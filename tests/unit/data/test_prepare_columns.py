"""prepare builds the raw series column by column (no [N, F] float64 block): it must give bit
for bit what the dense float64 path gives (sorted frame → raw [N, F] → Scaler.fit, float32 rows),
and hold far less than that path while doing it."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from fabray import schema
from fabray.config import FabrayConfig, SimulationConfig, SiteConfig, SplitConfig, TaskConfig
from fabray.data.context import ContextSpec, context_columns
from fabray.data.scaler import DEFAULT_STD_FLOOR, Scaler, column_stats, stack_columns
from fabray.data.simulate import SimulationSize, simulate
from fabray.data.windows import prepare
from fabray.errors import BadInputError

L, H = 12, 3
TASK = TaskConfig(lookback=L, horizon=H, early_warning_min=2)
SPLIT = SplitConfig(train_fraction=0.5, val_fraction=0.2)


def _dense_scaler(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The scaler's definition on a dense array: mean and population std per column, floored."""
    std = x.std(axis=0)
    return x.mean(axis=0), np.where(std < DEFAULT_STD_FLOOR, 1.0, std)


def _columns_frame(seed: int = 0) -> pd.DataFrame:
    """Three zones, integer zone-like names out of order, a gap, empty transport times (also at a
    zone's first minutes), plan columns and causes; rows shuffled."""
    rng = np.random.default_rng(seed)
    parts = []
    for z, minutes in (("Z10", 90), ("Z02", 80), ("Z07", 85)):
        ts = pd.date_range("2025-01-06 21:30", periods=minutes, freq="min")
        part = pd.DataFrame({schema.TIMESTAMP: ts, schema.ZONE: z})
        for f in schema.FEATURES:
            part[f] = rng.integers(0, 30, minutes)  # int64 columns, as the simulator writes them
        part["vehicle_util"] = rng.random(minutes)
        part["mean_speed"] = 1.5 + rng.random(minutes) * 1e-3
        part[schema.TRANSPORT_TIME] = 100 + rng.random(minutes) * 100
        part.loc[rng.random(minutes) < 0.15, schema.TRANSPORT_TIME] = np.nan
        part.loc[:2, schema.TRANSPORT_TIME] = np.nan  # nothing observed at the zone's start
        part["lots_planned"] = rng.integers(0, 5, minutes).astype(float)
        part["pm_planned"] = rng.integers(0, 2, minutes).astype(float)
        part["cause"] = rng.choice(["", "breakdown", "blockage"], minutes)
        parts.append(part)
    df = pd.concat(parts, ignore_index=True)
    df = df[~((df[schema.ZONE] == "Z02") & df[schema.TIMESTAMP].between("2025-01-06 22:00", "2025-01-06 22:04"))]
    return df.iloc[rng.permutation(len(df))].reset_index(drop=True)


def test_column_stats_and_stack_columns_equal_the_dense_scaler():
    rng = np.random.default_rng(3)
    x = rng.normal(500, 80, size=(4001, 6)) * np.array([1e-3, 1.0, 1e3, 7.0, 1.0, 0.5])
    x[:, 4] = 2.0  # constant: centred only
    fit = rng.random(len(x)) < 0.7
    mean, scale = _dense_scaler(x[fit])
    stats = [column_stats(x[fit, j]) for j in range(x.shape[1])]
    assert [m for m, _ in stats] == list(mean) and [s for _, s in stats] == list(scale)  # bit for bit
    assert stats[4][1] == 1.0
    names = tuple(f"c{j}" for j in range(x.shape[1]))
    features, scaler = stack_columns((x[:, j] for j in range(x.shape[1])), len(x), names, fit_rows=fit)
    assert scaler == Scaler(names, tuple(mean), tuple(scale)) == Scaler.fit(x[fit], names)
    expected = x.astype(np.float32)  # raw: the models scale
    assert features.dtype == np.float32 and features.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(features, expected)
    again, same = stack_columns(iter(x.T), len(x), names, scaler=scaler)  # a stored scaler
    assert same is scaler
    np.testing.assert_array_equal(again, expected)
    with pytest.raises(BadInputError, match="no rows"):
        stack_columns(iter(x.T), len(x), names, fit_rows=np.zeros(len(x), bool))
    with pytest.raises(ValueError, match="expected 6 columns"):
        stack_columns(iter(x.T[:5]), len(x), names, fit_rows=fit)


def test_prepare_equals_the_dense_float64_path():
    df = _columns_frame()
    spec = ContextSpec.from_site(SiteConfig(), H, list(df.columns))
    assert spec.plan_columns and spec.neighbour_slots and spec.shift_changes_min
    p = prepare(df, TASK, SPLIT, context=spec)

    # the dense path, written out with pandas
    s = df.sort_values([schema.ZONE, schema.TIMESTAMP], kind="stable").reset_index(drop=True)
    zones = tuple(sorted(s[schema.ZONE].unique()))
    codes = s[schema.ZONE].map({z: i for i, z in enumerate(zones)}).to_numpy()
    assert p.zones == zones
    np.testing.assert_array_equal(p.zone_codes, codes)
    np.testing.assert_array_equal(p.timestamps, s[schema.TIMESTAMP].to_numpy().astype("datetime64[ns]"))
    nominal_per_row = np.array([p.nominal_s[z] for z in zones])[codes]
    raw = s[list(schema.FEATURES)].to_numpy(dtype=np.float64)  # [N, 12]
    tt = schema.FEATURES.index(schema.TRANSPORT_TIME)
    carried = s.groupby(schema.ZONE, sort=False)[schema.TRANSPORT_TIME].ffill().to_numpy(np.float64)
    raw[:, tt] = np.where(np.isnan(carried), nominal_per_row, carried)
    plan = s[list(spec.plan_columns)].to_numpy(dtype=np.float64)
    ctx = context_columns(spec, codes, zones, p.timestamps, raw, nominal_per_row, plan)
    full = np.concatenate([raw, ctx], axis=1)  # [N, 12 + C] float64
    # the train span: a zone's first ⌊T · train_fraction⌋ minutes
    first = s.groupby(schema.ZONE)[schema.TIMESTAMP].transform("min")
    offset = (s[schema.TIMESTAMP] - first) // pd.Timedelta(minutes=1)
    total = offset.groupby(s[schema.ZONE]).transform("max") + 1
    train = (offset < np.floor(total * SPLIT.train_fraction)).to_numpy()
    for z, code in zip(zones, range(len(zones))):
        values = s.loc[(codes == code) & train, schema.TRANSPORT_TIME].dropna()
        assert p.nominal_s[z] == float(np.median(values))

    mean, scale = _dense_scaler(full[train])
    assert p.scaler.features == (*schema.FEATURES, *spec.column_names())
    assert p.scaler.mean == tuple(mean) and p.scaler.scale == tuple(scale)  # bit for bit
    assert p.features.dtype == np.float32 and p.features.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(p.features, full.astype(np.float32))  # raw: the models scale
    np.testing.assert_array_equal(p.minute_delay_s, (raw[:, tt] - nominal_per_row).astype(np.float32))
    assert list(p.cause) == list(s["cause"]) and p.cause.dtype == object

    # scoring with the stored scaler reproduces the same rows
    scored = prepare(df, TASK, None, scaler=p.scaler, nominal_s=p.nominal_s, context=spec)
    np.testing.assert_array_equal(scored.features, p.features)


def test_prepare_holds_the_series_not_a_dense_float64_copy():
    """Traced peak while preparing a 16-zone simulated day set: the float32 output plus a few
    [N] vectors. The dense float64 path (raw [N, 33], its train rows, the transform's
    temporaries) peaked at ~7x the series here; the bound leaves room for small allocations."""
    rows = 40_000
    df = simulate(SimulationSize(zones=16, minutes=math.ceil(rows / 16), rows=rows), SimulationConfig(), seed=0)
    config = FabrayConfig()
    context = ContextSpec.from_site(config.site, config.task.horizon, list(df.columns))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        p = prepare(df, config.task, config.split, context=context)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    series = p.features.nbytes + p.target.nbytes + p.delay_s.nbytes
    assert p.features.shape == (rows, 33)
    assert peak < 3.0 * series, f"prepare peaked at {peak / series:.2f}x the series ({peak / 2**20:.1f} MB)"
