"""The fab-traffic simulator (DESIGN §2): a minute-step model of OHT traffic, one series per zone.

Not noise with labels: each zone is a queue of transport requests served by its vehicles.

- **Demand.** Requests arrive (Poisson) at a rate set by the zone's load, a daily profile, a lull
  before and a surge after each shift change (06:00, 14:00, 22:00 by default; each surge's size
  varies), lot-release waves that travel around the interbay ring, the zone's WIP (which a tool
  PM raises for hours) and a slow random drift. Hot lots are extra requests that each hold a
  vehicle until picked up (their priority is not modelled in the FIFO waits). The loop is
  closed: tools starved of late lots issue fewer requests, so a jam stays finite.
- **Service.** Capacity per minute = available vehicles × service rate × speed factor, where a
  vehicle's cycle is approach + travel + load/unload; blocked rail segments, congested
  neighbours and a nearly full stocker lengthen it. Requests are served first-in first-out, and
  a completion's transport time is its wait in the queue plus its cycle, so queues build before
  transport times rise (predictable), and waits outlast the cause (a breakdown's effect lasts).
- **Failures.** Vehicles fault (more often when busy) and are repaired; a faulted vehicle may be
  stuck on the rail and block a segment until towed. Segments also block with no precursor and
  clear later: those delays cannot be foreseen, so no model reaches 100%.
- **Spill-over.** Zones sit on a ring (the interbay loop): a congested zone slows its two
  neighbours a minute later, and borrows some of their idle vehicles.

Besides the 12 features, three optional columns (schema.OPTIONAL_COLUMNS) follow them:

- **`lots_planned`** (int >= 0): lots the release plan sends into the zone in that minute, i.e.
  planned to arrive there as transport requests in that minute. Each lot-release wave's planned
  lots (its actual size in the zone, ×(1 ± `plan_size_noise`)) are spread over the wave's bump
  around its planned arrival (actual arrival + N(0, `plan_time_jitter_min`) minutes), rounded so
  the running total is kept. `unplanned_release_share` of the actual waves are not in the plan;
  `plan_cancelled_share` as many planned waves never happen.
- **`pm_planned`** (int >= 0): the zone's tools scheduled to be under preventive maintenance in
  that minute. Planned PMs are the actual ones, start and end each off by N(0,
  `plan_time_jitter_min`) minutes, minus `unplanned_pm_share` unplanned ones, plus cancelled ones.
  The plan exists for every minute (also ahead of any window), and it is what was scheduled,
  never the outcome: it depends neither on the queue nor on breakdowns or blockages.
- **`cause`** (str): what drove the zone's congestion in that minute, one of schema.CAUSES, or ""
  where the zone is not congested (see `_causes`). "breakdown" covers faulted vehicles and the
  segments blocked by stuck vehicles; "blockage" only the segments that block with no precursor.
  A diagnostic for evaluation, never a model input.

The plan's noise comes from its own generator (`default_rng([seed, 101])`) and the cause draws no
randomness, so the 12 features are the same as before these columns existed.

The loop runs over minutes with numpy arrays over zones; everything that does not depend on the
queue state (demand, hot lots, PM, WIP, spontaneous blockages) is drawn up front, vectorised.
FIFO waiting times are computed after the loop from cumulative arrivals and completions. Pure
numpy/pandas: no ray, no files.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fabray import schema
from fabray.config import SimulationConfig, SplitConfig, TaskConfig
from fabray.errors import BadInputError

logger = logging.getLogger(__name__)

MINUTES_PER_DAY = 1440

# Share of the nominal (free-flow) transport time spent on each leg of a vehicle's cycle.
_APPROACH_SHARE, _TRAVEL_SHARE, _HANDLING_SHARE = 0.15, 0.6, 0.25
_STOCKER_SLOW_FILL = 0.85  # above this stocker occupancy, hand-offs slow down
_STOCKER_PENALTY_S = 60.0  # extra hand-off seconds at a full stocker
_CONGESTED_BACKLOG_MIN = 10.0  # a queue worth this many minutes of capacity = fully congested
_WIP_TIME_CONSTANT_MIN = 90.0  # how fast WIP follows its target
_DEMAND_NOISE_CORR_MIN = 60.0  # correlation time of the slow demand drift
_WIP_NOISE = 0.08  # relative standard deviation of WIP's random walk around its target
_WIP_DEMAND_ELASTICITY = 0.3  # demand ∝ (WIP / base WIP) ** this
_THROTTLE_BACKLOG_MIN = 20.0  # a queue worth this many minutes of capacity halves new requests
_WAVE_LAG_MIN = 7.0  # minutes for a lot-release wave to reach the next zone on the ring
_WAVE_WIDTH_MIN = 12.0  # standard deviation of a lot-release wave's bump, minutes
_SHIFT_LULL = 0.2  # demand dip in the 20 minutes before a shift change
_SHIFT_LULL_MIN = 20
_HOT_PICKUP_PROB = 0.6  # chance per minute a waiting hot lot is picked up (with a vehicle idle)


@dataclass(frozen=True)
class SimulationSize:
    """How much to simulate: `zones` series of `minutes` each, the last zone trimmed to `rows`."""

    zones: int
    minutes: int
    rows: int

    def __post_init__(self) -> None:
        if self.zones < 1 or self.minutes < 1:
            raise BadInputError(
                f"a simulation needs at least one zone and one minute. "
                f"Received: zones={self.zones}, minutes={self.minutes}"
            )
        if not (self.zones - 1) * self.minutes < self.rows <= self.zones * self.minutes:
            raise BadInputError(
                f"rows must trim only the last zone's tail: "
                f"{(self.zones - 1) * self.minutes} < rows <= {self.zones * self.minutes}. "
                f"Received: rows={self.rows}"
            )


#: Presets: (zones, total rows). `tiny` keeps 3 days per zone whatever the zone count; the others
#: keep their exact row count (the seed's sample counts): minutes = ceil(rows / zones), and the
#: last zone's tail is trimmed by zones × minutes − rows (< zones) minutes.
PRESET_ZONES: dict[str, int] = {"tiny": 4, "poc": 16, "1m": 16, "1.5m": 16}
PRESET_ROWS: dict[str, int | None] = {"tiny": None, "poc": 781_163, "1m": 1_000_000, "1.5m": 1_500_000}
TINY_MINUTES = 3 * MINUTES_PER_DAY
MIN_MINUTES = MINUTES_PER_DAY


def preset_size(preset: str, zones: int | None = None) -> SimulationSize:
    """The size of a preset, optionally with another zone count (see PRESET_ROWS)."""
    if preset not in PRESET_ZONES:
        raise BadInputError(f"unknown preset; expected one of {sorted(PRESET_ZONES)}. Received: {preset!r}")
    zones = PRESET_ZONES[preset] if zones is None else int(zones)
    if zones < 1:
        raise BadInputError(f"zones must be >= 1. Received: zones={zones}")
    rows = PRESET_ROWS[preset]
    if rows is None:
        return SimulationSize(zones=zones, minutes=TINY_MINUTES, rows=zones * TINY_MINUTES)
    minutes = math.ceil(rows / zones)
    if minutes < MIN_MINUTES:
        raise BadInputError(
            f"preset {preset!r} with {zones} zones leaves {minutes} minutes per zone; at least "
            f"{MIN_MINUTES} (one day) are needed. Received: zones={zones}"
        )
    return SimulationSize(zones=zones, minutes=minutes, rows=rows)


def zone_names(zones: int) -> list[str]:
    """'Z01', 'Z02', … (wider numbers past 99 zones)."""
    width = max(2, len(str(zones)))
    return [f"Z{i + 1:0{width}d}" for i in range(zones)]


def simulate_preset(
    preset: str, seed: int = 0, zones: int | None = None, config: SimulationConfig | None = None
) -> pd.DataFrame:
    """Simulate a preset. Zone count: `zones` if given, else `config.zones`, else the preset's."""
    config = config or SimulationConfig()
    size = preset_size(preset, zones if zones is not None else config.zones)
    return simulate(size, config, seed)


