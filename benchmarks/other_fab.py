"""Another fab: zone-minute data that fabray's simulator did not make, run through the real pipeline.

    nice -n 5 python benchmarks/other_fab.py --out /tmp/other_fab --days 10 --seed 5 --run
    python benchmarks/other_fab.py --out /tmp/other_fab_small --days 3      # data + config only

Issue 11 ("Done when"): the same evaluation must run on data that does not come from
`fabray/data/simulate.py`; nothing in the pipeline may assume that simulator's columns beyond
the data contract, and shift times and topology come from config. This script is a second,
independent source of contract data. It imports nothing from fabray (the pipeline is run through
the `fabray` CLI in subprocesses), and it is written in another style from another model of a fab:

* **Five bays, BAY-A … BAY-E, on a one-way track shaped like a T**, not a ring:
  A → B → C, and C branches to D and to E (`FLOW`). The config's `site.topology` lists each
  bay's neighbours on that track (upstream first, then downstream).
* **Per bay, a discrete-time queue** (one step = one minute): transport requests arrive as a
  Poisson count; the bay's available vehicles move at most `avail · 60 / service_s` lots a
  minute (a Poisson draw around that); what is not served waits in the queue.
* **Demand follows a two-shift day**: shift changes at 07:00 and 19:00, a hand-over lull in the
  15 minutes before each, then a surge of held lots (a gamma-shaped pulse peaking 8-16 minutes
  after the change, its size drawn per change and bay), on top of a mild daily swell and lighter
  weekends.
* **Vehicle outages**: a few per bay over the run, a track section losing 35-65% of the bay's
  vehicles for 15-70 minutes, plus single vehicles failing and being repaired at random.
* **Segment faults**: a few per bay, 2-5 blocked segments for 10-40 minutes.
* **One-directional blocking**: when a bay's queue passes its spill level, segments of the bays
  that feed it (upstream on the track, never downstream) are blocked, which slows their
  vehicles; so congestion in C spreads back to B and then A, and congestion in A never reaches B.
* **Derived columns**, all 12 features in their units and bounds: counts are non-negative
  integers, `vehicle_util` and `stocker_fill` lie in [0, 1], `mean_speed` in m/s,
  `transport_time_s` is the mean transport time (service + waiting) of the minute's completions
  and NaN exactly when there were none.
* **No plan columns and no `cause` column** (a site whose MES exports neither), a start that is
  not a midnight (2024-09-02 05:30, a Monday), columns in another order than `schema.COLUMNS`,
  rows ordered by time with the bays interleaved, and two short data gaps (a collector outage):
  all of which the contract allows.

The delay rate printed is computed here, independently of fabray: per bay, nominal = the median
`transport_time_s` over the first 70% of its rows (fabray's default nominal is the median over
its train split), target = mean of the next 10 minutes' transport times (skipping empty minutes)
minus the nominal, event = target > 60 s.

Writes `DIR/other.parquet` and `DIR/other.yaml` (site: shift changes and topology; small model
widths and 4 epochs as `fabray demo` uses). With `--run`, then runs `fabray validate`, `train`,
`ensemble --trials 12` and `evaluate --json DIR/metrics.json --report DIR/report`, and prints each
step's wall time and the leaderboard from the metrics JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

# ---------------------------------------------------------------------------- the site

BAYS: tuple[str, ...] = ("BAY-A", "BAY-B", "BAY-C", "BAY-D", "BAY-E")
#: One-way track: lots leaving a bay go on to these bays (a T: A → B → C → {D, E}).
FLOW: dict[str, tuple[str, ...]] = {
    "BAY-A": ("BAY-B",),
    "BAY-B": ("BAY-C",),
    "BAY-C": ("BAY-D", "BAY-E"),
    "BAY-D": (),
    "BAY-E": (),
}
SHIFT_CHANGES: tuple[str, ...] = ("07:00", "19:00")
START = datetime(2024, 9, 2, 5, 30)  # a Monday, not a midnight
SLA_S = 60.0
HORIZON = 10
TRAIN_SHARE = 0.7

#: Small widths and few epochs (the shape of `fabray demo`'s train block).
TRAIN_BLOCK: dict = {
    "epochs": 4,
    "batch_size": 256,
    "early_stopping_patience": 2,
    "resources": {"cpus": 0.5},
    "shuffle_buffer": 4000,
    "model_overrides": {
        "lstm": {"lstm_units": [32, 16], "head_units": [16]},
        "gru": {"gru_units": [32, 16], "head_units": [16]},
        "cnn_lstm": {"conv_filters": 16, "lstm_units": [32], "head_units": [16]},
        "spike": {"conv_filters": 16, "num_heads": 2, "key_dim": 8, "bilstm_units": 16,
                  "head_units": [16]},
        "rule": {"lstm_units": 8, "head_units": [8]},
        "patchtst": {"d_model": 16, "num_heads": 2, "d_ff": 32, "num_layers": 1},
    },
}


def neighbours() -> dict[str, list[str]]:
    """`site.topology`: each bay's neighbours on the track, upstream bays first, then downstream."""
    upstream = {b: [a for a in BAYS if b in FLOW[a]] for b in BAYS}
    return {b: upstream[b] + list(FLOW[b]) for b in BAYS}


