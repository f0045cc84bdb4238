"""The simulator's fleet and queue (`fabray.data.simulate`, DESIGN §2): the minute-by-minute loop of
requests, vehicles, faults, blockages and the FIFO queue over zones (`run_queue`), and the FIFO
waits computed after it from cumulative arrivals and completions (`fifo_wait_s`).

Split out of `fabray.data.simulate` (code unchanged); pure numpy.
"""

from __future__ import annotations

import math

import numpy as np

from fabray.config import SimulationConfig
from fabray.data.sim_drivers import MINUTES_PER_DAY, Exogenous, Zones

# Share of the nominal (free-flow) transport time spent on each leg of a vehicle's cycle.
_APPROACH_SHARE, _TRAVEL_SHARE, _HANDLING_SHARE = 0.15, 0.6, 0.25
_CONGESTED_BACKLOG_MIN = 10.0  # a queue worth this many minutes of capacity = fully congested
_THROTTLE_BACKLOG_MIN = 20.0  # a queue worth this many minutes of capacity halves new requests
_HOT_PICKUP_PROB = 0.6  # chance per minute a waiting hot lot is picked up (with a vehicle idle)


# ---------------------------------------------------------------------------- the queue


def run_queue(
    rng: np.random.Generator, n_min: int, zone: Zones, exo: Exogenous, config: SimulationConfig
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


def fifo_wait_s(requests: np.ndarray, completions: np.ndarray) -> np.ndarray:
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
