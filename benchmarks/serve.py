"""Serving speed: HTTP through Ray Serve vs the same models and ensemble called in-process.

    python benchmarks/serve.py [--run RUN] [--zoo default|run] [--requests 300] [--clients 16]
                               [--batches 1000] [--batch-windows 32] [--json OUT]

Without --run, a tiny run is trained first (two small models, one epoch, ~2-3 min here). With
`--zoo default` (the default) the service holds the six models at their DESIGN §3 default sizes
(untrained weights, the run's preprocessing): the model sizes production serves, without hours of
CPU training; `--zoo run` serves the run's own models. Everything runs in one invocation, so each
figure comes with its in-process baseline measured on the same machine at the same time:

- `inprocess_one`:  one window → check + `ServingBundle.score_full` (the zoo and the rules that
                    fired, one compiled call) + the combine with a local copy of the weights (the
                    exact work of the predictor replica, without Serve), sequential;
- `http_one_seq`:   POST /v1/predict of one window, one client, sequential, each request
                    paired with an `inprocess_one` call (the same load for both);
- `http_one_c16`:   the same from `--clients` concurrent clients (@serve.batch groups them;
                    `deadline_degraded` counts the answers the default deadline left to the rules);
- `inprocess_32`:   the seed's batch load in-process: `--batches` × `--batch-windows` windows;
- `http_lists_32`:  the same load as `--batches` POST /v1/predict of `--batch-windows` windows
                    each, from 4 concurrent clients;
- `batch_job`:      the batch path end to end: POST /v1/batch of a data file with every
                    complete window (≈ batches × batch-windows), Ray Data, Parquet out, polled
                    until done; vs `inprocess_file` scoring the same windows in-process;
- `http_feed_minute`: a full-fab minute: every zone's row in one POST /v1/observe (all zones
                    scored, outcomes derived, the feed's state written before the answer),
                    `--feed-minutes` of them after 100 that fill the windows (issue 13).

Goals (issue 6, issue 13 item 5): p99 of one window over HTTP <= 40 ms; HTTP p50 <= 1.5 ×
in-process p50; 16 clients without errors; batch path throughput >= 0.9 × in-process. Since issue
13 item 5 /v1/predict makes one Serve hop (proxy → Predictor replica: checks, scores, combines).
Printed: a table (stderr) and JSON (stdout, and --json).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

logger = logging.getLogger("benchmarks.serve")

TINY_CONFIG = {
    "train": {
        "epochs": 1, "batch_size": 256, "models": ["lstm", "rule"], "resources": {"cpus": 0.5},
        "shuffle_buffer": 2000,
        "model_overrides": {"lstm": {"lstm_units": [8], "head_units": [8]},
                            "rule": {"lstm_units": 4, "head_units": [4]}},
    }
}


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000.0
    return {"n": int(ms.size), "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean())}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_data(workdir: Path, repeats: int = 1) -> Path:
    """The `tiny` fab (4 zones × 3 days, the tests' data), its days repeated `repeats` times in a
    row (same zones, so a run trained on it knows them; the minutes stay consecutive)."""
    import pandas as pd

    from fabray.data.io import write_table
    from fabray.data.simulate import simulate_preset

    path = workdir / f"fab-x{repeats}.parquet"
    if not path.exists():
        base = simulate_preset("tiny", seed=3)
        span = base["timestamp"].max() - base["timestamp"].min() + pd.Timedelta(minutes=1)
        parts = [base.assign(timestamp=base["timestamp"] + k * span) for k in range(repeats)]
        write_table(pd.concat(parts).sort_values(["zone", "timestamp"]).reset_index(drop=True), path)
    return path


def train_tiny_run(workdir: Path, data: Path) -> Path:
    import yaml

    from fabray.cli import main

    cfg = workdir / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY_CONFIG))
    run = workdir / "run"
    if main(["train", "--data", str(data), "--out", str(run), "--config", str(cfg)]) != 0:
        raise SystemExit("training the tiny run failed")
    return run


def default_zoo_run(template: Path, out: Path) -> Path:
    """A run directory holding the six models at their DEFAULT sizes (untrained weights: latency
    does not depend on them), with the template run's preprocessing, so that serving is measured
    at the model sizes of DESIGN §3 without hours of CPU training."""
    import shutil

    from fabray.config import FabrayConfig
    from fabray.data.scaler import Scaler
    from fabray.models import MODELS, build_model
    from fabray.run import MANIFEST_VERSION
    from fabray.train.prepare import effective_overrides

    if (out / "manifest.json").exists() and "ensemble" not in json.loads((out / "manifest.json").read_text()):
        return out
    manifest = json.loads((template / "manifest.json").read_text())
    first = next(iter(manifest["models"].values()))
    prep = json.loads((template / first["preprocessing"]).read_text())
    scaler = Scaler.from_dict(prep["scaler"])
    overrides = effective_overrides(FabrayConfig(), list(MODELS))
    entries = {}
    for name in MODELS:
        folder = out / "models" / name
        folder.mkdir(parents=True, exist_ok=True)
        model = build_model(name, prep["lookback"], len(scaler.features), overrides[name], scaler)
        model.save(folder / "model.keras")
        shutil.copyfile(template / first["preprocessing"], folder / "preprocessing.json")
        entries[name] = {"status": "ok", "params": int(model.count_params()),
                         "model": f"models/{name}/model.keras", "preprocessing": f"models/{name}/preprocessing.json"}
    manifest.update(models=entries, run_id="default-zoo-untrained", format_version=MANIFEST_VERSION)
    manifest.pop("config", None)
    # the template's fitted ensemble (ensemble.json, not copied) is for its own models, not these
    # six: the zoo is served with the configured ensemble (it failed to load before: issue 13)
    manifest.pop("ensemble", None)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


def windows_of(data: Path, lookback: int) -> tuple[list[str], list[list[list[float | None]]]]:
    import pandas as pd

    from fabray import schema

    df = pd.read_parquet(data)
    zones, windows = [], []
    for zone, g in df.groupby("zone"):
        values = g[list(schema.FEATURES)].tail(lookback).to_numpy()
        zones.append(str(zone))
        windows.append([[None if np.isnan(v) else float(v) for v in row] for row in values])
    return zones, windows


# ---------------------------------------------------------------------------- in-process


def inprocess(store_dir: Path, version: str, zones: list[str], windows: list, args: argparse.Namespace,
              data: Path) -> dict[str, Any]:
    from fabray.config import ServeConfig
    from fabray.serve.answers import ScoredBatch, answer
    from fabray.serve.bundle import ServingBundle
    from fabray.serve.keeper import EnsembleKeeper
    from fabray.serve.local_ensemble import LocalEnsembles
    from fabray.serve.store import ModelStore
    from fabray.serve.validation import check_window

    store = ModelStore(store_dir)
    bundle = ServingBundle.load(store, version)
    keeper = EnsembleKeeper(None, 100_000)
    keeper.ensure(version, bundle.fitted_state, bundle.ensemble_params, list(bundle.model_names))
    local = LocalEnsembles(100_000)  # the predictor replica's copy of the weights
    local.apply(version, keeper.sync(version, None, -1))
    rules = ServeConfig().degraded
    lookback = bundle.predictor.lookback

    def inputs(values: np.ndarray, window_zones: list[str]) -> np.ndarray:
        """Observed windows [B, L, 12] → the models' raw inputs, with the context columns built as
        the HTTP route builds them for a window without timestamp or neighbours (ends now)."""
        if bundle.predictor.context is None:
            return values
        now = np.datetime64(time.strftime("%Y-%m-%dT%H:%M"), "m")
        return bundle.predictor.window_inputs(values, zones=window_zones, end_times=[now] * len(values))

    def one(i: int) -> None:
        """The predictor replica's work for one window, without Serve: check, the zoo and its
        rules in one compiled call, the ensemble combined with the local copy of the weights."""
        zone = zones[i % len(zones)]
        checked = check_window(windows[i % len(windows)], lookback=lookback, rules=rules)
        x = inputs(checked.values[None], [zone])  # [1, L, F]
        scores, rule_scores, fired = bundle.score_full(x)
        batch = ScoredBatch(version=version, run_id=bundle.run_id, threshold=bundle.threshold,
                            model_names=tuple(bundle.model_names), scores=scores, rules=rule_scores,
                            fired=bundle.rules_fired(fired), fast=np.zeros(1, dtype=bool),
                            last_rows=np.asarray(x[:, -1, :], dtype=np.float64))
        answer(batch, [zone], [checked.degraded_reasons], local.combine)
        local.queue.take()  # the replica sends these to the keeper in the background

    for i in range(20):  # warm-up
        one(i)
    out: dict[str, Any] = {"_one": one}

    stack = np.stack([check_window(w, lookback=lookback, rules=rules).values for w in windows])  # [Z, L, 12]
    reps = -(-args.batch_windows // len(windows))
    batch = inputs(np.concatenate([stack] * reps)[: args.batch_windows],
                   [zones[i % len(zones)] for i in range(args.batch_windows)])  # [32, L, F]
    start = time.perf_counter()
    for _ in range(args.batches):
        scores, rule_scores = bundle.score(batch)
        keeper.combine(version, [zones[i % len(zones)] for i in range(len(batch))], scores, rule_scores,
                       [False] * len(batch))
    seconds = time.perf_counter() - start
    n = args.batches * args.batch_windows
    out["inprocess_32"] = {"windows": n, "seconds": seconds, "windows_per_s": n / seconds,
                           "load_avg_1m": os.getloadavg()[0]}

    from fabray.data.validate import load_validated
    from fabray.data.windows import ALL

    prepared = bundle.predictor.prepare(load_validated(data))
    ends = prepared.splits[ALL]
    start = time.perf_counter()
    bundle.predictor.score_prepared(prepared, ends, batch_size=ServeConfig().batch_size_windows, progress=False)
    seconds = time.perf_counter() - start
    out["inprocess_file"] = {"windows": int(ends.size), "seconds": seconds, "windows_per_s": ends.size / seconds,
                             "load_avg_1m": os.getloadavg()[0]}
    return out


# ---------------------------------------------------------------------------- over HTTP


def http_sequential(url: str, zones: list[str], windows: list, n: int, inprocess_one: Any) -> dict[str, Any]:
    """One window at a time over HTTP, each request followed by the same window in-process, so
    both see the same machine load (the ratio survives a load that changes over minutes)."""
    import requests

    http, local = [], []
    with requests.Session() as session:
        for i in range(20):
            session.post(url + "/v1/predict", json={"zone": zones[i % len(zones)], "window": windows[i % len(windows)]})
        for i in range(n):
            body = {"zone": zones[i % len(zones)], "window": windows[i % len(windows)]}
            start = time.perf_counter()
            r = session.post(url + "/v1/predict", json=body)
            http.append(time.perf_counter() - start)
            r.raise_for_status()
            start = time.perf_counter()
            inprocess_one(i)
            local.append(time.perf_counter() - start)
    return {"http": percentiles(http), "inprocess": percentiles(local)}


def http_concurrent(url: str, zones: list[str], windows: list, n: int, clients: int,
                    windows_per_request: int = 1) -> dict[str, Any]:
    import requests

    times: list[float] = []
    errors: list[str] = []
    late: list[dict] = []  # answered by the rules model alone: the deadline (serve.deadline_ms) came first
    lock = threading.Lock()
    per_client = -(-n // clients)

    def client(k: int) -> None:
        with requests.Session() as session:
            for i in range(per_client):
                j = k * per_client + i
                if windows_per_request == 1:
                    body: Any = {"zone": zones[j % len(zones)], "window": windows[j % len(windows)]}
                else:
                    body = [{"zone": zones[(j + m) % len(zones)], "window": windows[(j + m) % len(windows)]}
                            for m in range(windows_per_request)]
                start = time.perf_counter()
                r = session.post(url + "/v1/predict", json=body)
                elapsed = time.perf_counter() - start
                with lock:
                    times.append(elapsed)
                    if r.status_code != 200:
                        errors.append(r.text[:200])
                    else:
                        answers = r.json() if isinstance(r.json(), list) else [r.json()]
                        late.extend(a for a in answers if any(w.startswith("deadline:")
                                                              for w in a["degraded_reasons"]))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    out = percentiles(times)
    out.update(clients=clients, errors=len(errors), deadline_degraded=len(late), seconds=wall,
               load_avg_1m=os.getloadavg()[0],
               windows=len(times) * windows_per_request, windows_per_s=len(times) * windows_per_request / wall)
    return out


def batch_job(url: str, data: Path, token: str) -> dict[str, Any]:
    import requests

    headers = {"Authorization": f"Bearer {token}"}
    start = time.perf_counter()
    r = requests.post(url + "/v1/batch", json={"path": str(data), "all_windows": True}, headers=headers)
    r.raise_for_status()
    job = r.json()["job_id"]
    while True:
        status = requests.get(f"{url}/v1/batch/{job}", headers=headers).json()  # token required
        if status["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    if status["status"] != "succeeded":
        raise SystemExit(f"batch job failed: {status.get('error')}")
    return {"windows": status["n_windows"], "seconds": seconds, "windows_per_s": status["n_windows"] / seconds,
            "job_seconds": status.get("seconds"), "load_avg_1m": os.getloadavg()[0]}


def http_feed_minute(url: str, data: Path, token: str, warm_minutes: int, minutes: int) -> dict[str, Any]:
    """A full-fab minute over HTTP: every zone's row of one minute in one POST /v1/observe (all
    zones scored, outcomes derived, state written before the answer). The first `warm_minutes`
    fill the windows (not timed); the next `minutes` are."""
    import pandas as pd
    import requests

    from fabray.serve.client import feed_minutes

    headers = {"Authorization": f"Bearer {token}"}
    times, zones_scored, errors = [], [], 0
    with requests.Session() as session:
        for i, (_, rows) in enumerate(feed_minutes(pd.read_parquet(data))):
            if i >= warm_minutes + minutes:
                break
            start = time.perf_counter()
            r = session.post(url + "/v1/observe", json={"rows": rows}, headers=headers)
            elapsed = time.perf_counter() - start
            if r.status_code != 200:
                errors += 1
                continue
            if i >= warm_minutes:
                times.append(elapsed)
                zones_scored.append(sum(z["status"] == "scored" for z in r.json()["zones"]))
    out = percentiles(times)
    out.update(minutes=len(times), zones=len(rows), zones_scored_min=min(zones_scored, default=0), errors=errors,
               load_avg_1m=os.getloadavg()[0])
    return out


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default=None, help="run directory (default: train a tiny one)")
    parser.add_argument("--requests", type=int, default=300, help="one-window requests per latency figure")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--batches", type=int, default=1000, help="batches of the seed's batch load")
    parser.add_argument("--batch-windows", type=int, default=32, help="windows per batch")
    parser.add_argument("--zoo", default="default", choices=["default", "run"],
                        help="'default': the six models at their default sizes (untrained) with the "
                        "run's preprocessing; 'run': the run's own models")
    parser.add_argument("--feed-minutes", type=int, default=100,
                        help="full-fab minutes timed through POST /v1/observe (after 100 that fill the windows)")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--workdir", default=None, help="where data, run and store go (default: a temp dir)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    import ray
    from ray import serve

    from fabray.serve.app import build_app
    from fabray.serve.store import ModelStore

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="fabray-bench-serve-"))
    workdir.mkdir(parents=True, exist_ok=True)
    small = make_data(workdir)
    # a file with about batches × batch_windows complete windows (4 zones × 4,320 minutes a copy)
    big = make_data(workdir, max(1, round(args.batches * args.batch_windows / (4 * 4320))))
    token = "bench-token-0123456789abcdef"
    (workdir / "token").write_text(token)

    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        run = Path(args.run) if args.run else (workdir / "run" if (workdir / "run").exists()
                                               else train_tiny_run(workdir, small))
        if args.zoo == "default":
            run = default_zoo_run(run, workdir / "default-zoo")
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        store_dir = workdir / "store"
        serve.run(build_app({"store": str(store_dir), "run": str(run),
                             "serve": {"api_token_file": str(workdir / "token"), "predictor_num_cpus": 0.5}}),
                  name="fabray", route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        version = ModelStore(store_dir).live()
        zones, windows = windows_of(small, 100)

        results: dict[str, Any] = {"run": str(run), "zoo": args.zoo, "version": version, "machine_cpus": os.cpu_count(),
                                   "load_avg_1m_start": os.getloadavg()[0]}
        local = inprocess(store_dir, version, zones, windows, args, big)
        one = local.pop("_one")
        results.update(local)
        paired = http_sequential(url, zones, windows, args.requests, one)
        results["inprocess_one"], results["http_one_seq"] = paired["inprocess"], paired["http"]
        results["http_one_c16"] = http_concurrent(url, zones, windows, args.requests, args.clients)
        results["http_lists_32"] = http_concurrent(url, zones, windows, args.batches, 4, args.batch_windows)
        results["batch_job"] = batch_job(url, big, token)
        results["http_feed_minute"] = http_feed_minute(url, small, token, 100, args.feed_minutes)
        results["load_avg_1m_end"] = os.getloadavg()[0]
        results["ratios"] = {
            "http_seq_p50_over_inprocess_p50": results["http_one_seq"]["p50_ms"] / results["inprocess_one"]["p50_ms"],
            "http_lists_over_inprocess_throughput": results["http_lists_32"]["windows_per_s"]
            / results["inprocess_32"]["windows_per_s"],
            "batch_job_over_inprocess_throughput": results["batch_job"]["windows_per_s"]
            / results["inprocess_file"]["windows_per_s"],
        }
        results["goals"] = {
            "p99_one_window_le_40ms": max(results["http_one_seq"]["p99_ms"], results["http_one_c16"]["p99_ms"]) <= 40.0,
            "p50_le_1.5x_inprocess": results["ratios"]["http_seq_p50_over_inprocess_p50"] <= 1.5,
            "batch_ge_0.9x_inprocess": results["ratios"]["batch_job_over_inprocess_throughput"] >= 0.9,
            "clients_without_errors": results["http_one_c16"]["errors"] == 0,
        }
    finally:
        serve.shutdown()
        ray.shutdown()

    table = [
        ("in-process, 1 window", results["inprocess_one"]),
        ("HTTP, 1 window, sequential", results["http_one_seq"]),
        (f"HTTP, 1 window, {args.clients} clients", results["http_one_c16"]),
        (f"HTTP, full-fab minute ({results['http_feed_minute']['zones']} zones)", results["http_feed_minute"]),
    ]
    print(f"{'':36} {'p50 ms':>8} {'p99 ms':>8}", file=sys.stderr)
    for name, row in table:
        print(f"{name:36} {row['p50_ms']:8.1f} {row['p99_ms']:8.1f}", file=sys.stderr)
    for name, key in (("in-process, batches of 32", "inprocess_32"), ("HTTP lists of 32, 4 clients", "http_lists_32"),
                      ("in-process, data file", "inprocess_file"), ("batch job (Ray Data), data file", "batch_job")):
        row = results[key]
        print(f"{name:36} {row['windows_per_s']:10.0f} windows/s ({row['windows']} in {row['seconds']:.1f} s)",
              file=sys.stderr)
    for name, value in results["ratios"].items():
        print(f"{name:44} {value:6.2f}", file=sys.stderr)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