# ---------------------------------------------------------------------------- random schedules


def _episodes(rng: np.random.Generator, minutes: int, per_day: float,
              length: tuple[int, int]) -> list[tuple[int, int]]:
    """Start and end minute of randomly placed episodes (Poisson count, uniform starts)."""
    count = rng.poisson(per_day * minutes / 1440)
    starts = np.sort(rng.integers(0, minutes, size=count))
    return [(int(s), int(min(minutes, s + rng.integers(length[0], length[1] + 1)))) for s in starts]


def _demand_multiplier(rng: np.random.Generator, clock: pd.DatetimeIndex, bays: int) -> np.ndarray:
    """[T, B] demand relative to a bay's base rate: daily swell, weekends, shift lull and surge."""
    minute_of_day = (clock.hour * 60 + clock.minute).to_numpy()  # [T]
    swell = 1.0 + 0.08 * np.sin(2 * np.pi * (minute_of_day - 600) / 1440)  # busier around 16:00
    weekend = np.where(clock.day_of_week.to_numpy() >= 5, 0.88, 1.0)
    mult = np.tile((swell * weekend)[:, None], (1, bays))  # [T, B]
    changes = [int(h) * 60 + int(m) for h, m in (s.split(":") for s in SHIFT_CHANGES)]
    t_abs = np.arange(len(clock))
    for change in changes:
        # every occurrence of this shift change within the run (and the one just before it)
        first = (change - minute_of_day[0]) % 1440 - 1440
        for t0 in range(first, len(clock) + 1440, 1440):
            lull = (t_abs >= t0 - 15) & (t_abs < t0)
            mult[lull] *= 0.85
            for b in range(bays):
                gain = rng.uniform(0.6, 1.2)  # this change's surge in this bay
                peak = rng.uniform(8, 16)  # minutes after the change
                x = (t_abs - t0) / peak
                pulse = np.where(x > 0, x ** 2 * np.exp(2 * (1 - np.clip(x, 0, None))), 0.0)
                mult[:, b] += gain * pulse
    return mult


# ---------------------------------------------------------------------------- the generator


