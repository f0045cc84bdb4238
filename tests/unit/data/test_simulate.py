"""The fab-traffic simulator: schema, determinism, sizes, and that its delays behave like a fab's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fabray import schema
from fabray.cli import main
from fabray.config import SimulationConfig, TaskConfig
from fabray.data.plot import busiest_zone_day, plot_zone_day
from fabray.data import sim_drivers
from fabray.data import simulate as simulate_module
from fabray.data.io import write_table
from fabray.data.simulate import (
    PRESET_ROWS,
    TINY_MINUTES,
    SimulationSize,
    delay_labels,
    preset_size,
    simulate,
    simulate_preset,
    summarize,
)
from fabray.data.windows import zone_nominal_s
from fabray.data.validate import load_validated
from fabray.errors import BadInputError

TASK = TaskConfig()


@pytest.fixture(scope="module")
def fab() -> pd.DataFrame:
    """The `tiny` preset (4 zones × 3 days), shared by the read-only tests of this module."""
    return simulate_preset("tiny", seed=0)


@pytest.fixture(scope="module")
def events(fab: pd.DataFrame) -> np.ndarray:
    return delay_labels(fab, TASK)[1]


def _rate_after(frame: pd.DataFrame, events: np.ndarray, starts: np.ndarray, minutes: int = 30) -> float:
    """Event rate over the `minutes` windows starting at each True of `starts` (same zone)."""
    zone = frame[schema.ZONE].to_numpy()
    near = np.zeros(len(frame), dtype=bool)
    for i in np.flatnonzero(starts):
        stop = i + minutes
        near[i:stop] = zone[i:stop] == zone[i]
    defined = near & ~np.isnan(events)
    return float(events[defined].mean())


def _rises(frame: pd.DataFrame, column: str) -> np.ndarray:
    """True at rows where `column` went up from the zone's previous minute."""
    values = frame[column].to_numpy()
    zone = frame[schema.ZONE].to_numpy()
    return np.r_[False, (values[1:] > values[:-1]) & (zone[1:] == zone[:-1])]


# ---------------------------------------------------------------------------- schema


def test_columns_dtypes_and_ranges(fab: pd.DataFrame) -> None:
    assert tuple(fab.columns) == (*schema.COLUMNS, *schema.OPTIONAL_COLUMNS)
    assert pd.api.types.is_datetime64_dtype(fab[schema.TIMESTAMP])
    assert pd.api.types.is_string_dtype(fab[schema.ZONE])
    assert list(fab[schema.ZONE].unique()) == ["Z01", "Z02", "Z03", "Z04"]
    assert (fab[schema.TIMESTAMP].dt.second == 0).all()
    for name in schema.COUNT_FEATURES:
        assert fab[name].dtype == np.int64, name
        assert (fab[name] >= 0).all(), name
    for name in set(schema.FEATURES) - set(schema.COUNT_FEATURES):
        assert fab[name].dtype == np.float64, name
    for name in schema.FRACTION_FEATURES:
        assert fab[name].between(0.0, 1.0).all(), name
    assert (fab["mean_speed"] > 0).all()
    # Hot lots are in the queue; vehicles down never exceed a zone's fleet.
    assert (fab["hot_lots"] <= fab["queue_len"]).all()
    assert (fab["vehicles_down"] < SimulationConfig().vehicles_per_zone * 1.5).all()
    for name in schema.PLAN_COLUMNS:
        assert fab[name].dtype == np.int64, name
        assert (fab[name] >= 0).all() and fab[name].sum() > 0, name
    assert pd.api.types.is_string_dtype(fab[schema.CAUSE])
    assert set(fab[schema.CAUSE].unique()) <= {"", *schema.CAUSES}


def test_transport_time_nan_exactly_without_completions(fab: pd.DataFrame) -> None:
    empty = fab["completions"] == 0
    assert (fab[schema.TRANSPORT_TIME].isna() == empty).all()
    assert 0 < empty.mean() < 0.02, "minutes with no completions should be rare but happen"
    others = fab.drop(columns=[schema.TRANSPORT_TIME]).select_dtypes("number")
    assert np.isfinite(others.to_numpy(dtype=np.float64)).all()
    assert (fab.loc[~empty, schema.TRANSPORT_TIME] > 0).all()