def simulate(size: SimulationSize, config: SimulationConfig, seed: int = 0) -> pd.DataFrame:
    """Simulate `size.zones` zones for `size.minutes` minutes: the DESIGN §2 frame.

    Columns: timestamp, zone, schema.FEATURES in order, then schema.OPTIONAL_COLUMNS
    (lots_planned, pm_planned, cause: see the module docstring); rows sorted by zone then
    timestamp, no gaps. Counts (plan columns included) are int64; cause is str ("" where the zone
    is not congested); the rest float64; transport_time_s is NaN exactly where completions == 0.
    Same seed → identical frame; the plan and the cause draw no randomness from the stream that
    makes the features, so adding them left the features unchanged.
    """
    rng = np.random.default_rng(seed)
    plan_rng = np.random.default_rng([seed, 101])  # plan noise: never from `rng`, so the features stay
    n_zones, n_min = size.zones, size.minutes
    names = zone_names(n_zones)
    zone = _draw_zones(rng, names, config)
    exo = _exogenous(rng, n_min, zone, config)
    state = _run_queue(rng, n_min, zone, exo, config)

    wait_s = _fifo_wait_s(state["requests"], state["completions"])  # [T, Z]
    served = state["completions"]
    noise = rng.standard_normal((n_min, n_zones)) * config.transport_noise_s
    with np.errstate(invalid="ignore", divide="ignore"):
        transport_time = wait_s + state["cycle_s"] + noise / np.sqrt(served)
    transport_time = np.where(served > 0, np.maximum(transport_time, 0.3 * state["cycle_s"]), np.nan)

    columns: dict[str, np.ndarray] = {
        "requests": state["requests"],
        "completions": served,
        "queue_len": state["queue_len"],
        "vehicles_idle": state["vehicles_idle"],
        "vehicle_util": state["vehicle_util"],
        "vehicles_down": state["vehicles_down"],
        "blocked_segments": state["blocked_segments"],
        "mean_speed": state["mean_speed"],
        "wip_lots": np.rint(exo.wip + state["queue_len"]),
        "stocker_fill": exo.stocker_fill,
        "hot_lots": state["hot_lots"],
        schema.TRANSPORT_TIME: transport_time,
    }
    lots_planned, pm_planned = _plan(plan_rng, n_min, zone, exo, config)
    columns["lots_planned"], columns["pm_planned"] = lots_planned, pm_planned
    cause = _causes(exo, state, wait_s, zone, config)  # [T, Z] str
    timestamps = pd.date_range(pd.Timestamp(config.start).floor("min"), periods=n_min, freq="min")
    frame = pd.DataFrame(
        {
            schema.TIMESTAMP: np.tile(timestamps.values, n_zones),
            schema.ZONE: pd.array(np.repeat(names, n_min), dtype="str"),
        }
    )
    for name in (*schema.FEATURES, *schema.PLAN_COLUMNS):
        values = columns[name].T.reshape(-1)  # zone-major, like the rows
        if name in schema.COUNT_FEATURES or name in schema.PLAN_COLUMNS:
            frame[name] = values.astype(np.int64)
        else:
            frame[name] = values.astype(np.float64)
    frame[schema.CAUSE] = pd.array(cause.T.reshape(-1), dtype="str")
    if size.rows < len(frame):
        frame = frame.iloc[: size.rows].reset_index(drop=True)
    logger.debug("simulated %d rows: %d zones × %d minutes (seed %d)", len(frame), n_zones, n_min, seed)
    return frame


