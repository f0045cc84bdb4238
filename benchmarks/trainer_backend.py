"""What a Ray Train controller pays to unpickle its backend config: fabray's
`TensorflowBackendConfig` (`fabray/train/backend.py`, no TensorFlow) vs Ray's own
`ray.train.tensorflow.TensorflowConfig` (the baseline, measured in the same run).

Every trainer's controller actor unpickles the backend config it was given; with Ray's class
that imports the `ray.train.tensorflow` package and, through it, TensorFlow, which the controller
never uses. Each round starts a fresh interpreter per config (alternating the two, so the
machine's noise falls on both alike), imports what both share (`ray.train.backend`), then
measures the CPU seconds and the resident-memory growth of `pickle.loads` of the config alone. Printed
JSON: per config the median CPU seconds and RSS MB over the rounds, the ratio baseline / fabray,
and the load average at start and end.

    python benchmarks/trainer_backend.py [--rounds 5] [--json benchmarks/results/trainer_backend.json]

Not part of `make test`; run it on a quiet machine (the load average is printed beside).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
from pathlib import Path

# Run in a fresh interpreter: argv[1] is the pickled config's path.
CHILD = r"""
import os, pickle, sys, time
import ray.train.backend  # shared by both configs: not counted
def rss_mb():  # resident set size now (/proc/self/statm: pages)
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
blob = open(sys.argv[1], "rb").read()
rss0 = rss_mb()
cpu0 = time.process_time()
config = pickle.loads(blob)
cpu = time.process_time() - cpu0
print(f"{cpu} {rss_mb() - rss0} {'tensorflow' in sys.modules}")
"""


def configs() -> dict[str, object]:
    from ray.train.tensorflow import TensorflowConfig

    from fabray.train.backend import TensorflowBackendConfig

    return {"fabray": TensorflowBackendConfig(), "ray_tensorflow_config": TensorflowConfig()}


def measure(blob_path: Path) -> tuple[float, float, bool]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(blob_path)], check=True, capture_output=True,
                         text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}).stdout.split()
    return float(out[0]), float(out[1]), out[2] == "True"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="fresh interpreters per config (default 5)")
    parser.add_argument("--json", type=Path, default=None, help="write the JSON here too")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1. Received: {args.rounds}")

    load_start = os.getloadavg()
    blobs = {}
    for name, config in configs().items():
        path = Path(os.environ.get("TMPDIR", "/tmp")) / f"fabray_backend_{os.getpid()}_{name}.pkl"
        path.write_bytes(pickle.dumps(config))
        blobs[name] = path
    samples: dict[str, list[tuple[float, float, bool]]] = {name: [] for name in blobs}
    try:
        for _ in range(args.rounds):
            for name, path in blobs.items():
                samples[name].append(measure(path))
    finally:
        for path in blobs.values():
            path.unlink(missing_ok=True)

    result: dict[str, object] = {"rounds": args.rounds}
    for name, rows in samples.items():
        result[name] = {
            "unpickle_cpu_s": statistics.median(r[0] for r in rows),
            "unpickle_rss_mb": statistics.median(r[1] for r in rows),
            "imports_tensorflow": any(r[2] for r in rows),
        }
    fab, ray_cfg = result["fabray"], result["ray_tensorflow_config"]
    result["cpu_ratio_ray_over_fabray"] = ray_cfg["unpickle_cpu_s"] / max(fab["unpickle_cpu_s"], 1e-6)
    result["rss_saved_mb_per_controller"] = ray_cfg["unpickle_rss_mb"] - fab["unpickle_rss_mb"]
    result["load_average"] = {"start": load_start[0], "end": os.getloadavg()[0]}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
