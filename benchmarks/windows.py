"""Windows by index vs materialized windows: speed and peak memory on a `poc`-sized series.

    python benchmarks/windows.py [--source simulate|synthetic] [--windows 200000] [--json OUT]

The series (781,163 rows × 12 by default) is made once: the simulator's `poc` preset prepared
by `fabray.data.windows.prepare` (`--source simulate`, ~10 s), or random float32 numbers
(`--source synthetic`: gather cost does not depend on the values). Then each path runs in its
own subprocess, so that peak RSS (ru_maxrss) of one does not hide another's:

- `index`       (the project's path) gather batches of `--batch-size` windows from the [N, F]
                 array by their end rows, `fabray.data.windows.gather_windows`;
- `materialize` (the baseline) build all `--windows` windows at once with fancy indexing
                 ([W, L, F] float32: 960 MB for 200k), then iterate batches as slices of it;
- `tf_data`     the local training input pipeline, `fabray.data.tf_windows.window_dataset`
                 (shuffled; its peak includes TensorFlow itself, see `baseline_rss_mb`).

All three visit the same randomly drawn train-split windows. Printed: a short table (stderr)
and JSON (stdout, and `--json OUT`), with the ratios index vs materialize and the projected
size of materializing every window of the series.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

logger = logging.getLogger("benchmarks.windows")

POC_ROWS = 781_163
PATHS = ("index", "materialize", "tf_data")


# ---------------------------------------------------------------------------- the series


def make_series(source: str, rows: int, n_features: int, lookback: int, seed: int) -> dict[str, np.ndarray]:
    """features [N, F] float32, target [N] float32, ends [W] int64 (the train split's ends)."""
    if source == "simulate":
        from fabray.config import SplitConfig, TaskConfig
        from fabray.data.simulate import simulate_preset
        from fabray.data.windows import prepare

        if rows != POC_ROWS:
            raise SystemExit("--source simulate makes the poc preset; --rows applies to synthetic only")
        prepared = prepare(simulate_preset("poc", seed=seed), TaskConfig(lookback=lookback), SplitConfig())
        return {"features": prepared.features, "target": prepared.target, "ends": prepared.splits["train"]}
    rng = np.random.default_rng(seed)
    return {
        "features": rng.standard_normal((rows, n_features), dtype=np.float32),
        "target": (rng.random(rows) < 0.1).astype(np.float32),
        "ends": np.arange(lookback - 1, rows, dtype=np.int64),
    }


# ---------------------------------------------------------------------------- one path (child)


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark to its current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    """VmHWM: the high-water mark of this process image. (ru_maxrss is not used: Linux carries
    it across exec, so a child would report the forking parent's peak.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_path(path: str, npz: Path, n_windows: int, lookback: int, batch_size: int, repeats: int, seed: int) -> dict[str, Any]:
    """Time `repeats` passes over the same `n_windows` windows; memory relative to a baseline
    taken after the series (and, for tf_data, TensorFlow) is loaded."""
    from fabray.data.windows import gather_windows

    data = np.load(npz)
    features, target, ends = data["features"], data["target"], data["ends"]
    rng = np.random.default_rng(seed)
    sample = rng.choice(ends, size=min(n_windows, len(ends)), replace=False)  # [W], shuffled
    if path == "tf_data":
        import tensorflow as tf  # noqa: F401  (loaded before the baseline: its own memory is not the pipeline's)

        from fabray.data.tf_windows import window_dataset
    baseline_mb = _rss_mb()
    peak_was_reset = _reset_peak_rss()
    checksum = 0.0
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        if path == "index":
            for i in range(0, len(sample), batch_size):
                x = gather_windows(features, sample[i : i + batch_size], lookback)  # [B, L, F]
                y = target[sample[i : i + batch_size]][:, None]  # [B, 1]
                checksum += float(x[:, -1, 0].sum() + y.sum())
        elif path == "materialize":
            windows = gather_windows(features, sample, lookback)  # [W, L, F]: every window at once
            labels = target[sample][:, None]  # [W, 1]
            for i in range(0, len(sample), batch_size):
                x, y = windows[i : i + batch_size], labels[i : i + batch_size]
                checksum += float(x[:, -1, 0].sum() + y.sum())
            del windows, labels, x, y  # x, y are views: keeping them would keep `windows` alive
        elif path == "tf_data":
            ds = window_dataset(features, target, sample, lookback, batch_size, shuffle=True, seed=seed)
            for x, y in ds:
                checksum += float(x.numpy()[:, -1, 0].sum() + y.numpy().sum())
        else:
            raise SystemExit(f"unknown path {path!r}; expected one of {PATHS}")
        seconds.append(time.perf_counter() - start)
    median_s = float(np.median(seconds))
    peak_mb = _peak_rss_mb()
    return {
        "windows": int(len(sample)),
        "seconds": [round(s, 4) for s in seconds],
        "windows_per_s": round(len(sample) / median_s, 1),
        "baseline_rss_mb": round(baseline_mb, 1),
        "peak_rss_mb": round(peak_mb, 1),
        "peak_over_baseline_mb": round(peak_mb - baseline_mb, 1),
        "peak_reset_at_baseline": peak_was_reset,
        "checksum": checksum,
    }


# ---------------------------------------------------------------------------- driver


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", choices=("simulate", "synthetic"), default="simulate")
    p.add_argument("--rows", type=int, default=POC_ROWS, help="series rows (synthetic source)")
    p.add_argument("--features", type=int, default=12)
    p.add_argument("--lookback", type=int, default=100)
    p.add_argument("--windows", type=int, default=200_000, help="windows visited per pass")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3,
                   help="rounds; each runs every path once in a fresh process, interleaved so that "
                   "a noisy neighbour hits all paths alike; medians are reported")
    p.add_argument("--repeats", type=int, default=1, help="passes per path per process")
    p.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated subset of {PATHS}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--npz", type=Path, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:  # one path, in its own process
        result = run_path(args.child, args.npz, args.windows, args.lookback, args.batch_size, args.repeats, args.seed)
        print(json.dumps(result))
        return 0

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    paths = [p for p in args.paths.split(",") if p]
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        raise SystemExit(f"unknown --paths {unknown}; expected a subset of {PATHS}")
    start = time.perf_counter()
    series = make_series(args.source, args.rows, args.features, args.lookback, args.seed)
    n_rows, n_features = series["features"].shape
    logger.info("series: %d rows × %d features, %d candidate windows (%.1f s)",
                n_rows, n_features, len(series["ends"]), time.perf_counter() - start)

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="fabray-bench-windows-") as tmp:
        npz = Path(tmp) / "series.npz"
        np.savez(npz, **series)
        runs: dict[str, list[dict[str, Any]]] = {path: [] for path in paths}
        for round_no in range(args.rounds):
            for path in paths:
                cmd = [sys.executable, __file__, "--child", path, "--npz", str(npz),
                       "--windows", str(args.windows), "--lookback", str(args.lookback),
                       "--batch-size", str(args.batch_size), "--repeats", str(args.repeats),
                       "--seed", str(args.seed)]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True)
                runs[path].append(json.loads(out.stdout.strip().splitlines()[-1]))
                logger.info("round %d %-12s %s", round_no, path, runs[path][-1])
        results = {path: summarize(rs) for path, rs in runs.items()}

    window_bytes = args.lookback * n_features * 4
    report: dict[str, Any] = {
        "benchmark": "windows",
        "source": args.source,
        "rows": int(n_rows),
        "features": int(n_features),
        "lookback": args.lookback,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "series_mb": round(series["features"].nbytes / 2**20, 1),
        "projected_materialize_all_rows_gb": round(n_rows * window_bytes / 1e9, 2),
        "projected_materialize_candidate_windows_gb": round(len(series["ends"]) * window_bytes / 1e9, 2),
        "materialized_sample_gb": round(min(args.windows, len(series["ends"])) * window_bytes / 1e9, 2),
        **results,
    }
    if "index" in results and "materialize" in results:
        idx, mat = results["index"], results["materialize"]
        report["ratio"] = {
            "speed_index_over_materialize": round(idx["windows_per_s"] / mat["windows_per_s"], 2),
            "peak_rss_materialize_over_index": round(mat["peak_rss_mb"] / idx["peak_rss_mb"], 2),
            "peak_over_baseline_materialize_over_index": round(
                mat["peak_over_baseline_mb"] / max(idx["peak_over_baseline_mb"], 1.0), 1
            ),
        }
    print_table(report, paths)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median speed and the largest peak over the rounds of one path."""
    return {
        "windows": runs[0]["windows"],
        "windows_per_s": round(float(np.median([r["windows_per_s"] for r in runs])), 1),
        "windows_per_s_rounds": [r["windows_per_s"] for r in runs],
        "baseline_rss_mb": round(float(np.median([r["baseline_rss_mb"] for r in runs])), 1),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "peak_over_baseline_mb": max(r["peak_over_baseline_mb"] for r in runs),
        "peak_reset_at_baseline": all(r["peak_reset_at_baseline"] for r in runs),
        "checksums_agree": len({round(r["checksum"], 2) for r in runs}) == 1,
    }


def print_table(report: dict[str, Any], paths: Sequence[str]) -> None:
    lines = [f"{'path':<12} {'windows/s':>12} {'peak RSS MB':>12} {'over baseline MB':>17}"]
    for path in paths:
        r = report[path]
        lines.append(f"{path:<12} {r['windows_per_s']:>12,.0f} {r['peak_rss_mb']:>12,.0f} {r['peak_over_baseline_mb']:>17,.0f}")
    if "ratio" in report:
        lines.append(f"ratio: {report['ratio']}")
    lines.append(f"materializing every window of {report['rows']:,} rows: "
                 f"{report['projected_materialize_all_rows_gb']} GB")
    print("\n".join(lines), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
