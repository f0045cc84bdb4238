"""Before/after of the lead-time work on one fresh simulated fab, through the real CLI chain.

"before" is the configuration fabray had before issue 11: the 12 observed features only, the
plain 10-minute event as training target, thresholds and Tune's objective by minute F1
(`site.* false`, `task.early_warning_min: 0`, `ensemble.tune_metric: f1`); "after" is the
default configuration (context inputs, early-warning target, lead-score thresholds). Both train
the six models at small widths on the same file, fit the ensemble with Ray Tune and run
`fabray evaluate` on its held-out test split; the table compares their `lead` objects.
"plain_alarms" is "after" with bare thresholds for the ensemble and the models
(`ensemble.alarm_hysteresis: false`) instead of the fitted alarm policies of `fabray.alarm`; it
copies the models "after" trained, so only the ensemble fit differs (the baselines' policies in
`fabray evaluate` follow the run's training config, so they are the same in both). "budget_2"
is "after" with a site false-alarm budget of 2 runs per zone-day
(`ensemble.max_false_alarms_per_zone_day: 2`): every policy, the baselines' included, is fitted
within it on validation; it copies the "after" models as well.

    python benchmarks/lead_before_after.py --seed 9101 --zones 6 --days 11 --out /tmp/ba
        [--json benchmarks/results/lead_before_after.json] [--variants after,plain_alarms]

About 25 minutes for both on 2 CPU cores. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from fabray.demo import DEMO_CONFIG  # noqa: E402 - the demo's small widths, 6 epochs here

SMALL_TRAIN = {**DEMO_CONFIG["train"], "epochs": 6}
CONFIGS = {
    "before": {"train": SMALL_TRAIN, "task": {"early_warning_min": 0},
               "site": {"calendar": False, "plan": False, "neighbours": False},
               "ensemble": {"tune_metric": "f1"}},
    "after": {"train": SMALL_TRAIN},
    # the default configuration with bare thresholds instead of fitted alarm policies (hysteresis,
    # hold): the ablation of `fabray.alarm`; it reuses the "after" training (same train config)
    "plain_alarms": {"train": SMALL_TRAIN, "ensemble": {"alarm_hysteresis": False}},
    # the default configuration with a site false-alarm budget of 2 runs per zone-day (issue 11's
    # goal): every policy fitted within it on validation; reuses the "after" training too
    "budget_2": {"train": SMALL_TRAIN, "ensemble": {"max_false_alarms_per_zone_day": 2.0}},
}
REUSE_TRAINING = {"plain_alarms": "after", "budget_2": "after"}  # variant → the variant whose trained models it copies
KEYS = ("warned_at_start", "warned_before_onset", "warned_5min_before_onset", "median_lead_min",
        "false_alarm_runs_per_zone_day")


def _fabray(*args: str) -> None:
    cmd = [str(Path(sys.executable).with_name("fabray")), *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def run(seed: int, zones: int, days: int, out: Path, trials: int, variants: list[str] | None = None) -> dict:
    from fabray.config import SimulationConfig
    from fabray.data.io import write_table
    from fabray.data.simulate import SimulationSize, simulate

    out.mkdir(parents=True, exist_ok=True)
    data = out / f"fab{seed}.parquet"
    write_table(simulate(SimulationSize(zones, days * 1440, zones * days * 1440), SimulationConfig(), seed), data)
    result = {"seed": seed, "zones": zones, "days": days, "cpus": os.cpu_count(),
              "load_avg_start": os.getloadavg(), "variants": {}}
    for name in variants or list(CONFIGS):
        config = CONFIGS[name]
        cfg = out / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump(config, sort_keys=False))
        started = time.perf_counter()
        source = REUSE_TRAINING.get(name)
        if source is not None and (out / source).is_dir():
            shutil.copytree(out / source, out / name)  # its ensemble.json is refitted below
            print(f"+ {name}: the models trained for {source}, copied", flush=True)
        else:
            _fabray("train", "--data", str(data), "--out", str(out / name), "--config", str(cfg))
        _fabray("ensemble", "--run", str(out / name), "--trials", str(trials), "--config", str(cfg))
        _fabray("evaluate", "--run", str(out / name), "--data", str(data),
                "--json", str(out / f"{name}.json"), "--report", str(out / f"{name}-report"))
        metrics = json.loads((out / f"{name}.json").read_text())
        result["variants"][name] = {"wall_s": round(time.perf_counter() - started, 1),
                                    "leaderboard": metrics["leaderboard"]}
    result["load_avg_end"] = os.getloadavg()
    return result


def table(result: dict) -> str:
    w = max([8, *(len(v) for v in result["variants"])])  # the variant column's width
    lines = [f"{'variant':{w}s} {'name':16s} {'score':>6s} {'start':>7s} {'<onset':>7s} {'>=5min':>7s} "
             f"{'med':>5s} {'FA/zd':>6s} {'F1':>6s} {'PR-AUC':>6s}"]
    for variant, v in result["variants"].items():
        for row in v["leaderboard"]:
            def f(key, fmt="{:.1f}"):
                return "—" if row.get(key) is None else fmt.format(row[key])
            lines.append(
                f"{variant:{w}s} {row['name']:16s} {f('lead_score'):>6s} "
                f"{row['warned_at_start']:>3d}/{row['episodes']:<3d} {row['warned_before_onset']:>7d} "
                f"{row['warned_5min_before_onset']:>7d} {f('median_lead_min'):>5s} "
                f"{f('false_alarm_runs_per_zone_day', '{:.2f}'):>6s} {f('f1', '{:.3f}'):>6s} {f('pr_auc', '{:.3f}'):>6s}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=9101, help="simulator seed (a fresh one)")
    parser.add_argument("--zones", type=int, default=6)
    parser.add_argument("--days", type=int, default=11)
    parser.add_argument("--trials", type=int, default=16, help="Ray Tune trials of each ensemble")
    parser.add_argument("--out", type=Path, required=True, help="working folder (data, runs, reports)")
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    parser.add_argument("--variants", default=",".join(CONFIGS),
                        help=f"comma-separated, in order (default all: {','.join(CONFIGS)})")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.variants.split(",")) - set(CONFIGS))
    if unknown:
        parser.error(f"--variants: unknown {unknown}; known: {list(CONFIGS)}")
    result = run(args.seed, args.zones, args.days, args.out, args.trials, args.variants.split(","))
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
