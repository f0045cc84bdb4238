"""The simulator's plan columns (`lots_planned`, `pm_planned`; `fabray.data.simulate`, DESIGN §2):
what the MES scheduled, with plan-vs-actual noise from the plan's own generator.

Split out of `fabray.data.simulate` (code unchanged); pure numpy.
"""

from __future__ import annotations

import numpy as np

from fabray.config import SimulationConfig
from fabray.data.sim_drivers import WAVE_LAG_MIN, Exogenous, Zones, wave_kernel, wave_profile


# ---------------------------------------------------------------------------- the plan


def plan(
    rng: np.random.Generator, n_min: int, zone: Zones, exo: Exogenous, config: SimulationConfig
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
    offsets, kernel = wave_kernel()
    cancelled_at = rng.uniform(offsets[0], n_min + offsets[-1], n_cancelled)
    cancelled_gain = config.lot_release_gain * rng.lognormal(0.0, 0.3, (n_cancelled, 1)) * (
        1.0 + rng.uniform(-1.0, 1.0, (n_cancelled, n_zones)) * config.plan_size_noise
    )
    times = np.r_[released[planned], cancelled_at]  # [W'] planned release minutes
    gains = np.r_[gain[planned], cancelled_gain]  # [W', Z]
    arrival = times[:, None] + WAVE_LAG_MIN * np.arange(n_zones)[None, :]
    lots = wave_profile(arrival, gains, n_min) * exo.base_rate[None, :]  # [T, Z] lots per minute
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
