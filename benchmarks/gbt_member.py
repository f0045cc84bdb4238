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
import sys
import time
from pathlib import Path

import yaml

from fabray.demo import DEMO_CONFIG
from fabray.run.manifest import read_manifest, write_manifest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lead_before_after import _fabray, table as leaderboard_table  # noqa: E402 - the sibling benchmark's

MODELS = ["lstm", "gru", "cnn_lstm", "spike", "rule", "patchtst", "gbt"]


def config(epochs: int) -> dict:
    return {"train": {**DEMO_CONFIG["train"], "epochs": epochs, "models": MODELS}}


def _exclude_gbt(run: Path) -> None:
    """The copy's gbt entry marked "excluded" (RunPredictor loads only "ok" models), its fitted
    ensemble dropped, through the run package's reader and writer."""
    manifest = read_manifest(run)
    manifest["models"]["gbt"]["status"] = "excluded"
    manifest.pop("ensemble", None)
    write_manifest(run, manifest)


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
    """lead_before_after's leaderboard table, and each variant's served ensemble."""
    served = [f"{variant}: served {v['served']}" for variant, v in result["variants"].items()]
    return "\n".join([leaderboard_table(result), *served])


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
