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
  where the zone is not congested (see `fabray.data.sim_cause.causes`). "breakdown" covers
  faulted vehicles and the segments blocked by stuck vehicles; "blockage" only the segments that
  block with no precursor.
  A diagnostic for evaluation, never a model input.

The plan's noise comes from its own generator (`default_rng([seed, 101])`) and the cause draws no
randomness, so the 12 features are the same as before these columns existed.

The loop runs over minutes with numpy arrays over zones; everything that does not depend on the
queue state (demand, hot lots, PM, WIP, spontaneous blockages) is drawn up front, vectorised.
FIFO waiting times are computed after the loop from cumulative arrivals and completions. Pure
numpy/pandas: no ray, no files.

The parts live in their own modules: zones and exogenous drivers (`fabray.data.sim_drivers`),
the fleet and queue loop (`fabray.data.sim_fleet`), the plan (`fabray.data.sim_plan`) and the
cause (`fabray.data.sim_cause`); this module assembles the frame and keeps the public names
(presets, `simulate`, `delay_labels`, `summarize`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fabray import schema
from fabray.config import SimulationConfig, SplitConfig, TaskConfig
from fabray.data.sim_cause import causes
from fabray.data.sim_drivers import MINUTES_PER_DAY, draw_zones, exogenous
from fabray.data.sim_fleet import fifo_wait_s, run_queue
from fabray.data.sim_plan import plan
from fabray.errors import BadInputError

logger = logging.getLogger(__name__)


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
    zone = draw_zones(rng, names, config)
    exo = exogenous(rng, n_min, zone, config)
    state = run_queue(rng, n_min, zone, exo, config)

    wait_s = fifo_wait_s(state["requests"], state["completions"])  # [T, Z]
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
    lots_planned, pm_planned = plan(plan_rng, n_min, zone, exo, config)
    columns["lots_planned"], columns["pm_planned"] = lots_planned, pm_planned
    cause = causes(exo, state, wait_s, zone, config)  # [T, Z] str
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
