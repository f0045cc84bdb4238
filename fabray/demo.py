"""`fabray demo`: the whole chain on a small simulated fab, each stage the library call its
command makes.

simulate → validate → windows → train (six models at once on an embedded Ray) → fit the dynamic
ensemble with Ray Tune → evaluate against the baselines and write a report → serve a few
predictions over HTTP → replay the held-out part of the data into the server's live feed minute
by minute (`fabray replay`), print the alerts it raised with their lead times and save the zone
board's screenshot (`report/board.png`, when Chromium is installed). Every file it makes goes
under `workdir` (the config it used included), so a person can open them afterwards and re-run
any stage by hand.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import yaml

from fabray.config import FabrayConfig, load_config
from fabray.data import io
from fabray.data.simulate import simulate_preset, summarize
from fabray.data.validate import load_validated
from fabray.data.windows import PreparedData, prepare

logger = logging.getLogger(__name__)

#: Small models and few epochs: the demo shows the chain in minutes on a 2-core laptop. The
#: full-size models are `fabray train`'s defaults.
DEMO_CONFIG: dict = {
    "train": {
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
    },
}
DEMO_STAGES = 7
#: The replay of the held-out part: at most this many scored minutes (after `lookback` minutes
#: that fill the server's buffers), fed as fast as the server answers.
DEMO_REPLAY_MINUTES = 480


def window_summary(prepared: PreparedData) -> str:
    """A few lines on the windows: per split, count, event share and time span."""
    lines = [f"windows: lookback {prepared.lookback} min, horizon {prepared.horizon} min, "
             f"{len(prepared.zones)} zones, {prepared.n_rows:,} rows"]
    for name, ends in prepared.splits.items():
        if len(ends) == 0:
            lines.append(f"  {name:<5} 0 windows")
            continue
        target = prepared.target[ends]
        stamps = prepared.timestamps[ends]
        lines.append(
            f"  {name:<5} {len(ends):>9,} windows  events {np.nanmean(target):6.1%}  "
            f"{np.datetime_as_string(stamps.min(), unit='m')} → "
            f"{np.datetime_as_string(stamps.max(), unit='m')}"
        )
    return "\n".join(lines)


def _stage(number: int, text: str) -> None:
    print(f"[{number}/{DEMO_STAGES}] {text}")


def _indent(text: str) -> str:
    return "      " + text.replace("\n", "\n      ")


def run_demo(workdir: str | Path, *, seed: int = 7, num_cpus: int = 2, trials: int = 16,
             serve: bool = True) -> Path:
    """Run the chain into `workdir` (its earlier demo run is replaced); return the run directory."""
    from fabray.evaluate import evaluate_run, leaderboard_text, write_outputs
    from fabray.ray_session import ray_session
    from fabray.train.driver import train_models
    from fabray.train.prepare import prepare_run
    from fabray.ensemble.fit import fit_ensemble

    workdir = Path(workdir)
    run_dir = workdir / "run"
    if run_dir.exists():  # only the demo's own earlier run: `fabray train` never overwrites
        shutil.rmtree(run_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "demo.yaml"
    config_path.write_text(yaml.safe_dump(DEMO_CONFIG, sort_keys=False))
    config: FabrayConfig = load_config(config_path)
    data_path = workdir / "fab.parquet"

    _stage(1, f"simulating a small fab (preset tiny, seed {seed}) → {data_path}")
    frame = simulate_preset("tiny", seed=seed, config=config.simulation)
    io.write_table(frame, data_path)
    print(_indent(summarize(frame, config.task).line()))

    _stage(2, f"validating {data_path}; index-based windows, split by time with a leak-free gap")
    frame = load_validated(data_path)
    prepared = prepare(frame, config.task, config.split)
    print(_indent(window_summary(prepared)))
    held_out_start = prepared.timestamps[prepared.splits["test"]].min() if len(prepared.splits["test"]) else None

    with ray_session(num_cpus=num_cpus) as session:
        _stage(3, f"training {', '.join(config.train.models)} at once on Ray Train → {run_dir}")
        job = prepare_run(data_path, run_dir, config)
        summary = train_models(job, can_autoscale=session.joined)
        print(_indent(summary.table()))
        if not summary.ok:
            raise RuntimeError(f"training failed for {summary.failed}; see {run_dir}/manifest.json")

        _stage(4, f"fitting the dynamic ensemble with Ray Tune ({trials} trials)")
        fit = fit_ensemble(run_dir, trials=trials, seed=seed)
        print(_indent(fit.table()))

    report_dir = workdir / "report"
    _stage(5, f"evaluating on the held-out test split → {report_dir}/report.md")
    result = evaluate_run(run_dir, data_path)
    write_outputs(result, json_path=workdir / "metrics.json", report_dir=report_dir)
    print(_indent(leaderboard_text(result)))

    if serve:
        _stage(6, "serving: a few predictions over HTTP on 127.0.0.1")
        _serve_demo(run_dir, data_path, config, num_cpus=num_cpus, workdir=workdir, report_dir=report_dir,
                    held_out_start=held_out_start)
    print(f"done: everything is under {workdir}")
    return run_dir


def _serve_demo(run_dir: Path, data_path: Path, config: FabrayConfig, *, num_cpus: int, workdir: Path,
                report_dir: Path, held_out_start: np.datetime64 | None) -> None:
    """Start the service on its own Ray, send each zone's latest window, print the answers,
    replay the held-out part into the live feed (`_replay_demo`), stop."""
    import json
    import secrets
    import socket
    import urllib.request

    from fabray import schema
    from fabray.data.context import ContextSpec, neighbours_of
    from fabray.serve.client import predict_body
    from fabray.serve.runner import serving

    frame = load_validated(data_path)
    with socket.socket() as probe:  # a free port on 127.0.0.1, so the demo never meets a busy 8000
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token_file = workdir / "api-token"  # the live feed's route needs a token: one for this demo
    token_file.write_text(secrets.token_hex(16))
    token_file.chmod(0o600)
    overrides = {"port": port, "api_token_file": str(token_file)}
    with serving(run_dir, overrides=overrides, num_cpus=num_cpus) as url:
        print(_indent(f"serving {run_dir} on {url} (API docs: {url}/docs)"))
        zones = sorted(frame[schema.ZONE].unique())
        context = ContextSpec.from_site(config.site, config.task.horizon, list(frame.columns))
        for zone in zones:
            body = predict_body(frame, zone, lookback=config.task.lookback, horizon=config.task.horizon,
                                neighbours=neighbours_of(context, zones, zone))
            request = urllib.request.Request(
                f"{url}/v1/predict", data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"}, method="POST",
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                answer = json.load(response)
            weights = ", ".join(f"{k} {v:.2f}" for k, v in answer["weights"].items())
            print(_indent(
                f"POST /v1/predict zone {zone}: probability {answer['probability']:.3f} → "
                f"{'DELAY ALARM' if answer['decision'] else 'no alarm'} "
                f"(model {answer['model_version']}, degraded {answer['degraded']}; weights {weights})"
            ))
        if held_out_start is not None:
            _replay_demo(url, frame, config, token_file.read_text(), held_out_start, report_dir)
    print(_indent("service stopped"))


def replay_slice(frame, start: np.datetime64, lookback: int, minutes: int):
    """The rows the demo replays: `lookback` - 1 minutes before `start` (they fill the server's
    buffers, so `start` is the first minute scored), then at most `minutes` minutes from it."""
    import pandas as pd

    from fabray import schema

    stamps = pd.to_datetime(frame[schema.TIMESTAMP])
    first = pd.Timestamp(start) - pd.Timedelta(minutes=lookback - 1)
    last = pd.Timestamp(start) + pd.Timedelta(minutes=minutes - 1)
    return frame[(stamps >= first) & (stamps <= last)]


def _replay_demo(url: str, frame, config: FabrayConfig, token: str, start: np.datetime64, report_dir: Path) -> None:
    """Stage 7: replay the held-out part into the live feed, print the alerts, screenshot the board."""
    from fabray.serve.browser import find_chromium, screenshot
    from fabray.serve.replay import alerts_table, replay

    held_out = replay_slice(frame, start, config.task.lookback, DEMO_REPLAY_MINUTES)
    _stage(7, f"replaying the held-out data into {url}/v1/observe minute by minute, as fast as it answers "
              f"({config.task.lookback - 1} minutes to fill the buffers, then at most {DEMO_REPLAY_MINUTES} "
              f"scored from {np.datetime_as_string(start, unit='m')}); the zone board is {url}/")
    began = time.monotonic()
    result = replay(held_out, url, token, horizon=config.task.horizon)
    took = time.monotonic() - began
    summary = result.summary()
    print(_indent(f"{summary['minutes']} minutes, {summary['rows']} rows, {summary['scored']} windows scored, "
                  f"{summary['outcomes_applied']} outcomes applied to the weights, in {took:.1f} s"))
    lead = "–" if summary["median_lead_min"] is None else f"{summary['median_lead_min']:+d} min"
    print(_indent(f"alerts raised: {summary['alerts_opened']} ({summary['alerts_closed']} closed; "
                  f"median lead time {lead}: minutes between the alert and the delay episode's start)"))
    if result.alerts:
        print(_indent(alerts_table(result.alerts)))
    if find_chromium() is None:
        print(_indent("no zone board screenshot: chromium is not installed (apt-get install chromium)"))
        return
    try:
        shot = screenshot(url + "/", report_dir / "board.png", size=(1280, 1000))
    except (RuntimeError, OSError) as err:  # a screenshot never fails the demo
        print(_indent(f"no zone board screenshot: {err}"))
        return
    print(_indent(f"zone board screenshot: {shot}"))