# ---------------------------------------------------------------------------- zones


@dataclass(frozen=True)
class _Zones:
    names: list[str]
    vehicles: np.ndarray  # [Z] int
    nominal_s: np.ndarray  # [Z] free-flow transport time, seconds
    load: np.ndarray  # [Z] demand / free-flow capacity
    wip_base: np.ndarray  # [Z] lots
    fill_base: np.ndarray  # [Z] stocker occupancy at base WIP


def _draw_zones(rng: np.random.Generator, names: list[str], config: SimulationConfig) -> _Zones:
    n = len(names)
    spread = config.zone_spread

    def vary() -> np.ndarray:
        return 1.0 + rng.uniform(-spread, spread, n)

    unknown = sorted(set(config.nominal_by_zone_s) - set(names))
    if unknown:
        raise BadInputError(
            f"simulation.nominal_by_zone_s names zones that are not simulated "
            f"(zones are {names[0]}..{names[-1]}). Received: {unknown}"
        )
    vehicles = np.maximum(2, np.rint(config.vehicles_per_zone * vary())).astype(np.int64)
    nominal = config.nominal_transport_time_s * vary()
    for i, name in enumerate(names):
        if name in config.nominal_by_zone_s:
            nominal[i] = float(config.nominal_by_zone_s[name])
    load = config.base_load * vary()
    wip_base = config.wip_lots_per_zone * vary()
    fill_base = np.clip(0.35 + 0.4 * (wip_base / config.stocker_capacity_lots) + rng.uniform(-0.1, 0.1, n), 0.1, 0.8)
    return _Zones(names, vehicles, nominal, load, wip_base, fill_base)


# ---------------------------------------------------------------------------- exogenous drivers


@dataclass(frozen=True)
class _Exogenous:
    demand: np.ndarray  # [T, Z] open-loop request rate per minute (hot lots excluded)
    hot_arrivals: np.ndarray  # [T, Z] int
    wip: np.ndarray  # [T, Z] lots waiting for tools (before the transport queue)
    stocker_fill: np.ndarray  # [T, Z] in [0, 1]
    handling_extra_s: np.ndarray  # [T, Z] slower hand-offs at a nearly full stocker
    new_blockages: np.ndarray  # [T, Z] int: segments blocking with no precursor
    uniform: np.ndarray  # [T, Z] for stochastic rounding of capacity
    # What the drivers are, for the plan and for attributing congestion to a cause.
    shift: np.ndarray  # [T, Z] demand multiplier of shift changes (lull < 1 < surge)
    wave: np.ndarray  # [T, Z] extra demand (relative) of lot-release waves
    pm_demand: np.ndarray  # [T, Z] requests per minute that PM-raised WIP adds to `demand`
    handling_pm_s: np.ndarray  # [T, Z] the part of handling_extra_s due to PM-raised WIP
    releases: np.ndarray  # [W] actual release times of the waves (minutes; reach zone z z × lag later)
    release_gain: np.ndarray  # [W] each wave's peak extra demand
    pm_events: tuple[np.ndarray, np.ndarray, np.ndarray]  # start minute, zone, duration [P] each
    base_rate: np.ndarray  # [Z] requests per minute at base load (no profile or drivers)


