"""Where a command's CPU goes, by kind of process: the machine's CPU-seconds while the command
runs, split by what each process was (Ray Train's actors, its workers, Serve replicas, pytest's
workers, Ray's own daemons, ...).

    python benchmarks/cpu_by_process.py --json suite_cpu.json -- .venv/bin/python -m pytest -q -n 3 --dist loadgroup

Why: `make test` is CPU-bound on a 2-core machine (the whole suite keeps both cores ~99% busy),
so it gets faster only by doing less work, and this says which work. Every process alive during
the run is sampled (psutil, every `--interval` s); a process's CPU is its last sampled
user+system time minus what it had when the command started, so a process that lives shorter
than one interval is missed (its share shows up only in the machine total, `/proc/stat`: the
`unattributed` line). Ray actors are named by their class (`ray::TrainController.run` →
`TrainController`; a pooled worker by what it became last), other processes by their
executable or script.

The baseline is the machine itself in the same run: `machine_cpu_s` (all CPU time spent on the
machine while the command ran, from /proc/stat), beside `wall_s` and the load average at the
start and the end, so a busy machine shows. Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil

_RAY_ACTOR = re.compile(r"^ray::([A-Za-z_][A-Za-z0-9_]*)")


def machine_cpu_s() -> float:
    """CPU-seconds the whole machine has spent busy since boot (user+nice+system+irq+softirq)."""
    times = psutil.cpu_times()
    return sum(getattr(times, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))


def kind_of(cmdline: list[str], name: str) -> str:
    """What a process is, from its command line: a Ray actor's class, a Python script or module,
    or the executable's name."""
    if not cmdline:  # a kernel thread, or a process already gone
        return name
    head = cmdline[0]
    actor = _RAY_ACTOR.match(head)
    if actor:
        return f"ray::{actor.group(1)}"
    base = os.path.basename(head)
    if base.startswith("python"):
        rest = [a for a in cmdline[1:] if not a.startswith("-")]
        if "-m" in cmdline[1:]:
            return f"python -m {cmdline[cmdline.index('-m') + 1]}"
        if "-c" in cmdline[1:]:
            return "python -c (pytest-xdist worker, or a Ray subprocess)"
        return f"python {os.path.basename(rest[0])}" if rest else "python"
    return base


def profile(command: list[str], interval: float = 0.25) -> dict:
    """Run `command`; the CPU it and everything alive meanwhile used, by kind of process."""
    me = os.getpid()
    start: dict[tuple[int, float], float] = {}
    last: dict[tuple[int, float], tuple[float, str]] = {}

    def sample(first: bool = False) -> None:
        for p in psutil.process_iter(["pid", "create_time", "cpu_times", "cmdline", "name"]):
            info = p.info
            if info["pid"] == me or info["cpu_times"] is None:
                continue
            key = (info["pid"], info["create_time"])
            cpu = info["cpu_times"].user + info["cpu_times"].system
            if first:
                start[key] = cpu
            else:  # the latest name (a pooled ray::IDLE worker becomes an actor), not a zombie's
                before, kind = last.get(key, (0.0, None))
                if info["cmdline"] or kind is None:
                    kind = kind_of(info["cmdline"] or [], info["name"] or "?")
                last[key] = (max(cpu, before), kind)

    sample(first=True)
    load0, cpu0, t0 = os.getloadavg()[0], machine_cpu_s(), time.monotonic()
    proc = subprocess.Popen(command)
    while proc.poll() is None:
        sample()
        time.sleep(interval)
    sample()
    wall, used = time.monotonic() - t0, machine_cpu_s() - cpu0
    by_kind: Counter[str] = Counter()
    for key, (cpu, kind) in last.items():
        by_kind[kind] += cpu - start.get(key, 0.0)
    attributed = sum(by_kind.values())
    return {
        "command": command,
        "returncode": proc.returncode,
        "wall_s": round(wall, 1),
        "machine_cpu_s": round(used, 1),
        "cores_busy": round(used / wall, 2) if wall else None,
        "machine_cpus": psutil.cpu_count(),
        "load_avg_1m_start": round(load0, 2),
        "load_avg_1m_end": round(os.getloadavg()[0], 2),
        "by_kind_cpu_s": {k: round(v, 1) for k, v in by_kind.most_common() if v >= 0.05},
        "unattributed_cpu_s": round(used - attributed, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="write the result here as JSON")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between samples (default 0.25)")
    parser.add_argument("--top", type=int, default=30, help="kinds of process to print (default 30)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to profile after --")
    result = profile(command, args.interval)
    print(f"\n{result['machine_cpu_s']:.0f} CPU-s on the machine in {result['wall_s']:.0f} s "
          f"({result['cores_busy']} of {result['machine_cpus']} cores busy; load "
          f"{result['load_avg_1m_start']} → {result['load_avg_1m_end']}); exit {result['returncode']}")
    for kind, cpu in list(result["by_kind_cpu_s"].items())[:args.top]:
        print(f"{cpu:9.1f}  {kind}")
    print(f"{result['unattributed_cpu_s']:9.1f}  (unattributed: processes shorter than one sample, the kernel)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return int(result["returncode"] != 0)


if __name__ == "__main__":
    sys.exit(main())