def generate(days: float = 10, seed: int = 5, gaps: bool = True) -> pd.DataFrame:
    """The other fab's zone-minute table (contract columns only, in their own order)."""
    rng = np.random.default_rng(seed)
    minutes = int(round(days * 1440))
    nb = len(BAYS)
    clock = pd.date_range(START, periods=minutes, freq="min")

    # per-bay constants
    fleet = rng.integers(18, 27, size=nb)  # vehicles
    service_s = rng.uniform(115, 175, size=nb)  # free-flow time of one transport
    load = rng.uniform(0.57, 0.67, size=nb)  # mean demand / free-flow capacity
    base_rate = load * fleet * 60 / service_s  # lots per minute
    spill_level = rng.uniform(1.2, 1.8, size=nb) * base_rate  # queue that blocks the feeders
    free_speed = rng.uniform(2.6, 3.4, size=nb)  # m/s
    stocker_places = rng.integers(120, 240, size=nb)
    feeders = [[BAYS.index(a) for a in BAYS if b in FLOW[a]] for b in BAYS]

    demand = base_rate[None, :] * _demand_multiplier(rng, clock, nb)  # [T, B]

    # outages (share of the fleet lost) and segment faults (segments blocked), per bay and minute
    outage = np.zeros((minutes, nb))
    fault = np.zeros((minutes, nb), dtype=np.int64)
    for b in range(nb):
        for s, e in _episodes(rng, minutes, 0.5, (15, 70)):
            outage[s:e, b] = np.maximum(outage[s:e, b], rng.uniform(0.4, 0.7))
        for s, e in _episodes(rng, minutes, 0.3, (10, 40)):
            fault[s:e, b] += rng.integers(2, 6)

    # state
    queue = np.zeros(nb)
    broken = np.zeros(nb, dtype=np.int64)  # single vehicles under repair
    wip = stocker_places * rng.uniform(0.45, 0.6, size=nb)
    hot = np.zeros(nb, dtype=np.int64)
    spill = np.zeros(nb, dtype=np.int64)  # segments blocked by a congested downstream bay

    cols = {name: np.zeros((minutes, nb)) for name in (
        "requests", "completions", "queue_len", "vehicles_idle", "vehicle_util", "vehicles_down",
        "blocked_segments", "mean_speed", "wip_lots", "stocker_fill", "hot_lots", "transport_time_s")}

    for t in range(minutes):
        # vehicles: random single failures (about one every 4 h per bay), ~25 min repairs
        broken += rng.binomial(fleet - broken, 1 / (240 * fleet))
        broken -= rng.binomial(broken, 1 / 25)
        down = np.minimum(fleet - 2, broken + np.round(outage[t] * fleet).astype(np.int64))
        avail = fleet - down

        blocked = fault[t] + spill
        slow = 1.0 + 0.07 * blocked  # each blocked segment means detours and waits
        eff_service = service_s * slow
        capacity = avail * 60.0 / eff_service  # lots a minute the bay can move

        hot = np.maximum(0, hot + rng.poisson(0.04, nb) - rng.binomial(hot, 0.08))
        arrivals = rng.poisson(demand[t])
        waiting_before = queue.copy()
        moved = np.minimum(waiting_before + arrivals, rng.poisson(capacity))
        queue = waiting_before + arrivals - moved

        # transport time of the lots delivered this minute: travel + the wait they saw
        wait_s = 60.0 * waiting_before / np.maximum(capacity, 0.5)
        noise = rng.normal(0.0, 40.0, nb) / np.sqrt(np.maximum(moved, 1))
        transport = np.where(moved > 0, np.maximum(20.0, eff_service + wait_s + noise), np.nan)

        busy = np.where(queue > 0, avail,
                        np.minimum(avail, np.round(moved * eff_service / 60.0 + rng.normal(0, 0.7, nb))))
        busy = np.clip(busy, 0, avail)
        util = busy / np.maximum(avail, 1)
        speed = free_speed * (1 - 0.3 * util ** 4) / slow + rng.normal(0, 0.04, nb)

        wip = np.clip(wip + 0.02 * (stocker_places * 0.5 - wip) + rng.normal(0, 1.2, nb)
                      + 0.3 * (arrivals - base_rate), 0, None)
        fill = np.clip((wip + queue) / stocker_places, 0.0, 1.0)

        cols["requests"][t] = arrivals
        cols["completions"][t] = moved
        cols["queue_len"][t] = queue
        cols["vehicles_idle"][t] = avail - busy
        cols["vehicle_util"][t] = util
        cols["vehicles_down"][t] = down
        cols["blocked_segments"][t] = blocked
        cols["mean_speed"][t] = np.clip(speed, 0.05, None)
        cols["wip_lots"][t] = np.round(wip)
        cols["stocker_fill"][t] = fill
        cols["hot_lots"][t] = hot
        cols["transport_time_s"][t] = transport

        # one-directional blocking for the next minute: a bay over its spill level blocks
        # segments of the bays feeding it (upstream only)
        spill = np.zeros(nb, dtype=np.int64)
        over = np.floor(np.maximum(queue - spill_level, 0) / np.maximum(spill_level / 3, 1)).astype(np.int64)
        for b in range(nb):
            for a in feeders[b]:
                spill[a] = max(spill[a], min(int(over[b]), 6))

    frame = pd.DataFrame({"zone": np.repeat(np.array(BAYS)[None, :], minutes, axis=0).ravel(),
                          "timestamp": np.repeat(clock.to_numpy(), nb)})
    integer = {"requests", "completions", "queue_len", "vehicles_idle", "vehicles_down",
               "blocked_segments", "wip_lots", "hot_lots"}
    for name in sorted(cols):  # alphabetical: not the contract's order
        values = cols[name].ravel()  # time-major: minute t's bays together
        frame[name] = values.astype(np.int64) if name in integer else values
    if gaps:  # a collector outage: two bays miss a few minutes each
        drop = np.zeros(len(frame), dtype=bool)
        for b, start, length in ((1, minutes // 3, 4), (3, (2 * minutes) // 3, 7)):
            rows = (np.arange(start, start + length) * nb) + b
            drop[rows[rows < len(frame)]] = True
        frame = frame.loc[~drop].reset_index(drop=True)
    return frame


# ---------------------------------------------------------------------------- the delay rate


def delay_rate(frame: pd.DataFrame) -> dict:
    """Share of zone-minutes whose next-10-minute mean delay exceeds the SLA, and episodes.

    Independent of fabray: per bay, the nominal is the median transport time over its first 70%
    of rows; each bay's rows are cut into segments at gaps; minutes without completions are
    skipped in the mean. An episode is a run of consecutive event minutes.
    """
    events = defined = episodes = 0
    per_bay = {}
    for bay, rows in frame.groupby("zone", sort=True):
        rows = rows.sort_values("timestamp")
        tt = rows["transport_time_s"].to_numpy(np.float64)
        nominal = float(np.nanmedian(tt[: int(len(tt) * TRAIN_SHARE)]))
        stamps = rows["timestamp"].to_numpy("datetime64[m]").astype(np.int64)
        cut = np.flatnonzero(np.diff(stamps) != 1) + 1
        bay_events = bay_defined = 0
        for seg in np.split(tt, cut):
            n = len(seg) - HORIZON
            if n <= 0:
                continue
            present = ~np.isnan(seg)
            sums = np.concatenate([[0.0], np.cumsum(np.where(present, seg, 0.0))])
            cnt = np.concatenate([[0], np.cumsum(present)])
            s = sums[np.arange(n) + HORIZON + 1] - sums[np.arange(n) + 1]
            c = cnt[np.arange(n) + HORIZON + 1] - cnt[np.arange(n) + 1]
            ok = c > 0
            event = (s[ok] / c[ok] - nominal) > SLA_S
            bay_events += int(event.sum())
            bay_defined += int(ok.sum())
            episodes += int(np.sum(event[1:] & ~event[:-1]) + (event[0] if len(event) else 0))
        per_bay[str(bay)] = {"nominal_s": round(nominal, 1),
                             "event_rate": round(bay_events / max(bay_defined, 1), 4)}
        events += bay_events
        defined += bay_defined
    return {"event_rate": events / max(defined, 1), "episodes": episodes, "per_bay": per_bay}


# ---------------------------------------------------------------------------- files and the run


def site_config() -> dict:
    """The YAML config: the site (shift changes, topology) and a small, short training."""
    return {
        "site": {"shift_changes": list(SHIFT_CHANGES), "topology": neighbours()},
        "train": TRAIN_BLOCK,
    }


def write(out: Path, days: float, seed: int) -> tuple[Path, Path, dict]:
    out.mkdir(parents=True, exist_ok=True)
    frame = generate(days=days, seed=seed)
    data = out / "other.parquet"
    frame.to_parquet(data, index=False)
    config = out / "other.yaml"
    config.write_text(yaml.safe_dump(site_config(), sort_keys=False))
    return data, config, delay_rate(frame)


def _fabray() -> str:
    local = Path(sys.executable).with_name("fabray")
    return str(local) if local.exists() else (shutil.which("fabray") or "fabray")


def _step(name: str, argv: list[str], timings: dict) -> None:
    print(f"\n$ {' '.join(argv)}", flush=True)
    began = time.perf_counter()
    done = subprocess.run(argv)
    timings[name] = round(time.perf_counter() - began, 1)
    print(f"[{name}: exit {done.returncode}, {timings[name]:.0f} s]", flush=True)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed (exit {done.returncode}); timings so far: {timings}")


def leaderboard(metrics: dict) -> list[dict]:
    """Rows of the metrics JSON's leaderboard (whatever it calls them), flattened for printing."""
    flat = []
    for row in metrics.get("leaderboard") or []:
        lead = {**(row.get("lead") or {}), **row}  # flat entries, or a nested `lead` object
        flat.append({key: lead.get(key) for key in (
            "name", "kind", "lead_score", "warned_at_start", "episodes", "warned_before_onset",
            "median_lead_min", "false_alarm_runs_per_zone_day", "f1", "pr_auc")})
    return flat


def run_pipeline(out: Path, data: Path, config: Path, trials: int, num_cpus: float | None) -> dict:
    fab = _fabray()
    run = out / "run"
    if run.exists():
        raise SystemExit(f"{run} exists: fabray train never overwrites a run; pick a new --out")
    cpus = ["--num-cpus", str(num_cpus)] if num_cpus else []
    timings: dict = {}
    _step("validate", [fab, "validate", str(data)], timings)
    _step("train", [fab, "train", "--data", str(data), "--out", str(run), "--config", str(config), *cpus],
          timings)
    _step("ensemble", [fab, "ensemble", "--run", str(run), "--trials", str(trials), *cpus], timings)
    _step("evaluate", [fab, "evaluate", "--run", str(run), "--data", str(data), "--json",
                       str(out / "metrics.json"), "--report", str(out / "report")], timings)
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--days", type=float, default=10, help="days of data")
    parser.add_argument("--seed", type=int, default=5, help="random seed")
    parser.add_argument("--run", action="store_true",
                        help="then run fabray validate, train, ensemble and evaluate on it")
    parser.add_argument("--trials", type=int, default=12, help="ensemble Tune trials")
    parser.add_argument("--num-cpus", type=float, default=None,
                        help="CPUs of fabray's embedded Ray (unset: all)")
    args = parser.parse_args(argv)

    began = time.perf_counter()
    data, config, rate = write(args.out, args.days, args.seed)
    print(f"wrote {data} and {config} ({time.perf_counter() - began:.1f} s)")
    print(f"delay events (next-{HORIZON}-min mean delay > {SLA_S:.0f} s over the bay's median): "
          f"{rate['event_rate']:.1%} of zone-minutes, {rate['episodes']} episodes")
    for bay, info in rate["per_bay"].items():
        print(f"  {bay}: nominal {info['nominal_s']:.0f} s, events {info['event_rate']:.1%}")
    if not args.run:
        return 0
    timings = run_pipeline(args.out, data, config, args.trials, args.num_cpus)
    timings["total"] = round(time.perf_counter() - began, 1)
    (args.out / "timings.json").write_text(json.dumps(
        {"timings_s": timings, "delay_rate": rate, "days": args.days, "seed": args.seed}, indent=2))
    metrics = json.loads((args.out / "metrics.json").read_text())
    print(f"\nwall time: {timings}")
    for row in leaderboard(metrics):
        print("  " + "  ".join(f"{k}={v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