def _exogenous(rng: np.random.Generator, n_min: int, zone: _Zones, config: SimulationConfig) -> _Exogenous:
    n_zones = len(zone.names)
    start = pd.Timestamp(config.start)
    minute0 = start.hour * 60 + start.minute
    abs_min = minute0 + np.arange(n_min)  # [T] minutes since the first midnight
    hour = (abs_min % MINUTES_PER_DAY) / 60.0

    # Daily profile: busier in the day shift, quiet before dawn.
    profile = (
        1.0
        + 0.12 * np.sin(2 * np.pi * (hour - 8.0) / 24.0)
        + 0.05 * np.sin(4 * np.pi * (hour - 3.0) / 24.0)
    )[:, None]  # [T, 1]

    shift = _shift_factor(rng, abs_min, n_zones, config)  # [T, Z]
    wave, releases, release_gain = _lot_release_waves(rng, n_min, n_zones, config)  # [T, Z]
    pm_active, pm_events = _pm_periods(rng, n_min, n_zones, config)  # [T, Z] bool

    # WIP follows a target (raised during PM) with a lag, plus a random walk; demand drifts slowly.
    wip = np.empty((n_min, n_zones))
    drift = np.empty((n_min, n_zones))
    wip_pm = np.empty((n_min, n_zones))  # the part of WIP that PM raised (no noise): for the cause
    pm_excess = zone.wip_base[None, :] * config.pm_wip_gain * pm_active
    target = zone.wip_base[None, :] * (1.0 + config.pm_wip_gain * pm_active)
    a_wip = 1.0 / _WIP_TIME_CONSTANT_MIN
    phi = math.exp(-1.0 / _DEMAND_NOISE_CORR_MIN)
    wip_eps = rng.standard_normal((n_min, n_zones)) * (_WIP_NOISE * math.sqrt(2 * a_wip) * zone.wip_base)[None, :]
    drift_eps = rng.standard_normal((n_min, n_zones)) * (config.demand_noise * math.sqrt(1 - phi * phi))
    w = zone.wip_base * (1 + rng.uniform(-0.1, 0.1, n_zones))
    d = rng.standard_normal(n_zones) * config.demand_noise
    w_pm = np.zeros(n_zones)
    for t in range(n_min):
        w = w + a_wip * (target[t] - w) + wip_eps[t]
        d = phi * d + drift_eps[t]
        w_pm = w_pm + a_wip * (pm_excess[t] - w_pm)
        wip[t] = w
        drift[t] = d
        wip_pm[t] = w_pm
    wip = np.maximum(wip, 0.0)
    wip_pm = np.minimum(wip_pm, wip)

    stocker_fill = np.clip(
        zone.fill_base[None, :] + (wip - zone.wip_base[None, :]) / config.stocker_capacity_lots
        + rng.normal(0.0, 0.005, (n_min, n_zones)),
        0.0, 1.0,
    )
    handling_extra_s = _stocker_penalty_s(stocker_fill)
    handling_pm_s = handling_extra_s - _stocker_penalty_s(stocker_fill - wip_pm / config.stocker_capacity_lots)

    free_capacity = zone.vehicles * 60.0 / zone.nominal_s  # [Z] transports per minute
    rate = (
        (zone.load * free_capacity)[None, :]
        * profile
        * shift
        * (1.0 + wave)
        * (wip / zone.wip_base[None, :]) ** _WIP_DEMAND_ELASTICITY
        * np.exp(drift - 0.5 * config.demand_noise**2)
    )  # [T, Z]
    hot = rng.poisson(config.hot_lots_per_hour / 60.0, (n_min, n_zones))
    new_blockages = rng.poisson(config.blockages_per_day / MINUTES_PER_DAY, (n_min, n_zones))
    with np.errstate(invalid="ignore", divide="ignore"):
        without_pm = np.where(wip > 0, (wip - wip_pm) / wip, 1.0)  # [T, Z] in [0, 1]
    pm_demand = rate * (1.0 - without_pm**_WIP_DEMAND_ELASTICITY)
    return _Exogenous(
        demand=rate,
        hot_arrivals=hot.astype(np.int64),
        wip=wip,
        stocker_fill=stocker_fill,
        handling_extra_s=handling_extra_s,
        new_blockages=new_blockages.astype(np.int64),
        uniform=rng.random((n_min, n_zones)),
        shift=shift,
        wave=wave,
        pm_demand=pm_demand,
        handling_pm_s=np.maximum(handling_pm_s, 0.0),
        releases=releases,
        release_gain=release_gain,
        pm_events=pm_events,
        base_rate=zone.load * free_capacity,
    )


def _stocker_penalty_s(fill: np.ndarray) -> np.ndarray:
    """Extra hand-off seconds at a nearly full stocker (0 below _STOCKER_SLOW_FILL)."""
    return _STOCKER_PENALTY_S * np.clip((fill - _STOCKER_SLOW_FILL) / (1.0 - _STOCKER_SLOW_FILL), 0.0, 1.0)


