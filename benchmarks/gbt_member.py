"""Does the LightGBM member pay (issue 12 item 2)? One fresh simulated fab, the real CLI chain.

`fabray train` trains the six neural models at the demo's small widths AND the `gbt` member, once.
The run is copied; in the copy the gbt entry is marked "excluded" (RunPredictor loads only "ok"
models), so both variants have exactly the same trained neural models:

- `without_gbt`: `fabray ensemble` (Ray Tune, `--trials`) over the six neural models;
- `with_gbt`: `fabray ensemble` over the six + gbt.

Both are evaluated by `fabray evaluate` on the file's held-out test split; each leaderboard also
holds the LightGBM baseline that `fabray evaluate` fits itself (named `gbt_baseline` in the run
that has the member). The table: lead score, warned at start, before onset, median lead,
false-alarm runs per zone-day, F1, PR-AUC; and the served ensemble's form and members.

    python benchmarks/gbt_member.py --seed 8123 --zones 6 --days 11 --out /tmp/gbtm [--json F]

About 12–15 minutes on 2 CPU cores (run it under the heavy-job lock). Not part of `make test`.
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

from fabray.demo import DEMO_CONFIG

MODELS = ["lstm", "gru", "cnn_lstm", "spike", "rule", "patchtst", "gbt"]


def config(epochs: int) -> dict:
    return {"train": {**DEMO_CONFIG["train"], "epochs": epochs, "models": MODELS}}


def _fabray(*args: str) -> None:
    cmd = [str(Path(sys.executable).with_name("fabray")), *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def _exclude_gbt(run: Path) -> None:
    path = run / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["models"]["gbt"]["status"] = "excluded"
    manifest.pop("ensemble", None)
    path.write_text(json.dumps(manifest, indent=1))


def run(seed: int, zones: int, days: int, out: Path, trials: int, epochs: int) -> dict:
    from fabray.config import SimulationConfig
    from fabray.data.io import write_table
    from fabray.data.simulate import SimulationSize, simulate

    out.mkdir(parents=True, exist_ok=True)
    data = out / f"fab{seed}.parquet"
    write_table(simulate(SimulationSize(zones, days * 1440, zones * days * 1440), SimulationConfig(), seed), data)
    cfg = out / "config.yaml"
    cfg.write_text(yaml.safe_dump(config(epochs), sort_keys=False))
    result = {"seed": seed, "zones": zones, "days": days, "epochs": epochs, "trials": trials,
              "cpus": os.cpu_count(), "load_avg_start": os.getloadavg(), "variants": {}}
    started = time.perf_counter()
    _fabray("train", "--data", str(data), "--out", str(out / "with_gbt"), "--config", str(cfg))
    result["train_wall_s"] = round(time.perf_counter() - started, 1)
    manifest = json.loads((out / "with_gbt" / "manifest.json").read_text())
    result["train"] = {n: {k: e.get(k) for k in ("status", "val_metrics", "best_epoch", "epochs_run", "train_seconds")}
                       for n, e in manifest["models"].items()}
    shutil.copytree(out / "with_gbt", out / "without_gbt")
    _exclude_gbt(out / "without_gbt")
    for name in ("without_gbt", "with_gbt"):
        started = time.perf_counter()
        _fabray("ensemble", "--run", str(out / name), "--trials", str(trials), "--config", str(cfg))
        _fabray("evaluate", "--run", str(out / name), "--data", str(data), "--json", str(out / f"{name}.json"))
        metrics = json.loads((out / f"{name}.json").read_text())
        ens = json.loads((out / name / "ensemble.json").read_text())
        served = (ens.get("state") or {})
        result["variants"][name] = {"wall_s": round(time.perf_counter() - started, 1),
                                    "served": {"form": served.get("form"), "members": served.get("members"),
                                               "winner": ens.get("winner")},
                                    "leaderboard": metrics["leaderboard"]}
    result["load_avg_end"] = os.getloadavg()
    return result


def table(result: dict) -> str:
    lines = [f"{'variant':12s} {'name':16s} {'score':>6s} {'start':>7s} {'<onset':>7s} "
             f"{'med':>5s} {'FA/zd':>6s} {'F1':>6s} {'PR-AUC':>6s}"]
    for variant, v in result["variants"].items():
        for row in v["leaderboard"]:
            def f(key, fmt="{:.1f}"):
                return "—" if row.get(key) is None else fmt.format(row[key])
            lines.append(
                f"{variant:12s} {row['name']:16s} {f('lead_score'):>6s} "
                f"{row['warned_at_start']:>3d}/{row['episodes']:<3d} {row['warned_before_onset']:>7d} "
                f"{f('median_lead_min'):>5s} {f('false_alarm_runs_per_zone_day', '{:.2f}'):>6s} "
                f"{f('f1', '{:.3f}'):>6s} {f('pr_auc', '{:.3f}'):>6s}")
        lines.append(f"{variant:12s} served: {v['served']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=8123, help="simulator seed (a fresh one)")
    parser.add_argument("--zones", type=int, default=6)
    parser.add_argument("--days", type=int, default=11)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--trials", type=int, default=16, help="Ray Tune trials of each ensemble")
    parser.add_argument("--out", type=Path, required=True, help="working folder (data, runs)")
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    args = parser.parse_args(argv)
    result = run(args.seed, args.zones, args.days, args.out, args.trials, args.epochs)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