def test_sorted_by_zone_then_minute_without_gaps_or_duplicates(fab: pd.DataFrame) -> None:
    assert not fab.duplicated([schema.ZONE, schema.TIMESTAMP]).any()
    assert fab[schema.ZONE].is_monotonic_increasing
    for _, rows in fab.groupby(schema.ZONE):
        steps = rows[schema.TIMESTAMP].diff().dropna()
        assert (steps == pd.Timedelta(minutes=1)).all()
        assert len(rows) == TINY_MINUTES


# ---------------------------------------------------------------------------- determinism


def test_same_seed_same_frame_other_seed_other_frame(fab: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(simulate_preset("tiny", seed=0), fab)
    other = simulate_preset("tiny", seed=1)
    assert other.shape == fab.shape
    assert not other["requests"].equals(fab["requests"])
    assert not np.allclose(other[schema.TRANSPORT_TIME].fillna(0), fab[schema.TRANSPORT_TIME].fillna(0))


# ---------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("preset", ["poc", "1m", "1.5m"])
@pytest.mark.parametrize("zones", [None, 7, 16, 23])
def test_presets_hit_their_exact_row_count(preset: str, zones: int | None) -> None:
    size = preset_size(preset, zones)
    assert size.rows == PRESET_ROWS[preset]
    assert size.zones == (16 if zones is None else zones)
    # Only the last zone's tail is trimmed, by less than one minute per zone.
    assert 0 <= size.zones * size.minutes - size.rows < size.zones


def test_poc_is_the_seed_sample_count() -> None:
    assert preset_size("poc").rows == 781_163


def test_tiny_keeps_three_days_per_zone_when_zones_change() -> None:
    assert preset_size("tiny") == SimulationSize(zones=4, minutes=3 * 1440, rows=4 * 3 * 1440)
    assert preset_size("tiny", 2).rows == 2 * 3 * 1440


def test_trimming_cuts_only_the_last_zones_tail() -> None:
    frame = simulate(SimulationSize(zones=3, minutes=1440, rows=3 * 1440 - 2), SimulationConfig(), seed=3)
    assert len(frame) == 3 * 1440 - 2
    assert frame.groupby(schema.ZONE).size().tolist() == [1440, 1440, 1438]


def test_one_zone_has_no_ring_but_still_simulates() -> None:
    frame = simulate(SimulationSize(zones=1, minutes=1440, rows=1440), SimulationConfig(), seed=0)
    assert frame[schema.ZONE].unique().tolist() == ["Z01"]
    assert frame["completions"].sum() > 0


@pytest.mark.parametrize(
    "call",
    [
        lambda: preset_size("huge"),
        lambda: preset_size("poc", 0),
        lambda: preset_size("poc", 1000),  # < one day per zone
        lambda: SimulationSize(zones=2, minutes=10, rows=5),  # would drop a whole zone
    ],
)
def test_bad_sizes_are_bad_input(call) -> None:
    with pytest.raises(BadInputError):
        call()


# ---------------------------------------------------------------------------- configuration


def test_nominal_by_zone_sets_that_zones_free_flow_time() -> None:
    config = SimulationConfig(nominal_by_zone_s={"Z02": 300.0})
    frame = simulate_preset("tiny", seed=0, zones=2, config=config)
    medians = frame.groupby(schema.ZONE)[schema.TRANSPORT_TIME].median()
    assert 280 < medians["Z02"] < 360  # free flow plus the usual short waits
    assert medians["Z01"] < 250


def test_nominal_for_an_unknown_zone_is_bad_input() -> None:
    with pytest.raises(BadInputError, match="Z09"):
        simulate_preset("tiny", zones=2, config=SimulationConfig(nominal_by_zone_s={"Z09": 100.0}))


def test_delays_come_from_the_configured_drivers() -> None:
    calm = SimulationConfig(
        base_load=0.35, breakdowns_per_vehicle_day=0.0, blockages_per_day=0.0, shift_surge_gain=0.0,
        pm_per_day=0.0, lot_release_gain=0.0,
    )
    busy = SimulationConfig(base_load=0.6, blockages_per_day=12.0)
    assert summarize(simulate_preset("tiny", zones=2, config=calm)).event_rate < 0.01
    assert summarize(simulate_preset("tiny", zones=2, config=busy)).event_rate > 0.12


def test_configured_nominal_wins_over_the_train_span_median_training_uses(fab: pd.DataFrame) -> None:
    """`fabray simulate`'s event rate and training label with the same nominal: the configured
    one, else the median over the zone's train span (not over the whole file)."""
    from fabray.config import SplitConfig
    from fabray.data.windows import prepare

    task = TaskConfig(nominal_transport_time_s={"Z01": 123.0})
    nominal = zone_nominal_s(fab, task)
    assert nominal["Z01"] == 123.0
    z02 = fab.loc[fab[schema.ZONE] == "Z02"].sort_values(schema.TIMESTAMP)[schema.TRANSPORT_TIME]
    train_rows = int(np.floor(len(z02) * SplitConfig().train_fraction))  # the tiny fab has no gaps
    assert nominal["Z02"] == pytest.approx(z02.iloc[:train_rows].median())
    assert nominal["Z02"] != pytest.approx(z02.median())  # the whole file's would differ
    assert nominal == prepare(fab, task, SplitConfig()).nominal_s


# ---------------------------------------------------------------------------- behaviour of the delays


def test_delay_events_are_a_minority_but_common(fab: pd.DataFrame, events: np.ndarray) -> None:
    defined = ~np.isnan(events)
    assert defined.sum() == len(fab) - 4 * TASK.horizon  # the last horizon of each zone
    assert 0.05 < events[defined].mean() < 0.30
    assert summarize(fab, TASK).event_rate == pytest.approx(events[defined].mean())


def test_events_cluster_after_breakdowns_and_shift_changes(fab: pd.DataFrame, events: np.ndarray) -> None:
    base = float(np.nanmean(events))
    breakdown = _rate_after(fab, events, _rises(fab, "vehicles_down"))
    ts = fab[schema.TIMESTAMP]
    shift = ((ts.dt.minute == 0) & ts.dt.hour.isin([6, 14, 22])).to_numpy()
    after_shift = _rate_after(fab, events, shift)
    assert breakdown > 1.5 * base, (breakdown, base)
    assert after_shift > 2.0 * base, (after_shift, base)


def test_blockages_raise_transport_time_at_once(fab: pd.DataFrame) -> None:
    """A blockage has no precursor, and its effect on transport time is immediate."""
    tt = fab[schema.TRANSPORT_TIME].to_numpy()
    starts = np.flatnonzero(_rises(fab, "blocked_segments"))
    starts = starts[starts >= 5]
    same_zone = fab[schema.ZONE].to_numpy()
    starts = starts[[same_zone[i - 5] == same_zone[i] for i in starts]]
    before = np.nanmean([np.nanmean(tt[i - 5 : i]) for i in starts])
    during = np.nanmean([np.nanmean(tt[i : i + 5]) for i in starts])
    assert len(starts) > 20
    assert during > before + 30


def test_persistence_is_useful_but_far_from_perfect(fab: pd.DataFrame, events: np.ndarray) -> None:
    """Predict an event when the last 5 minutes' delay already exceeds the SLA."""
    nominal = fab[schema.ZONE].map(zone_nominal_s(fab, TASK))
    recent = fab.groupby(schema.ZONE, sort=False)[schema.TRANSPORT_TIME].transform(
        lambda s: s.rolling(5, min_periods=1).mean()
    )
    predicted = ((recent - nominal) > TASK.sla_delay_s).to_numpy()
    defined = ~np.isnan(events)
    y, p = events[defined] == 1, predicted[defined]
    f1 = 2 * (y & p).sum() / (y.sum() + p.sum())
    assert 0.2 < f1 < 0.9, f1


def _speed_ratio_next_to_jams(frame: pd.DataFrame) -> float:
    """Mean speed with a jammed ring neighbour a minute earlier / with calm neighbours (own rail clear)."""
    def table(column: str) -> np.ndarray:
        return frame.pivot(index=schema.TIMESTAMP, columns=schema.ZONE, values=column).to_numpy()

    queue, speed, clear = table("queue_len"), table("mean_speed"), table("blocked_segments") == 0
    neighbours = np.maximum(np.roll(queue, 1, axis=1), np.roll(queue, -1, axis=1))  # [T, Z]
    neighbours = np.r_[np.zeros((1, queue.shape[1])), neighbours[:-1]]
    jammed, calm = clear & (neighbours > 20), clear & (neighbours == 0)
    assert jammed.sum() > 50
    return float(speed[jammed].mean() / speed[calm].mean())


def test_congestion_spills_to_ring_neighbours(fab: pd.DataFrame) -> None:
    assert _speed_ratio_next_to_jams(fab) < 0.95
    isolated = simulate_preset("tiny", seed=0, config=SimulationConfig(spillover=0.0))
    assert _speed_ratio_next_to_jams(isolated) > 0.97


# ---------------------------------------------------------------------------- plot and CLI


def test_busiest_day_is_the_most_congested(fab: pd.DataFrame) -> None:
    zone, day = busiest_zone_day(fab)
    per_day = fab.groupby([fab[schema.ZONE], fab[schema.TIMESTAMP].dt.floor("D")])["queue_len"].sum()
    assert per_day[(zone, day)] == per_day.max()


def test_plot_draws_stacked_panels(fab: pd.DataFrame, events: np.ndarray) -> None:
    fig = plot_zone_day(fab, events, zone_nominal_s(fab), TASK.sla_delay_s, zone="Z01", day="2025-01-07")
    assert len(fig.axes) == 5
    tt_axis = fig.axes[-1]
    assert any("nominal + SLA" in t.get_text() for t in tt_axis.get_legend().get_texts())
    with pytest.raises(BadInputError):
        plot_zone_day(fab, events[:-1], zone_nominal_s(fab), TASK.sla_delay_s)


def test_cli_writes_parquet_summary_and_plot(tmp_path, capsys) -> None:
    out, png = tmp_path / "fab.parquet", tmp_path / "day.png"
    assert main(["simulate", "--preset", "tiny", "--zones", "2", "--seed", "5",
                 "--out", str(out), "--plot", str(png)]) == 0
    frame = pd.read_parquet(out)
    pd.testing.assert_frame_equal(frame, simulate_preset("tiny", seed=5, zones=2), check_dtype=False)
    line = capsys.readouterr().out.strip()
    assert "8,640 rows" in line and "2 zones" in line and "delay-event rate" in line
    assert "congested minutes" in line and "by cause:" in line
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_writes_csv(tmp_path) -> None:
    out = tmp_path / "fab.csv"
    assert main(["simulate", "--zones", "1", "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert tuple(frame.columns) == (*schema.COLUMNS, *schema.OPTIONAL_COLUMNS) and len(frame) == TINY_MINUTES


def test_cli_reads_the_simulation_section_of_a_config(tmp_path, capsys) -> None:
    config = tmp_path / "fab.yaml"
    config.write_text("simulation:\n  zones: 1\n  nominal_by_zone_s: {Z01: 400}\n")
    out = tmp_path / "fab.parquet"
    assert main(["simulate", "--config", str(config), "--out", str(out)]) == 0
    frame = pd.read_parquet(out)
    assert frame[schema.ZONE].unique().tolist() == ["Z01"]
    assert frame[schema.TRANSPORT_TIME].median() > 380
    config.write_text("simulation:\n  vehicles_per_zone: -3\n")
    assert main(["simulate", "--config", str(config), "--out", str(out)]) == 2
    assert "vehicles_per_zone" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--out", "x.json"], ["--out", "x.parquet", "--plot", "x.svg"],
                                  ["--out", "x.parquet", "--zones", "0"],
                                  ["--preset", "poc", "--zones", "999", "--out", "x.parquet"]])
def test_cli_bad_input_exits_2(tmp_path, monkeypatch, capsys, argv) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", *argv]) == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()


# ---------------------------------------------------------------------------- the plan and the cause

#: sha256 of the 12 feature columns of `simulate_preset("tiny", seed=0)`, recorded before the plan
#: and cause columns were added: other tests and stored results depend on these exact values.
FEATURES_SHA256_TINY_SEED0 = "3d83a97ed66ba98a89a6d0143e1ffc5366c3902067afb3478ee17ffccb32c4a6"
#: No driver of congestion but the one under test.
NO_DRIVERS = dict(shift_surge_gain=0.0, lot_release_gain=0.0, pm_per_day=0.0, blockages_per_day=0.0,
                  breakdowns_per_vehicle_day=0.0)
NOISE_FREE_PLAN = dict(plan_time_jitter_min=0.0, plan_size_noise=0.0, unplanned_release_share=0.0,
                       unplanned_pm_share=0.0, plan_cancelled_share=0.0)


def _features_sha256(frame: pd.DataFrame) -> str:
    import hashlib

    digest = hashlib.sha256()
    for name in schema.FEATURES:
        digest.update(np.ascontiguousarray(frame[name].to_numpy()).tobytes())
    return digest.hexdigest()


def test_the_12_features_are_unchanged_by_the_new_columns(fab: pd.DataFrame) -> None:
    assert _features_sha256(fab) == FEATURES_SHA256_TINY_SEED0


def test_tiny_frame_validates_with_plan_and_cause(fab: pd.DataFrame, tmp_path) -> None:
    for fmt in ("parquet", "csv"):
        clean = load_validated(write_table(fab, tmp_path / f"fab.{fmt}"))
        assert tuple(clean.columns) == (*schema.COLUMNS, *schema.OPTIONAL_COLUMNS)
        for name in schema.PLAN_COLUMNS:
            np.testing.assert_array_equal(clean[name].to_numpy(), fab[name].to_numpy())
        assert clean[schema.CAUSE].tolist() == fab[schema.CAUSE].tolist()


def _actual_schedule(config: SimulationConfig, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(actual wave lots per minute [T, Z], PM active [T, Z], plan columns' rng-free inputs) of tiny."""
    size = preset_size("tiny")
    rng = np.random.default_rng(seed)
    zone = sim_drivers.draw_zones(rng, simulate_module.zone_names(size.zones), config)
    exo = sim_drivers.exogenous(rng, size.minutes, zone, config)
    active = np.zeros((size.minutes, size.zones), dtype=bool)
    for t, z, dur in zip(*exo.pm_events):
        active[t : t + dur, z] = True
    return exo.wave * exo.base_rate[None, :], active, exo


def _table(frame: pd.DataFrame, column: str) -> np.ndarray:
    return frame.pivot(index=schema.TIMESTAMP, columns=schema.ZONE, values=column).to_numpy()


def test_noise_free_plan_is_the_actual_schedule() -> None:
    config = SimulationConfig(**NOISE_FREE_PLAN)
    frame = simulate_preset("tiny", seed=0, config=config)
    wave_lots, pm_active, _ = _actual_schedule(config)
    planned = _table(frame, "lots_planned")
    # Rounded so that each zone's running total is kept: within one lot of the actual waves' lots.
    assert np.abs(np.cumsum(planned, axis=0) - np.cumsum(wave_lots, axis=0)).max() <= 0.5 + 1e-9
    assert ((_table(frame, "pm_planned") > 0) == pm_active).all()


def test_default_plan_is_noisy_but_informative(fab: pd.DataFrame) -> None:
    wave_lots, pm_active, _ = _actual_schedule(SimulationConfig())
    planned = _table(fab, "lots_planned").astype(float)
    r = np.corrcoef(planned.ravel(), wave_lots.ravel())[0, 1]
    assert 0.5 < r < 0.99, r
    pm_planned = _table(fab, "pm_planned") > 0
    agree = (pm_planned == pm_active).mean()
    assert 0.9 < agree < 1.0, agree
    assert (pm_active & ~pm_planned).sum() > 60  # unplanned PM minutes (and jittered edges)


def test_plan_is_not_the_outcome(fab: pd.DataFrame) -> None:
    """The plan does not move when the traffic does (more breakdowns and blockages)."""
    other = simulate_preset("tiny", seed=0, config=SimulationConfig(
        breakdowns_per_vehicle_day=2.0, blockages_per_day=20.0))
    assert not other[schema.TRANSPORT_TIME].equals(fab[schema.TRANSPORT_TIME])
    for name in schema.PLAN_COLUMNS:
        assert other[name].equals(fab[name]), name


def test_nothing_planned_when_everything_is_unplanned() -> None:
    config = SimulationConfig(unplanned_release_share=1.0, unplanned_pm_share=1.0, plan_cancelled_share=0.0)
    frame = simulate_preset("tiny", seed=0, zones=2, config=config)
    assert (frame["lots_planned"] == 0).all() and (frame["pm_planned"] == 0).all()


@pytest.mark.parametrize(
    ("cause", "driver"),
    [
        ("breakdown", dict(breakdowns_per_vehicle_day=1.0)),
        ("shift_change", dict(shift_surge_gain=1.0)),
        ("lot_release", dict(lot_release_gain=0.8)),
        ("pm", dict(pm_per_day=2.0, pm_wip_gain=1.0)),
        ("blockage", dict(blockages_per_day=12.0)),
    ],
)
def test_a_single_driver_is_named_the_cause(cause: str, driver: dict) -> None:
    config = SimulationConfig(**{**NO_DRIVERS, **driver})
    alone = simulate_preset("tiny", seed=0, zones=1, config=config)[schema.CAUSE]  # no ring
    assert (alone != "").mean() > 0.01, "the driver should congest the zone now and then"
    assert set(alone.unique()) == {"", cause}
    ring = simulate_preset("tiny", seed=0, config=config)[schema.CAUSE]
    labels = ring[ring != ""].value_counts(normalize=True)
    assert set(labels.index) <= {cause, "spillover"}  # neighbours of a jam are slowed by it
    assert labels[cause] > 0.75, labels.to_dict()


def test_no_driver_no_congestion_no_cause() -> None:
    calm = simulate_preset("tiny", seed=0, zones=2, config=SimulationConfig(**NO_DRIVERS, base_load=0.3))
    assert (calm[schema.CAUSE] == "").mean() > 0.995


def test_delayed_minutes_and_episodes_carry_a_cause(fab: pd.DataFrame, events: np.ndarray, capsys) -> None:
    """Evaluation names an episode by the most common cause over the minutes its delay concerns."""
    cause = fab[schema.CAUSE].to_numpy()
    zone = fab[schema.ZONE].to_numpy()
    late = (fab[schema.TRANSPORT_TIME] - fab[schema.ZONE].map(zone_nominal_s(fab, TASK))) > TASK.sla_delay_s
    assert (cause[late.to_numpy()] != "").mean() > 0.9
    start = np.flatnonzero((events == 1) & ~np.r_[False, (events[:-1] == 1) & (zone[1:] == zone[:-1])])
    named = [pd.Series(cause[i + 1 : i + 1 + TASK.horizon]).replace("", np.nan).dropna() for i in start]
    episode_causes = pd.Series([c.mode()[0] if len(c) else "" for c in named])
    assert (episode_causes != "").mean() > 0.95
    shares = fab[schema.CAUSE][fab[schema.CAUSE] != ""].value_counts(normalize=True)
    assert set(shares.index) == set(schema.CAUSES), shares.to_dict()  # every cause occurs
    with capsys.disabled():
        print(f"\ntiny seed 0: congested minutes {(cause != '').mean():.1%}; cause shares "
              f"{shares.round(3).to_dict()}; episodes by cause {episode_causes.value_counts().to_dict()}")