def _shift_factor(
    rng: np.random.Generator, abs_min: np.ndarray, n_zones: int, config: SimulationConfig
) -> np.ndarray:
    """Demand multiplier [T, Z]: a lull before each shift change, a surge (size varies) after."""
    factor = np.ones((len(abs_min), n_zones))
    tau = config.shift_surge_min
    n_days = int(abs_min[-1] // MINUTES_PER_DAY) + 2
    for h in config.shift_change_hours:
        since = abs_min - 60 * h  # [T]
        event = since // MINUTES_PER_DAY + 1  # index of the latest change at this hour
        x = (since % MINUTES_PER_DAY).astype(np.float64)
        size = rng.lognormal(0.0, 0.45, (n_days + 1, n_zones))  # per change and zone
        surge = config.shift_surge_gain * size[event] * ((x / tau) * np.exp(1.0 - x / tau))[:, None]
        lull = np.where(x >= MINUTES_PER_DAY - _SHIFT_LULL_MIN, _SHIFT_LULL, 0.0)[:, None]
        factor = factor * (1.0 + surge) * (1.0 - lull)
    return factor


def _lot_release_waves(
    rng: np.random.Generator, n_min: int, n_zones: int, config: SimulationConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Extra demand [T, Z] from fab-wide lot releases reaching zone z `z × lag` minutes later.

    Also returns the waves: release times [W] (minutes) and peak extra demand [W].
    """
    interval = config.lot_release_interval_min
    releases = np.arange(interval / 2, n_min + interval, interval)
    releases = releases + rng.uniform(-0.25, 0.25, len(releases)) * interval
    amplitude = config.lot_release_gain * rng.lognormal(0.0, 0.3, len(releases))
    arrival = releases[:, None] + _WAVE_LAG_MIN * np.arange(n_zones)[None, :]  # [W, Z]
    wave = _wave_profile(arrival, np.broadcast_to(amplitude[:, None], arrival.shape), n_min)
    return wave, releases, amplitude


def _wave_kernel() -> tuple[np.ndarray, np.ndarray]:
    """(offsets, weights): a wave's bump around the minute its impulse reaches a zone, peak 1."""
    half = int(4 * _WAVE_WIDTH_MIN)
    offsets = np.arange(-half, half + 1)
    kernel = np.exp(-0.5 * (offsets / _WAVE_WIDTH_MIN) ** 2)
    return offsets, kernel / kernel.max()


def _wave_profile(arrival: np.ndarray, amplitude: np.ndarray, n_min: int) -> np.ndarray:
    """[T, Z]: the sum of wave bumps of `amplitude` [W, Z] peaking at minutes `arrival` [W, Z]."""
    n_zones = arrival.shape[1]
    impulses = np.zeros((n_min, n_zones))
    for z in range(n_zones):  # one vectorised scatter per zone
        t = np.rint(arrival[:, z]).astype(np.int64)
        ok = (t >= 0) & (t < n_min)
        np.add.at(impulses[:, z], t[ok], amplitude[ok, z])
    offsets, kernel = _wave_kernel()
    wave = np.zeros_like(impulses)
    for k, off in zip(kernel, offsets):  # convolution along time, all zones at once
        if off >= 0:
            wave[off:] += k * impulses[: n_min - off]
        else:
            wave[:off] += k * impulses[-off:]
    return wave


def _pm_periods(
    rng: np.random.Generator, n_min: int, n_zones: int, config: SimulationConfig
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Boolean [T, Z]: a tool in the zone is under preventive maintenance; and the PMs (start
    minute, zone, duration in minutes; [P] each)."""
    active = np.zeros((n_min, n_zones), dtype=bool)
    starts_t, starts_z = np.nonzero(rng.random((n_min, n_zones)) < config.pm_per_day / MINUTES_PER_DAY)
    durations = np.rint(rng.uniform(0.5, 1.5, len(starts_t)) * config.pm_duration_h * 60).astype(np.int64)
    for t, z, dur in zip(starts_t, starts_z, durations):  # a few events per zone-day
        active[t : t + dur, z] = True
    return active, (starts_t, starts_z, durations)


# ---------------------------------------------------------------------------- the plan


def _plan(
    rng: np.random.Generator, n_min: int, zone: _Zones, exo: _Exogenous, config: SimulationConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(lots_planned, pm_planned), int [T, Z] each: what the MES scheduled, with plan-vs-actual noise.

    `rng` is the plan's own generator. Lot releases: each actual wave is in the plan unless
    unplanned (`unplanned_release_share`), its arrival moved by N(0, plan_time_jitter_min) minutes
    and its size per zone off by ±`plan_size_noise`; cancelled waves (`plan_cancelled_share`) are
    planned but never happen. A wave's planned lots are spread over its bump (the shape of the
    extra demand it brings), so `lots_planned[m]` is the lots planned to arrive, as transport
    requests, in minute m; rounding keeps each zone's running total (no lot lost to rounding).
    PM: each actual PM is planned unless unplanned (`unplanned_pm_share`), its start and end each
    moved by N(0, plan_time_jitter_min) minutes; cancelled PMs are added; `pm_planned[m]` counts the
    zone's tools planned to be under PM in minute m.
    """
    n_zones = len(zone.names)
    jitter = config.plan_time_jitter_min

    # Lot releases.
    n_waves = len(exo.releases)
    planned = rng.random(n_waves) >= config.unplanned_release_share
    released = exo.releases + rng.normal(0.0, jitter, n_waves)
    gain = exo.release_gain[:, None] * (1.0 + rng.uniform(-1.0, 1.0, (n_waves, n_zones)) * config.plan_size_noise)
    n_cancelled = rng.binomial(n_waves, config.plan_cancelled_share)
    offsets, kernel = _wave_kernel()
    cancelled_at = rng.uniform(offsets[0], n_min + offsets[-1], n_cancelled)
    cancelled_gain = config.lot_release_gain * rng.lognormal(0.0, 0.3, (n_cancelled, 1)) * (
        1.0 + rng.uniform(-1.0, 1.0, (n_cancelled, n_zones)) * config.plan_size_noise
    )
    times = np.r_[released[planned], cancelled_at]  # [W'] planned release minutes
    gains = np.r_[gain[planned], cancelled_gain]  # [W', Z]
    arrival = times[:, None] + _WAVE_LAG_MIN * np.arange(n_zones)[None, :]
    lots = _wave_profile(arrival, gains, n_min) * exo.base_rate[None, :]  # [T, Z] lots per minute
    total = np.rint(np.cumsum(lots, axis=0))
    lots_planned = np.diff(total, axis=0, prepend=0.0).astype(np.int64)

    # Preventive maintenance.
    starts_t, starts_z, durations = exo.pm_events
    n_pm = len(starts_t)
    keep = rng.random(n_pm) >= config.unplanned_pm_share
    start = starts_t + np.rint(rng.normal(0.0, jitter, n_pm))
    end = starts_t + durations + np.rint(rng.normal(0.0, jitter, n_pm))
    n_cancelled = rng.binomial(n_pm, config.plan_cancelled_share)
    c_start = rng.integers(0, n_min, n_cancelled)
    c_zone = rng.integers(0, n_zones, n_cancelled)
    c_end = c_start + np.rint(rng.uniform(0.5, 1.5, n_cancelled) * config.pm_duration_h * 60)
    pm_planned = np.zeros((n_min + 1, n_zones), dtype=np.int64)  # +1: a row for ends past the last minute
    for t0, t1, z in zip(np.r_[start[keep], c_start], np.r_[end[keep], c_end], np.r_[starts_z[keep], c_zone]):
        t0, t1 = int(np.clip(t0, 0, n_min)), int(np.clip(t1, 0, n_min))
        if t1 > t0:
            pm_planned[t0, z] += 1  # difference array: +1 at the start, -1 after the end
            pm_planned[t1, z] -= 1
    return lots_planned, np.cumsum(pm_planned, axis=0)[:n_min]


# ---------------------------------------------------------------------------- the cause


_CAUSE_LABELS = np.array(["", *schema.CAUSES], dtype=object)


def _causes(
    exo: _Exogenous, state: dict[str, np.ndarray], wait_s: np.ndarray, zone: _Zones, config: SimulationConfig
) -> np.ndarray:
    """The cause of each zone-minute's congestion, str [T, Z] ("" where not congested).

    Congested: the noise-free delay, max(queue wait of the minute's completions, wait a new
    request expects = backlog / capacity) + cycle time beyond the zone's nominal, is at least
    `cause_min_delay_s`. Each driver's contribution, in transports per minute, is its excess
    demand (shift-change surge, lot-release wave, PM-raised WIP; scaled by the closed loop's
    throttle) or the capacity it takes away (breakdown: faulted vehicles and the segments their
    stuck vehicles block; blockage: segments blocked with no precursor; pm: a stocker filled by
    PM-raised WIP; spillover: speed lost to congested ring neighbours and vehicles lent to
    them). Contributions are summed over an exponential memory of `cause_memory_min` minutes,
    because queues outlast their cause, and the largest names the cause. A congested minute no
    listed driver explains (demand drift, hot lots alone) is left "".
    """
    demand = exo.demand * state["throttle"]  # [T, Z] requests per minute
    contributions = np.stack(
        [
            demand * (1.0 - 1.0 / np.maximum(exo.shift, 1.0)),  # shift_change
            demand * exo.wave / (1.0 + exo.wave),  # lot_release
            exo.pm_demand * state["throttle"] + state["lost_pm"],  # pm
            state["lost_breakdown"],  # breakdown
            state["lost_blockage"],  # blockage
            state["lost_spill"],  # spillover
        ],
        axis=-1,
    )  # [T, Z, C] in schema.CAUSES order
    decay = math.exp(-1.0 / config.cause_memory_min)
    score = np.empty_like(contributions)
    memory = np.zeros(contributions.shape[1:])
    for t in range(len(score)):
        memory = decay * memory + contributions[t]
        score[t] = memory
    delay_s = np.maximum(wait_s, state["backlog_s"]) + np.maximum(state["cycle_s"] - zone.nominal_s[None, :], 0.0)
    congested = (delay_s >= config.cause_min_delay_s) & (score.max(axis=-1) > 0)
    code = np.where(congested, 1 + score.argmax(axis=-1), 0)
    return _CAUSE_LABELS[code]


# ---------------------------------------------------------------------------- the queue


def _run_queue(
    rng: np.random.Generator, n_min: int, zone: _Zones, exo: _Exogenous, config: SimulationConfig
) -> dict[str, np.ndarray]:
    """Minute-by-minute requests, vehicles, failures, blockages and the FIFO queue, over zones.

    Two feedbacks keep a jam finite, as dispatchers and the fab's own flow do: tools starved of
    lots issue fewer requests (closed loop), and a congested zone borrows idle vehicles from its
    ring neighbours (who then have fewer).
    """
    n_zones = len(zone.names)
    vehicles = zone.vehicles.astype(np.float64)
    approach0 = _APPROACH_SHARE * zone.nominal_s  # [Z] seconds
    travel0 = _TRAVEL_SHARE * zone.nominal_s
    handling0 = _HANDLING_SHARE * zone.nominal_s
    fault_rate = config.breakdowns_per_vehicle_day / MINUTES_PER_DAY
    repair_p = 1.0 - math.exp(-1.0 / config.repair_time_min)
    tow_p = 1.0 - math.exp(-1.0 / config.tow_time_min)
    clear_p = 1.0 - math.exp(-1.0 / config.blockage_clear_min)
    speed_noise = rng.normal(0.0, 0.03, (n_min, n_zones))
    ring = n_zones >= 2
    left = np.roll(np.arange(n_zones), 1)  # with 2 zones, both neighbours are the other zone
    right = np.roll(np.arange(n_zones), -1)

    out = {
        name: np.zeros((n_min, n_zones), dtype=dtype)
        for name, dtype in (
            ("requests", np.int64), ("completions", np.int64), ("queue_len", np.int64),
            ("vehicles_idle", np.int64), ("vehicle_util", np.float64), ("vehicles_down", np.int64),
            ("blocked_segments", np.int64), ("mean_speed", np.float64), ("hot_lots", np.int64),
            ("cycle_s", np.float64),
            # Diagnostics for the cause (no randomness): the closed loop's throttle, the wait a
            # new request expects, and the capacity (transports per minute) each driver takes away.
            ("throttle", np.float64), ("backlog_s", np.float64), ("lost_breakdown", np.float64),
            ("lost_blockage", np.float64), ("lost_spill", np.float64), ("lost_pm", np.float64),
        )
    }
    queue = np.zeros(n_zones, dtype=np.int64)
    hot_queue = np.zeros(n_zones, dtype=np.int64)
    down = np.zeros(n_zones, dtype=np.int64)
    stuck = np.zeros(n_zones, dtype=np.int64)  # segments blocked by a stuck vehicle
    blocked = np.zeros(n_zones, dtype=np.int64)  # segments blocked with no precursor
    util = np.full(n_zones, config.base_load)
    idle = vehicles * (1.0 - config.base_load)
    congestion = np.zeros(n_zones)  # 0..1: queue / (capacity × _CONGESTED_BACKLOG_MIN)
    backlog_min = np.zeros(n_zones)  # queue in minutes of capacity
    segments = config.segments_per_zone

    def capacity_at(speed: np.ndarray, usable: np.ndarray, extra_s: np.ndarray, idle: np.ndarray) -> np.ndarray:
        """Transports per minute at this speed, vehicles, extra hand-off time and idle fleet."""
        cycle_s = approach0 / speed * (1.0 + 0.5 / (1.0 + idle)) + travel0 / speed + handling0 + extra_s
        return usable * 60.0 / cycle_s

    for t in range(n_min):
        # Speed: blocked segments, a congested neighbour on the ring, and the zone's own traffic.
        n_blocked = np.minimum(stuck + blocked, segments)
        spill = config.spillover * np.maximum(congestion[left], congestion[right]) if ring else 0.0
        speed = (1.0 - config.blockage_slowdown) ** n_blocked * (1.0 - spill) * (1.0 - 0.05 * util)
        speed = np.maximum(speed, 0.05)
        # Vehicles: own minus faulted, plus idle ones borrowed from / lent to congested neighbours.
        available = vehicles - down
        lent = 0.0
        if ring:
            spare = np.maximum(idle, 0.0) * config.rebalance
            borrowed = congestion * 0.5 * (spare[left] + spare[right])
            lent = spare * 0.5 * (congestion[left] + congestion[right])
            available = np.maximum(available + borrowed - lent, 0.0)
        # Cycle: fewer idle vehicles → the nearest one is further away; a full stocker is slow.
        approach_s = approach0 / speed * (1.0 + 0.5 / (1.0 + idle))
        cycle_s = approach_s + travel0 / speed + handling0 + exo.handling_extra_s[t]
        hot_waiting = hot_queue + exo.hot_arrivals[t]
        usable = np.maximum(available - 0.5 * hot_waiting, 0.0)  # a hot lot holds a vehicle
        capacity = usable * 60.0 / cycle_s  # transports per minute

        # Diagnostics: the capacity each driver takes away (capacity without it − capacity).
        extra_s, calm = exo.handling_extra_s[t], 1.0 - 0.05 * util
        unblocked = np.maximum((1.0 - spill) * calm, 0.05)
        lost_blocks = np.maximum(capacity_at(unblocked, usable, extra_s, idle) - capacity, 0.0)
        stuck_share = stuck / np.maximum(stuck + blocked, 1)  # stuck vehicles count as breakdowns
        out["lost_breakdown"][t] = down * 60.0 / cycle_s + stuck_share * lost_blocks
        out["lost_blockage"][t] = (1.0 - stuck_share) * lost_blocks
        unspilled = np.maximum((1.0 - config.blockage_slowdown) ** n_blocked * calm, 0.05)
        unlent = usable + lent  # vehicles lent to congested neighbours kept at home
        out["lost_spill"][t] = np.maximum(capacity_at(unspilled, unlent, extra_s, idle) - capacity, 0.0)
        out["lost_pm"][t] = np.maximum(
            capacity_at(speed, usable, extra_s - exo.handling_pm_s[t], idle) - capacity, 0.0
        )
        # Closed loop: tools waiting on late lots issue fewer new requests.
        throttle = 1.0 / (1.0 + backlog_min / _THROTTLE_BACKLOG_MIN)
        out["throttle"][t] = throttle
        requests = rng.poisson(exo.demand[t] * throttle) + exo.hot_arrivals[t]
        backlog = queue + requests
        served = np.minimum(backlog, np.floor(capacity + exo.uniform[t]).astype(np.int64))
        queue = backlog - served
        # A hot lot waits for the nearest vehicle: longer when none is idle.
        pickup_p = np.where(idle >= 1.0, _HOT_PICKUP_PROB, 0.5 * _HOT_PICKUP_PROB)
        hot_served = np.minimum(rng.binomial(hot_waiting, pickup_p), served)
        hot_queue = np.minimum(hot_waiting - hot_served, queue)
        busy = np.minimum(served * cycle_s / 60.0, available)  # Little's law
        util = np.minimum(busy / vehicles, 1.0)
        idle = available - busy
        backlog_min = queue / np.maximum(capacity, 0.1)
        congestion = np.minimum(backlog_min / _CONGESTED_BACKLOG_MIN, 1.0)
        out["backlog_s"][t] = backlog_min * 60.0

        out["requests"][t] = requests
        out["completions"][t] = served
        out["queue_len"][t] = queue
        out["vehicles_idle"][t] = np.floor(np.maximum(idle, 0.0) + 1e-9)
        out["vehicle_util"][t] = util
        out["vehicles_down"][t] = down
        out["blocked_segments"][t] = n_blocked
        out["mean_speed"][t] = config.base_speed_m_s * speed * (1.0 + speed_noise[t])
        out["hot_lots"][t] = hot_queue
        out["cycle_s"][t] = cycle_s

        # Faults (more when busy), repairs, stuck vehicles towed, blockages clearing.
        own_up = np.maximum(zone.vehicles - down, 0)
        faults = rng.binomial(own_up, np.minimum(fault_rate * (0.5 + util), 1.0))
        new_stuck = rng.binomial(faults, config.stuck_probability)
        down = down + faults - rng.binomial(down, repair_p)
        stuck = stuck + new_stuck - rng.binomial(stuck, tow_p)
        blocked = blocked + exo.new_blockages[t] - rng.binomial(blocked, clear_p)

    out["mean_speed"] = np.maximum(out["mean_speed"], 0.0)
    return out


def _fifo_wait_s(requests: np.ndarray, completions: np.ndarray) -> np.ndarray:
    """Mean queue wait (seconds) of each minute's completions, first-in first-out. [T, Z]

    The k-th request of a zone arrives in minute searchsorted(cum_requests, k, 'right') and
    is completed in minute searchsorted(cum_completions, k, 'right'); the wait is the difference.
    """
    n_min, n_zones = requests.shape
    wait = np.zeros((n_min, n_zones))
    minutes = np.arange(n_min)
    for z in range(n_zones):  # one vectorised pass per zone
        served = completions[:, z]
        done_min = np.repeat(minutes, served)  # [N] minute each completed request finished
        arrived_min = np.repeat(minutes, requests[:, z])[: len(done_min)]  # FIFO: same order
        total = np.bincount(done_min, weights=(done_min - arrived_min) * 60.0, minlength=n_min)
        with np.errstate(invalid="ignore", divide="ignore"):
            wait[:, z] = np.where(served > 0, total / np.maximum(served, 1), 0.0)
    return wait


# ---------------------------------------------------------------------------- targets and summary


def delay_labels(
    frame: pd.DataFrame, task: TaskConfig | None = None, split: SplitConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(delay_s, delay_event) per row: training's label (`fabray.data.windows.horizon_labels`, the
    one label function) with training's nominal transport times (`zone_nominal_s` on `split`'s
    train span), so `fabray simulate` prints the event rate training labels.

    The frame must be sorted by zone then timestamp (as `simulate` writes it). NaN where the
    target is undefined (the last `horizon` minutes of a zone's segment)."""
    from fabray.data.windows import horizon_labels, zone_nominal_s

    task = task or TaskConfig()
    nominal = zone_nominal_s(frame, task, split)
    names, codes = np.unique(frame[schema.ZONE].astype(str).to_numpy(), return_inverse=True)
    nominal_per_row = np.asarray([nominal[str(z)] for z in names], dtype=np.float64)[codes]  # [N]
    return horizon_labels(codes, frame[schema.TIMESTAMP].to_numpy(dtype="datetime64[ns]"),
                          frame[schema.TRANSPORT_TIME].to_numpy(dtype=np.float64), nominal_per_row,
                          task.horizon, task.sla_delay_s)


@dataclass(frozen=True)
class SimulationSummary:
    rows: int
    zones: int
    minutes: int  # per zone (the longest)
    event_rate: float  # share of defined windows with delay_event = 1
    empty_minutes: float  # share of rows with no completions (transport_time_s NaN)
    congested: float = float("nan")  # share of rows with a cause (NaN: no cause column)
    cause_shares: dict[str, float] = field(default_factory=dict)  # cause → share of the congested rows

    def line(self) -> str:
        text = (
            f"{self.rows:,} rows: {self.zones} zones × {self.minutes:,} minutes; "
            f"delay-event rate {self.event_rate:.1%}; minutes with no completions "
            f"{self.empty_minutes:.2%}"
        )
        if self.cause_shares:
            shares = ", ".join(f"{c} {v:.0%}" for c, v in self.cause_shares.items())
            text += f"; congested minutes {self.congested:.1%} by cause: {shares}"
        return text


def summarize(
    frame: pd.DataFrame, task: TaskConfig | None = None, split: SplitConfig | None = None
) -> SimulationSummary:
    """Rows, zones, minutes per zone and the delay-event rate of a simulated frame (events as
    training labels them: nominal transport times fitted on `split`'s train span)."""
    _, events = delay_labels(frame, task, split)
    defined = ~np.isnan(events)
    counts = frame.groupby(schema.ZONE, sort=False).size()
    congested, shares = float("nan"), {}
    if schema.CAUSE in frame.columns:
        cause = frame[schema.CAUSE].fillna("").astype(str)
        congested = float((cause != "").mean()) if len(cause) else float("nan")
        named = cause[cause != ""].value_counts(normalize=True)
        shares = {c: float(named[c]) for c in named.index}  # largest first
    return SimulationSummary(
        rows=len(frame),
        zones=int(len(counts)),
        minutes=int(counts.max()) if len(counts) else 0,
        event_rate=float(events[defined].mean()) if defined.any() else float("nan"),
        empty_minutes=float(frame[schema.TRANSPORT_TIME].isna().mean()),
        congested=congested,
        cause_shares=shares,
    )
