"""Adversarial suite against `fabray serve` on 127.0.0.1 (issue 15): what an attacker or a
careless client can do to the service, counted.

    python benchmarks/adversarial.py --work /tmp/fabray-adv                 # this checkout
    python benchmarks/adversarial.py --work /tmp/fabray-adv --src OLD_TREE  # another checkout

It trains a tiny run once (reused from --work), starts `fabray serve` (embedded Ray: 2 CPUs, a
300 MB object store) from `--src` and runs, in order:

1. bad input on every route (absurd but finite values, wrong types, empty / over-long / NUL
   paths, paths outside the data folders, strings for booleans, unknown ids, anonymous
   mutations with bodies): each probe has the statuses it must get;
2. absurd values mixed into clean traffic: 8 clients send clean windows while one sends
   `queue_len = 1e308`: every clean request must be answered 200;
3. 300 stalled connections (headers, then no body): /healthz and a clean predict must still
   answer, and every stalled connection must be answered or closed within 30 s;
4. job floods: 12 batch jobs and 3 retrains at once: no more may run than the limits allow;
5. SIGTERM right after feedback: the stop must be clean (exit 0) and the feedback's weights
   must be there after a restart;
6. kill -9 while an import-and-promote, a rollback, a batch job and a retrain are in flight: after a restart LIVE.json and
   the live version must be intact, no job may stay `running`, no temp copies left.

Counts (all must be 0): `5xx`, `hangs`, `bad_input_accepted` (2xx where a refusal was due),
`wrong_status` (another 4xx than due: e.g. 422 where an anonymous client must get 401),
`leaks` (tracebacks, pids, IPs or server paths in an answer), `clean_failed`, `over_limit`,
`unclean_stops`, `lost` (feedback weights gone after a stop), `stuck_jobs`, `leftovers`.
Prints the counts as JSON and a short table; `--out` writes the JSON.

Measured 2026-11-29 on the shared 2-core machine (load 5-35), same tiny run for both:

    count                 before (c428d1d)   after (issue 15)
    probes                     458                456
    5xx                          5                  0
    hangs                      302                  0
    bad_input_accepted          12                  0
    wrong_status                 2                  0
    leaks                        7                  0
    clean_failed                 0                  0
    over_limit                  12                  0
    unclean_stops                1                  0
    lost                         1                  0
    stuck_jobs                   3                  0
    leftovers                    0                  0

Re-run after the kill -9 round also covered a rollback and a batch job in flight (and the flood's
batch jobs are checked for `running` after the restart), quiet machine, 123 s: 458 probes, every
count 0 (`benchmarks/results/adversarial.json`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parents[1]
TOKEN = "adversarial-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import TINY_CONFIG  # noqa: E402 - the serving benchmark's tiny run (benchmarks/serve.py)
COUNTS = ("probes", "5xx", "hangs", "bad_input_accepted", "wrong_status", "leaks", "clean_failed",
          "over_limit", "unclean_stops", "lost", "stuck_jobs", "leftovers")
LEAK = re.compile(r"Traceback|pid=\d|ip=\d|\bFile \"/|/tmp/|/work/|/home/|/root/|/fabray/serve-store")

# The launcher: a small local Ray first (fabray serve then uses it), then the CLI itself.
LAUNCHER = """
import sys, ray
ray.init(address="local", num_cpus=2, object_store_memory=300 * 1024**2, include_dashboard=False,
         log_to_driver=False)
