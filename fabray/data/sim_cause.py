"""The simulator's `cause` column (`fabray.data.simulate`, DESIGN §2): which driver made each
congested zone-minute congested, from the drivers and the queue's diagnostics (no randomness).

Split out of `fabray.data.simulate` (code unchanged); pure numpy.
"""

from __future__ import annotations

import math

import numpy as np

from fabray import schema
from fabray.config import SimulationConfig
from fabray.data.sim_drivers import Exogenous, Zones


# ---------------------------------------------------------------------------- the cause


_CAUSE_LABELS = np.array(["", *schema.CAUSES], dtype=object)


def causes(
    exo: Exogenous, state: dict[str, np.ndarray], wait_s: np.ndarray, zone: Zones, config: SimulationConfig
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
