"""The seed's POC scale, really run (issue 14 item 3): simulate, train, ensemble, evaluate, retrain.

One simulated fab (the `poc` preset's 16 zones, seeded) is cut by time into three files:

- `history.parquet`: the preset's 781,163 rows (48,823 minutes per zone, ~34 days); `fabray
  train` splits it 70/15/15 by time as always, and trains the six models at their DEFAULT sizes
  within a wall-clock budget (`--budget`), on sampled epochs (`train.windows_per_epoch`) scored on
  a fixed validation sample (`train.val_windows`);
- `new_day.parquet`: the next day (1,440 minutes per zone): `fabray retrain` warm-starts every
  model on it plus a replay sample of the history, within `--retrain-budget-min`;
- `heldout.parquet`: the `--heldout-days` after that, seen by neither: `fabray evaluate` scores
  the parent run and the retrained (child) run on it, so their test metrics compare like for like.

Every stage is the real CLI in a subprocess (an embedded local Ray with `--num-cpus`), watched by
a sampler that walks the stage's process tree (the CLI, Ray's GCS, raylet and workers) every
`--sample-s` seconds: the stage's wall time, its CPU time (user + system summed over every
process seen, as last sampled) and its peak RSS (the tree's total at its highest sample, and per
process). The result is written to `--json` (default benchmarks/results/poc_run.json).

    python benchmarks/poc_run.py --out /tmp/poc                       # ~1h45 on 2 CPU cores
    python benchmarks/poc_run.py --preset tiny --budget 3m --out /tmp/poc-smoke --json /tmp/smoke.json
    python benchmarks/poc_run.py --out /tmp/poc --again child2   # one more retrain of that parent (~12 min)

Not part of `make test`; no timing here is asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

MINUTES_PER_DAY = 1440
RESULT = Path(__file__).resolve().parent / "results" / "poc_run.json"
#: the candidates of `fabray evaluate`'s leaderboard carried into the result
LEADERBOARD_KEYS = ("lead_score", "episodes", "warned_at_start", "warned_before_onset",
                    "warned_5min_before_onset", "median_lead_min", "false_alarm_runs_per_zone_day",
                    "f1", "pr_auc")


class TreeSampler:
    """Samples a process and its descendants every `interval` s on a thread: the tree's peak
    memory (the sum of the processes' PSS, proportional set size: pages shared by several
    processes, TensorFlow's libraries, Ray's object store, are split between them instead of
    counted in each one's RSS), per-process peak RSS and PSS, and last-seen CPU times (so a
    process's CPU counts once, up to its last sample; processes living less than one interval
    may be missed)."""

    def __init__(self, pid: int, interval: float) -> None:
        self.root, self.interval = psutil.Process(pid), interval
        self.peak_total_pss = 0
        self.procs: dict[int, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    @staticmethod
    def _label(proc: psutil.Process) -> str:
        cmd = proc.cmdline()
        if cmd and cmd[0].startswith("ray::"):
            return cmd[0].split()[0]  # Ray's worker titles: ray::IDLE, ray::RayTrainWorker.train_fn, ...
        names = [Path(c).name for c in cmd[:3]]
        if "fabray" in names:
            command = cmd[names.index("fabray") + 1:names.index("fabray") + 2]  # the subcommand, if any
            return " ".join(["fabray", *command])
        return proc.name()

    def sample(self) -> None:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        total = 0
        for proc in procs:
            try:
                with proc.oneshot():
                    mem, cpu = proc.memory_full_info(), proc.cpu_times()
                    entry = self.procs.setdefault(proc.pid, {"label": self._label(proc), "peak_rss": 0, "peak_pss": 0})
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            total += mem.pss
            entry["peak_rss"] = max(entry["peak_rss"], mem.rss)
            entry["peak_pss"] = max(entry["peak_pss"], mem.pss)
            entry["cpu_s"] = cpu.user + cpu.system
        self.peak_total_pss = max(self.peak_total_pss, total)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def summary(self) -> dict[str, Any]:
        by_label: dict[str, dict[str, Any]] = {}
        for entry in self.procs.values():
            row = by_label.setdefault(entry["label"], {"processes": 0, "peak_rss_mb": 0.0, "peak_pss_mb": 0.0,
                                                       "cpu_s": 0.0})
            row["processes"] += 1
            row["peak_rss_mb"] = round(max(row["peak_rss_mb"], entry["peak_rss"] / 2**20), 1)
            row["peak_pss_mb"] = round(max(row["peak_pss_mb"], entry["peak_pss"] / 2**20), 1)
            row["cpu_s"] = round(row["cpu_s"] + entry.get("cpu_s", 0.0), 1)
        ranked = sorted(by_label.items(), key=lambda kv: -kv[1]["cpu_s"])
        return {"cpu_s": round(sum(e.get("cpu_s", 0.0) for e in self.procs.values()), 1),
                "peak_rss_mb": round(self.peak_total_pss / 2**20, 1),  # the tree's peak, by PSS (see above)
                "max_process_rss_mb": round(max((e["peak_rss"] for e in self.procs.values()), default=0) / 2**20, 1),
                "processes": dict(ranked)}


def stage(name: str, args: list[str], log: Path, interval: float, run: Path | None = None) -> dict[str, Any]:
    """Run `fabray <args>` as a subprocess under a TreeSampler; raise if it fails. With `run` (a
    training stage), a partial run (some models failed, e.g. the budget was spent before they
    could start; exit code 1) goes on with the models that trained, and says so."""
    cmd = [str(Path(sys.executable).with_name("fabray")), *args]
    print(f"+ [{time.strftime('%H:%M:%S')}] {name}: {' '.join(cmd)}", flush=True)
    load = os.getloadavg()
    started = time.perf_counter()
    with log.open("a") as out:
        out.write(f"\n==== {name}: {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        with TreeSampler(proc.pid, interval) as sampler:
            code = proc.wait()
            sampler.sample()
    wall = time.perf_counter() - started
    status = None
    if run is not None and (run / "manifest.json").is_file():
        status = json.loads((run / "manifest.json").read_text())["status"]
    if code != 0 and not (code == 1 and status == "partial"):
        raise SystemExit(f"{name} failed with exit code {code}; see {log}")
    if status == "partial":
        print(f"  {name}: a partial run (some models failed; see {log}): going on with the others", flush=True)
    result = {"command": "fabray " + " ".join(args), "exit_code": code, "run_status": status,
              "wall_s": round(wall, 1), **sampler.summary(),
              "load_average_start": [round(x, 2) for x in load],
              "load_average_end": [round(x, 2) for x in os.getloadavg()]}
    print(f"  {name}: {result['wall_s']:.0f} s wall, {result['cpu_s']:.0f} CPU-s, peak RSS "
          f"{result['peak_rss_mb']:.0f} MB (tree, PSS)", flush=True)
    return result


def make_data(preset: str, seed: int, heldout_days: int, out: Path) -> dict[str, Any]:
    """One simulated fab, cut by time into history (the preset's rows), the next day, and the
    held-out days after it."""
    import pandas as pd

    from fabray.config import SimulationConfig
    from fabray.data.io import write_table
    from fabray.data.simulate import SimulationSize, preset_size, simulate

    size = preset_size(preset)
    extra = MINUTES_PER_DAY * (1 + heldout_days)
    started, rss0 = time.perf_counter(), psutil.Process().memory_info().rss
    frame = simulate(SimulationSize(size.zones, size.minutes + extra, size.zones * (size.minutes + extra)),
                     SimulationConfig(), seed)
    simulate_s = time.perf_counter() - started
    minute = frame.groupby("zone", sort=False).cumcount()  # minutes since each zone's start
    history = frame[minute < size.minutes]
    history = history.iloc[: size.rows]  # the preset's exact row count: trims the last zone's tail
    parts = {"history": history,
             "new_day": frame[(minute >= size.minutes) & (minute < size.minutes + MINUTES_PER_DAY)],
             "heldout": frame[minute >= size.minutes + MINUTES_PER_DAY]}
    info: dict[str, Any] = {"preset": preset, "seed": seed, "zones": size.zones,
                            "simulate_s": round(simulate_s, 1)}
    for name, part in parts.items():
        write_table(part.reset_index(drop=True), out / f"{name}.parquet")
        info[name] = {"rows": int(len(part)), "first": str(pd.Timestamp(part["timestamp"].min())),
                      "last": str(pd.Timestamp(part["timestamp"].max()))}
    info["peak_rss_mb_simulate"] = round(max(psutil.Process().memory_info().rss, rss0) / 2**20, 1)
    return info


def leaderboard(path: Path) -> dict[str, Any]:
    metrics = json.loads(path.read_text())
    rows = {row["name"]: {k: row.get(k) for k in LEADERBOARD_KEYS} for row in metrics["leaderboard"]}
    return {"served": metrics["ensemble_info"].get("served"), "ensemble": metrics["ensemble"],
            "leaderboard": rows, "test_windows": metrics["data"].get("windows")}


def training_summary(run: Path) -> dict[str, Any]:
    manifest = json.loads((run / "manifest.json").read_text())
    models = {name: {**{k: entry.get(k) for k in ("status", "params", "epochs_run", "best_epoch", "stopped_by_budget",
                                                  "stopped_early", "carried_over", "budget_share_s", "train_seconds")},
                     "val": {k: (entry.get("val_metrics") or {}).get(k) for k in ("pr_auc", "f1", "n")}}
              for name, entry in manifest["models"].items()}
    keep = ("budget", "validation_windows", "data", "cluster", "retrain", "parent")
    return {"models": models, **{k: manifest[k] for k in keep if k in manifest}}


def commit_of_fabray() -> dict[str, str]:
    """The commit of the fabray the stages import (PYTHONPATH may point at another clone)."""
    import fabray

    commit = subprocess.run(["git", "-C", str(Path(fabray.__file__).parent), "rev-parse", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    return {"commit": commit, "fabray": fabray.__file__}


def retrain_and_evaluate(out: Path, parent: Path, child: Path, args: argparse.Namespace, log: Path) -> dict[str, Any]:
    """`fabray retrain` of the parent on the new day into `child`, then `fabray evaluate` of the
    child on the held-out days: the "retrain" entry of the result, with both stages' figures
    under "stages" (the caller files them)."""
    cpus = ["--num-cpus", str(args.num_cpus)]
    retrain = stage(f"retrain ({child.name})", [
        "retrain", "--run", str(parent), "--data", str(out / "new_day.parquet"), "--out", str(child),
        "--budget-minutes", f"{args.retrain_budget_min:g}", *cpus, *args.retrain_args], log, args.sample_s, run=child)
    evaluate = stage(f"evaluate ({child.name})", [
        "evaluate", "--run", str(child), "--data", str(out / "heldout.parquet"),
        "--json", str(out / f"{child.name}_test.json"), "--report", str(out / f"{child.name}_report")],
        log, args.sample_s)
    return {"wall_s": retrain["wall_s"], "cpu_s": retrain["cpu_s"], "peak_rss_mb": retrain["peak_rss_mb"],
            "budget_minutes": args.retrain_budget_min, **training_summary(child),
            "test": leaderboard(out / f"{child.name}_test.json"), "code": commit_of_fabray(),
            "stages": (retrain, evaluate)}


def again(args: argparse.Namespace) -> int:
    """`--again NAME`: one more retrain of the stored parent (e.g. after a fix), into --out/NAME,
    evaluated on the same held-out days; filed under the result's "retrain_again"."""
    out, log = args.out, args.out / "log.txt"
    if not (out / "parent" / "manifest.json").is_file() or not args.json.is_file():
        raise SystemExit(f"--again needs a finished first pass: {out}/parent and {args.json}")
    result = json.loads(args.json.read_text())
    retrained = retrain_and_evaluate(out, out / "parent", out / args.again, args, log)
    retrained["stages"] = dict(zip(("retrain", "evaluate"), retrained["stages"]))
    result.setdefault("retrain_again", {})[args.again] = retrained
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(table({"stages": {}, "test": result.get("test"), "retrain": retrained}))
    print(f"wrote {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="working folder (data, runs, logs); must not exist")
    parser.add_argument("--preset", default="poc", help="simulation size of the history (default: poc)")
    parser.add_argument("--seed", type=int, default=14, help="simulator seed")
    parser.add_argument("--heldout-days", type=int, default=2, help="days after the new day, for evaluation")
    parser.add_argument("--budget", default="45m", help="fabray train's wall-clock budget")
    parser.add_argument("--retrain-budget-min", type=float, default=9.0, help="fabray retrain's budget, minutes")
    parser.add_argument("--windows-per-epoch", type=int, default=25_000, help="train.windows_per_epoch")
    parser.add_argument("--val-windows", type=int, default=15_000, help="train.val_windows")
    parser.add_argument("--epochs", type=int, default=20, help="train.epochs (the budget usually stops first)")
    parser.add_argument("--trials", type=int, default=16, help="Ray Tune trials of the ensemble fit")
    parser.add_argument("--num-cpus", type=int, default=3,
                        help="CPUs of each stage's embedded Ray (3 on 2 cores: two trainers at once, "
                             "one CPU kept for Ray Data)")
    parser.add_argument("--sample-s", type=float, default=2.0, help="process-tree sampling interval")
    parser.add_argument("--json", type=Path, default=RESULT, help=f"result file (default: {RESULT})")
    parser.add_argument("--again", default=None, metavar="NAME",
                        help="after a first pass into --out: retrain its parent once more into --out/NAME "
                             "and evaluate it on the same held-out days (filed under retrain_again)")
    parser.add_argument("--retrain-set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a retrain config entry, e.g. retrain.learning_rate=1e-4 (repeatable; given: "
                             "a config of only these instead of the parent's)")
    args = parser.parse_args(argv)
    args.retrain_args = []
    if args.retrain_set:
        overrides: dict[str, dict[str, Any]] = {}
        for item in args.retrain_set:
            key, sep, value = item.partition("=")
            section, dot, field = key.partition(".")
            if not (sep and dot and section and field):
                parser.error(f"--retrain-set wants SECTION.KEY=VALUE. Received: {item!r}")
            overrides.setdefault(section, {})[field] = yaml.safe_load(value)
        args.out.mkdir(parents=True, exist_ok=True)
        retrain_yaml = args.out / f"retrain-{args.again or 'child'}.yaml"
        retrain_yaml.write_text(yaml.safe_dump(overrides))
        args.retrain_args = ["--config", str(retrain_yaml)]
    if args.again:
        return again(args)
    if args.out.exists():
        parser.error(f"--out {args.out} exists; give a new folder")
    args.out.mkdir(parents=True)
    out, log = args.out, args.out / "log.txt"
    config = {"train": {"windows_per_epoch": args.windows_per_epoch, "val_windows": args.val_windows,
                        "epochs": args.epochs}}
    (out / "poc.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    started = time.perf_counter()
    result: dict[str, Any] = {"benchmark": "poc_run", "code": commit_of_fabray(),
                              "cpus": os.cpu_count(), "num_cpus_ray": args.num_cpus,
                              "config": config, "load_average_start": [round(x, 2) for x in os.getloadavg()]}
    data = make_data(args.preset, args.seed, args.heldout_days, out)
    result.update(rows=data["history"]["rows"], data=data)

    def save() -> None:
        result["wall_s"] = round(time.perf_counter() - started, 1)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")

    cpus = ["--num-cpus", str(args.num_cpus)]
    parent, child = out / "parent", out / "child"
    stages = result.setdefault("stages", {})
    stages["train"] = stage("train", ["train", "--data", str(out / "history.parquet"), "--out", str(parent),
                                      "--config", str(out / "poc.yaml"), "--budget", args.budget, *cpus], log, args.sample_s,
                            run=parent)
    result["training"] = training_summary(parent)
    save()
    stages["ensemble"] = stage("ensemble", ["ensemble", "--run", str(parent), "--trials", str(args.trials), *cpus],
                               log, args.sample_s)
    save()
    stages["evaluate_parent"] = stage("evaluate_parent", [
        "evaluate", "--run", str(parent), "--data", str(out / "heldout.parquet"),
        "--json", str(out / "parent_test.json"), "--report", str(out / "parent_report")], log, args.sample_s)
    result["test"] = leaderboard(out / "parent_test.json")
    save()
    retrained = retrain_and_evaluate(out, parent, child, args, log)
    stages["retrain"], stages["evaluate_child"] = retrained.pop("stages")
    result["retrain"] = retrained
    result["peak_rss_mb"] = max(s["peak_rss_mb"] for s in stages.values())
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    save()
    print(table(result))
    print(f"wrote {args.json}")
    return 0


def table(result: dict[str, Any]) -> str:
    lines = [f"{'stage':16s} {'wall s':>8s} {'CPU s':>8s} {'peak RSS MB':>12s}"]
    for name, s in result["stages"].items():
        lines.append(f"{name:16s} {s['wall_s']:8.0f} {s['cpu_s']:8.0f} {s['peak_rss_mb']:12.0f}")
    lines.append("")
    lines.append(f"{'run':7s} {'candidate':16s} {'score':>6s} {'start':>8s} {'<onset':>7s} {'med':>5s} "
                 f"{'FA/zd':>6s} {'F1':>6s} {'PR-AUC':>6s}")
    for run, test in (("parent", result.get("test")), ("child", result.get("retrain", {}).get("test"))):
        for name, row in (test or {}).get("leaderboard", {}).items():
            def f(key: str, fmt: str = "{:.1f}") -> str:
                return "-" if row.get(key) is None else fmt.format(row[key])
            lines.append(f"{run:7s} {name:16s} {f('lead_score'):>6s} {row['warned_at_start']:>4d}/{row['episodes']:<3d} "
                         f"{row['warned_before_onset']:>7d} {f('median_lead_min'):>5s} "
                         f"{f('false_alarm_runs_per_zone_day', '{:.2f}'):>6s} {f('f1', '{:.3f}'):>6s} "
                         f"{f('pr_auc', '{:.3f}'):>6s}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