from fabray.cli import main
sys.exit(main(sys.argv[1:]))
"""


class Tally:
    def __init__(self) -> None:
        self.counts = dict.fromkeys(COUNTS, 0)
        self.notes: list[str] = []

    def bad(self, kind: str, note: str) -> None:
        self.counts[kind] += 1
        self.notes.append(f"{kind}: {note}")


# ---------------------------------------------------------------------------- set-up


def prepare(work: Path) -> tuple[Path, Path]:
    """(data file, trained run) under `work`, made once with this checkout's code."""
    import yaml

    from fabray.data.io import write_table
    from fabray.data.simulate import simulate_preset

    data = work / "data" / "tiny.parquet"
    if not data.is_file():
        data.parent.mkdir(parents=True, exist_ok=True)
        write_table(simulate_preset("tiny", seed=3), data)
    run = work / "runs" / "r1"
    if not (run / "manifest.json").is_file():
        cfg = work / "tiny.yaml"
        cfg.write_text(yaml.safe_dump(TINY_CONFIG))
        shutil.rmtree(run, ignore_errors=True)
        code = subprocess.call([sys.executable, "-c", LAUNCHER, "train", "--data", str(data), "--out", str(run),
                                "--config", str(cfg)], cwd=REPO)
        assert code == 0, "training the tiny run failed"
    return data, run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`fabray serve` from checkout `src` in its own process group (cleaned up by group id)."""

    def __init__(self, src: Path, run: Path, store: Path, log: Path) -> None:
        self.src, self.run, self.store, self.log = src, run, store, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 420) -> None:
        env = {**os.environ, "FABRAY_API_TOKEN": TOKEN, "PYTHONPATH": str(self.src)}
        env.pop("RAY_ADDRESS", None)
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", LAUNCHER, "serve", "--run", str(self.run), "--store", str(self.store),
                 "--port", str(self.port)],
                cwd=self.src, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"fabray serve exited with {self.proc.returncode}; see {self.log}")
            try:
                if requests.get(self.url + "/healthz", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(2)
        raise RuntimeError(f"fabray serve did not become healthy in {timeout_s} s; see {self.log}")

    def stop(self, sig: int = signal.SIGTERM, wait_s: float = 90) -> int | None:
        """Send `sig` to the server process; its exit code (None if it had to be killed); then
        kill whatever is left of its process group (Ray's processes after a kill -9)."""
        assert self.proc is not None
        pgid = os.getpgid(self.proc.pid)
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            code = None
        time.sleep(2)
        try:
            os.killpg(pgid, signal.SIGKILL)  # only the group this script started
        except ProcessLookupError:
            pass
        if code is None:
            self.proc.wait(timeout=30)
        time.sleep(3)  # Ray's workers (their own process groups, our session) follow their raylet
        for pid in session_pids(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return code


def session_pids(sid: int) -> list[int]:
    """Processes of the session `sid` (the server's: it was started with a new session)."""
    out = subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True).stdout
    return [int(pid) for pid, s in (line.split() for line in out.splitlines() if line.strip())
            if int(s) == sid and int(pid) != os.getpid()]


# ---------------------------------------------------------------------------- probes


def windows_of(data: Path) -> dict[str, list[list[float | None]]]:
    import pandas as pd

    from fabray import schema

    df = pd.read_parquet(data)
    return {zone: [[None if np.isnan(v) else float(v) for v in row] for row in g[list(schema.FEATURES)].tail(100).to_numpy()]
            for zone, g in df.groupby("zone")}


def check(t: Tally, name: str, response: requests.Response | None, expect: set[int], error: str = "") -> None:
    t.counts["probes"] += 1
    if response is None:
        t.bad("hangs", f"{name}: no answer ({error})")
        return
    status, text = response.status_code, response.text
    if LEAK.search(text):
        t.bad("leaks", f"{name}: {status} {text[:160]!r}")
    if status >= 500 and status not in expect:
        t.bad("5xx", f"{name}: {status} {text[:160]!r}")
    elif status < 300 and status not in expect:
        t.bad("bad_input_accepted", f"{name}: {status} {text[:120]!r}")
    elif status not in expect:
        t.bad("wrong_status", f"{name}: {status} (due {sorted(expect)}) {text[:120]!r}")


def call(method: str, url: str, timeout: float = 30, **kw) -> tuple[requests.Response | None, str]:
    try:
        return requests.request(method, url, timeout=timeout, **kw), ""
    except requests.RequestException as err:
        return None, type(err).__name__


def bad_inputs(t: Tally, url: str, w: dict, work: Path, outside: Path) -> None:
    from fabray import schema

    zone = sorted(w)[0]
    clean = {"zone": zone, "window": w[zone]}

    def with_value(feature: str, value: float) -> dict:
        rows = [r[:] for r in w[zone]]
        rows[50][schema.FEATURES.index(feature)] = value
        return {"zone": zone, "window": rows}

    big = json.dumps({"windows": [clean] * 60}).encode()  # ~3 MB
    cases = [
        ("predict queue_len 1e308", "POST", "/v1/predict", {"json": with_value("queue_len", 1e308)}, {422}),
        ("predict requests 1e7", "POST", "/v1/predict", {"json": with_value("requests", 1e7)}, {422}),
        ("predict mean_speed -1", "POST", "/v1/predict", {"json": with_value("mean_speed", -1.0)}, {422}),
        ("predict transport 1e12", "POST", "/v1/predict", {"json": with_value("transport_time_s", 1e12)}, {422}),
        ("predict NaN literal", "POST", "/v1/predict",
         {"data": json.dumps(with_value("queue_len", float("nan"))), "headers": {"Content-Type": "application/json"}}, {422}),
        ("predict 10k zone", "POST", "/v1/predict", {"json": {**clean, "zone": "Z" * 10_000}}, {422}),
        ("predict empty list", "POST", "/v1/predict", {"json": []}, {422}),
        ("predict strings", "POST", "/v1/predict", {"json": {"zone": zone, "window": [["1"] * 12] * 100}}, {422}),
        ("predict garbage", "POST", "/v1/predict", {"data": b"\x00\xff{", "headers": {"Content-Type": "text/plain"}}, {400}),
        ("feedback anonymous", "POST", "/v1/feedback", {"json": {"prediction_id": "x", "outcome": 1}}, {401}),
        ("feedback 10k id", "POST", "/v1/feedback", {"json": {"prediction_id": "x" * 10_000, "outcome": 1}, "headers": AUTH}, {422}),
        ("feedback outcome 1e308", "POST", "/v1/feedback", {"json": {"prediction_id": "x", "outcome": 1e308}, "headers": AUTH}, {422}),
        ("retrain anonymous {}", "POST", "/v1/retrain", {"json": {}}, {401}),
        ("batch anonymous 3 MB", "POST", "/v1/batch", {"data": big, "headers": {"Content-Type": "application/json"}}, {401}),
        ("batch path empty", "POST", "/v1/batch", {"json": {"path": ""}, "headers": AUTH}, {422}),
        ("batch path 4000", "POST", "/v1/batch", {"json": {"path": "/" + "a" * 3999}, "headers": AUTH}, {422}),
        ("batch path NUL", "POST", "/v1/batch", {"json": {"path": "a\x00b.csv"}, "headers": AUTH}, {422}),
        ("batch path outside", "POST", "/v1/batch", {"json": {"path": str(outside)}, "headers": AUTH}, {422}),
        ("batch windows+all_windows", "POST", "/v1/batch", {"json": {"windows": [clean], "all_windows": True}, "headers": AUTH}, {422}),
        ("batch all_windows 'yes'", "POST", "/v1/batch",
         {"json": {"path": str(work / "data" / "tiny.parquet"), "all_windows": "yes"}, "headers": AUTH}, {422}),
        ("batch windows 1e308", "POST", "/v1/batch", {"json": {"windows": [with_value("queue_len", 1e308)]}, "headers": AUTH}, {422}),
        ("import run NUL", "POST", "/v1/models", {"json": {"run": "r\x001"}, "headers": AUTH}, {422}),
        ("import run long name", "POST", "/v1/models", {"json": {"run": str(work / ("r" * 300))}, "headers": AUTH}, {422}),
        ("import run 4000", "POST", "/v1/models", {"json": {"run": "/" + "r" * 3999}, "headers": AUTH}, {422}),
        ("import run outside", "POST", "/v1/models", {"json": {"run": "/"}, "headers": AUTH}, {422}),
        ("import promote 'yes'", "POST", "/v1/models", {"json": {"run": str(work / "runs" / "r1"), "promote": "yes"}, "headers": AUTH}, {422}),
        ("promote v999", "POST", "/v1/models/v999/promote", {"json": {}, "headers": AUTH}, {404}),
        ("promote ..%2Fetc", "POST", "/v1/models/..%2F..%2Fetc/promote", {"json": {}, "headers": AUTH}, {404}),
        ("promote force 'yes'", "POST", "/v1/models/v1/promote", {"json": {"force": "yes"}, "headers": AUTH}, {422}),
        ("rollback nothing", "POST", "/v1/rollback", {"json": {}, "headers": AUTH}, {409}),
        ("retrain data empty", "POST", "/v1/retrain", {"json": {"data": ""}, "headers": AUTH}, {422}),
        ("retrain data outside", "POST", "/v1/retrain", {"json": {"data": str(outside)}, "headers": AUTH}, {422}),
        ("retrain epochs '1'", "POST", "/v1/retrain",
         {"json": {"data": str(work / "data" / "tiny.parquet"), "epochs": "1"}, "headers": AUTH}, {422}),
        ("job unknown", "GET", "/v1/jobs/nope", {"headers": AUTH}, {404}),
        ("job unknown well-formed", "GET", "/v1/jobs/batch-20250101T000000-abcdef", {"headers": AUTH}, {404}),
        ("job bad id", "GET", "/v1/jobs/..%2F..%2Fetc", {"headers": AUTH}, {404, 422}),
        ("models listing", "GET", "/v1/models", {}, {200}),
        ("unknown route", "GET", "/v1/nothing", {}, {404}),
        ("unknown version 404", "POST", "/v1/models/v12345/promote", {"json": {}, "headers": AUTH}, {404}),
    ]
    for name, method, path, kw, expect in cases:
        response, error = call(method, url + path, **kw)
        check(t, name, response, expect, error)


def absurd_in_clean_traffic(t: Tally, url: str, w: dict) -> None:
    from fabray import schema

    zones = sorted(w)
    poison = [r[:] for r in w[zones[0]]]
    for r in poison[-10:]:
        r[schema.FEATURES.index("queue_len")] = 1e308
    stop = threading.Event()

    def attacker() -> None:
        with requests.Session() as s:
            while not stop.is_set():
                try:
                    s.post(url + "/v1/predict", json={"zone": zones[0], "window": poison}, timeout=30)
                except requests.RequestException:
                    pass

    def client(i: int) -> list[int | str]:
        codes = []
        with requests.Session() as s:
            for _ in range(12):
                try:
                    codes.append(s.post(url + "/v1/predict", json={"zone": zones[i % len(zones)],
                                                                   "window": w[zones[i % len(zones)]]}, timeout=60).status_code)
                except requests.RequestException as err:
                    codes.append(type(err).__name__)
        return codes

    attackers = [threading.Thread(target=attacker) for _ in range(2)]
    for a in attackers:
        a.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            codes = [c for cs in pool.map(client, range(8)) for c in cs]
    finally:
        stop.set()
        for a in attackers:
            a.join(timeout=60)
    t.counts["probes"] += len(codes)
    for code in codes:
        if code != 200:
            t.bad("clean_failed", f"clean predict beside 1e308 windows: {code}")


def stalled_connections(t: Tally, url: str, w: dict, n: int) -> None:
    host, port = url.removeprefix("http://").split(":")
    socks = []
    head = (f"POST /v1/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: 100000\r\n\r\n{{\"zone\": ").encode()
    for _ in range(n):
        try:
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(head)
            s.setblocking(False)
            socks.append(s)
        except OSError as err:
            t.bad("hangs", f"could not open a connection: {err}")
            break
    time.sleep(2)
    zone = sorted(w)[0]
    response, error = call("GET", url + "/healthz", timeout=10)
    check(t, f"healthz with {len(socks)} stalled connections", response, {200}, error)
    response, error = call("POST", url + "/v1/predict", json={"zone": zone, "window": w[zone]}, timeout=30)
    check(t, f"clean predict with {len(socks)} stalled connections", response, {200}, error)
    deadline = time.time() + 30
    open_socks = set(range(len(socks)))
    while open_socks and time.time() < deadline:
        for i in list(open_socks):
            try:
                data = socks[i].recv(65536)
                if not data or b"HTTP/1.1" in data:
                    open_socks.discard(i)
            except BlockingIOError:
                pass
            except OSError:
                open_socks.discard(i)
        time.sleep(0.5)
    t.counts["probes"] += len(socks)
    if open_socks:
        t.counts["hangs"] += len(open_socks)
        t.notes.append(f"hangs: {len(open_socks)} of {len(socks)} stalled connections still open after 30 s")
    for s in socks:
        s.close()


def job_floods(t: Tally, url: str, data: Path) -> list[str]:
    def submit(path: str, body: dict) -> int | str:
        try:
            r = requests.post(url + path, json=body, headers=AUTH, timeout=120)
            return r.status_code if r.status_code != 200 else f"ok:{r.json()['job_id']}"
        except requests.RequestException as err:
            return type(err).__name__

    with ThreadPoolExecutor(12) as pool:
        batch = list(pool.map(lambda _: submit("/v1/batch", {"path": str(data)}), range(12)))
    with ThreadPoolExecutor(3) as pool:
        retrain = list(pool.map(lambda _: submit("/v1/retrain", {"data": str(data), "epochs": 1}), range(3)))
    for name, codes, limit in (("batch", batch, 2), ("retrain", retrain, 1)):
        accepted = [c for c in codes if isinstance(c, str) and c.startswith("ok:")]
        t.counts["probes"] += len(codes)
        for c in codes:
            if isinstance(c, int) and c >= 500:
                t.bad("5xx", f"{name} flood: {c}")
            elif not isinstance(c, int) and not c.startswith("ok:"):
                t.bad("hangs", f"{name} flood: {c}")
        if len(accepted) > limit:
            t.counts["over_limit"] += len(accepted) - limit
            t.notes.append(f"over_limit: {len(accepted)} of {len(codes)} {name} jobs accepted at once (limit {limit})")
    return [c[3:] for c in (*batch, *retrain) if isinstance(c, str) and c.startswith("ok:")]


def feedback_then_sigterm(t: Tally, server: Server, w: dict) -> tuple[str, dict]:
    zone = sorted(w)[-1]
    answers = [requests.post(server.url + "/v1/predict", json={"zone": zone, "window": w[zone]}, timeout=60).json()
               for _ in range(6)]
    lstm, rule = answers[0]["scores"]["lstm"], answers[0]["scores"]["rule"]
    outcome = 1 if lstm > rule else 0
    r = requests.post(server.url + "/v1/feedback", headers=AUTH, timeout=60,
                      json=[{"prediction_id": a["prediction_id"], "outcome": outcome} for a in answers])
    moved = r.json()["weights"][answers[0]["model_version"]][zone]
    code = server.stop(signal.SIGTERM)
    t.counts["probes"] += 1
    if code != 0:
        t.bad("unclean_stops", f"SIGTERM: exit code {code}")
    return zone, moved


def kill9_during_mutations(t: Tally, server: Server, work: Path, data: Path) -> None:
    """An import-and-promote, a rollback and a batch job in flight (the flood's retrain and batch
    jobs may be running too), then kill -9."""
    r2 = work / "runs" / f"r2-{int(time.time())}"
    shutil.copytree(work / "runs" / "r1", r2, ignore=shutil.ignore_patterns("ray"))
    manifest = json.loads((r2 / "manifest.json").read_text())
    manifest["run_id"] = r2.name
    (r2 / "manifest.json").write_text(json.dumps(manifest))
    threading.Thread(target=call, args=("POST", server.url + "/v1/models"),
                     kwargs={"json": {"run": str(r2), "promote": True}, "headers": AUTH, "timeout": 120},
                     daemon=True).start()
    threading.Thread(target=call, args=("POST", server.url + "/v1/rollback"),
                     kwargs={"json": {"reason": "adversarial"}, "headers": AUTH, "timeout": 120},
                     daemon=True).start()
    threading.Thread(target=call, args=("POST", server.url + "/v1/batch"),
                     kwargs={"json": {"path": str(data)}, "headers": AUTH, "timeout": 120},
                     daemon=True).start()
    time.sleep(0.4)
    server.stop(signal.SIGKILL, wait_s=30)


def weights_kept(t: Tally, server: Server, zone: str, moved: dict, w: dict) -> None:
    answer = requests.post(server.url + "/v1/predict", json={"zone": zone, "window": w[zone]}, timeout=60).json()
    t.counts["probes"] += 1
    if not all(abs(answer["weights"][m] - moved[m]) < 1e-6 for m in moved):
        t.bad("lost", f"feedback weights after SIGTERM + restart: {answer['weights']} != {moved}")


def after_restart(t: Tally, server: Server, jobs: list[str]) -> None:
    from fabray.serve.store import ModelStore

    store = ModelStore(server.store)
    try:
        live = store.live()
        store.verify(live)
    except Exception as err:  # noqa: BLE001 - counted
        t.bad("lost", f"live version after kill -9: {err}")
    # another import: it must find no half-copied versions left behind
    call("POST", server.url + "/v1/models", json={"run": str(server.run), "promote": False}, headers=AUTH, timeout=120)
    leftovers = [p.name for p in store.versions_dir.iterdir() if p.name.startswith(".")]
    if leftovers:
        t.counts["leftovers"] += len(leftovers)
        t.notes.append(f"leftovers: {leftovers}")
    time.sleep(20)
    for job_id in jobs:
        response, _ = call("GET", server.url + f"/v1/jobs/{job_id}", headers=AUTH, timeout=30)
        t.counts["probes"] += 1
        status = response.json().get("status") if response is not None and response.status_code == 200 else None
        if status in ("pending", "running"):
            t.bad("stuck_jobs", f"{job_id} still {status} after kill -9 and restart")


def reversed_call(url: str) -> tuple[requests.Response | None]:
    response, _ = call("GET", url, timeout=10)
    return (response,)


def progress(stage: str, t: Tally) -> None:
    failures = {k: v for k, v in t.counts.items() if v and k != "probes"}
    print(f"[adversarial] {time.strftime('%H:%M:%S')} {stage} (so far: {failures or 'no failures'})",
          file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="work folder (data, run, store, logs)")
    parser.add_argument("--src", default=str(REPO), help="checkout whose fabray is served (default: this one)")
    parser.add_argument("--label", default="this", help="name of this measurement in the output")
    parser.add_argument("--stalled", type=int, default=300, help="stalled connections to open")
    parser.add_argument("--out", default=None, help="also write the counts as JSON here")
    args = parser.parse_args(argv)

    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data, run = prepare(work)
    outside = work.parent / "adversarial-outside.csv"
    outside.write_text("timestamp,zone,secret_column\n2025-01-01T00:00,Z01,not-for-clients\n")
    store = work / f"store-{args.label}"
    shutil.rmtree(store, ignore_errors=True)
    log = work / f"serve-{args.label}.log"
    log.unlink(missing_ok=True)
    t = Tally()
    w = windows_of(data)
    server = Server(Path(args.src).resolve(), run, store, log)
    started = time.time()
    stages = [
        ("bad input on every route", lambda: bad_inputs(t, server.url, w, work, outside)),
        ("1e308 windows among clean traffic", lambda: absurd_in_clean_traffic(t, server.url, w)),
        (f"{args.stalled} stalled connections", lambda: stalled_connections(t, server.url, w, args.stalled)),
        ("healthz afterwards", lambda: check(t, "healthz after the stalled connections",
                                             *reversed_call(server.url + "/healthz"), {200})),
    ]
    server.start()
    try:
        for name, stage in stages:
            progress(name, t)
            stage()
        progress("feedback, then SIGTERM", t)
        zone, moved = feedback_then_sigterm(t, server, w)
        server.start()
        weights_kept(t, server, zone, moved, w)
        progress("job floods", t)
        jobs = job_floods(t, server.url, data)
        progress("kill -9 during import+promote, rollback, batch and retrain", t)
        kill9_during_mutations(t, server, work, data)
        server.start()
        after_restart(t, server, jobs)
        progress("done", t)
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.stop(signal.SIGTERM)
    result = {"label": args.label, "src": str(args.src), "seconds": round(time.time() - started, 1),
              "counts": t.counts, "notes": t.notes}
    print(json.dumps(result, indent=2))
    print(f"\n{'count':<22}{args.label:>10}")
    for key in COUNTS:
        print(f"{key:<22}{t.counts[key]:>10}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    failures = sum(v for k, v in t.counts.items() if k != "probes")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
