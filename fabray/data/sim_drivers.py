"""The simulator's zones and exogenous drivers (`fabray.data.simulate`, DESIGN §2): everything that
does not depend on the queue state, drawn up front and vectorised over minutes and zones.

Each zone's fleet, nominal time, load, WIP and stocker (`draw_zones`); its demand (daily
profile, shift changes, lot-release waves travelling around the ring, PM-raised WIP, a slow
drift), hot lots, stocker fill and the blockages that have no precursor (`exogenous`). Split
out of `fabray.data.simulate` (code unchanged); pure numpy/pandas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fabray.config import SimulationConfig
from fabray.errors import BadInputError

MINUTES_PER_DAY = 1440

_STOCKER_SLOW_FILL = 0.85  # above this stocker occupancy, hand-offs slow down
_STOCKER_PENALTY_S = 60.0  # extra hand-off seconds at a full stocker
_WIP_TIME_CONSTANT_MIN = 90.0  # how fast WIP follows its target
_DEMAND_NOISE_CORR_MIN = 60.0  # correlation time of the slow demand drift
_WIP_NOISE = 0.08  # relative standard deviation of WIP's random walk around its target
_WIP_DEMAND_ELASTICITY = 0.3  # demand ∝ (WIP / base WIP) ** this
WAVE_LAG_MIN = 7.0  # minutes for a lot-release wave to reach the next zone on the ring
_WAVE_WIDTH_MIN = 12.0  # standard deviation of a lot-release wave's bump, minutes
_SHIFT_LULL = 0.2  # demand dip in the 20 minutes before a shift change
_SHIFT_LULL_MIN = 20


# ---------------------------------------------------------------------------- zones


@dataclass(frozen=True)
class Zones:
    names: list[str]
    vehicles: np.ndarray  # [Z] int
    nominal_s: np.ndarray  # [Z] free-flow transport time, seconds
    load: np.ndarray  # [Z] demand / free-flow capacity
    wip_base: np.ndarray  # [Z] lots
    fill_base: np.ndarray  # [Z] stocker occupancy at base WIP


def draw_zones(rng: np.random.Generator, names: list[str], config: SimulationConfig) -> Zones:
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
    return Zones(names, vehicles, nominal, load, wip_base, fill_base)


# ---------------------------------------------------------------------------- exogenous drivers


@dataclass(frozen=True)
class Exogenous:
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


def exogenous(rng: np.random.Generator, n_min: int, zone: Zones, config: SimulationConfig) -> Exogenous:
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
    return Exogenous(
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
    arrival = releases[:, None] + WAVE_LAG_MIN * np.arange(n_zones)[None, :]  # [W, Z]
    wave = wave_profile(arrival, np.broadcast_to(amplitude[:, None], arrival.shape), n_min)
    return wave, releases, amplitude


def wave_kernel() -> tuple[np.ndarray, np.ndarray]:
    """(offsets, weights): a wave's bump around the minute its impulse reaches a zone, peak 1."""
    half = int(4 * _WAVE_WIDTH_MIN)
    offsets = np.arange(-half, half + 1)
    kernel = np.exp(-0.5 * (offsets / _WAVE_WIDTH_MIN) ** 2)
    return offsets, kernel / kernel.max()


def wave_profile(arrival: np.ndarray, amplitude: np.ndarray, n_min: int) -> np.ndarray:
    """[T, Z]: the sum of wave bumps of `amplitude` [W, Z] peaking at minutes `arrival` [W, Z]."""
    n_zones = arrival.shape[1]
    impulses = np.zeros((n_min, n_zones))
    for z in range(n_zones):  # one vectorised scatter per zone
        t = np.rint(arrival[:, z]).astype(np.int64)
        ok = (t >= 0) & (t < n_min)
        np.add.at(impulses[:, z], t[ok], amplitude[ok, z])
    offsets, kernel = wave_kernel()
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
