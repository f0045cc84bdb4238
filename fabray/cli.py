"""The `fabray` command line (DESIGN §8). Exit codes: 0 ok, 2 bad input, 1 failure.

Each sub-command is a small function that parses nothing itself: argparse does that here, and
the work is done by library functions imported lazily (so `fabray validate` never loads
TensorFlow or Ray).

Why one file of ~500 lines: it is the CLI contract (DESIGN §8) in one place: every sub-command's
flags and help beside the few lines that call the library, so `fabray --help` and this file
read alike; the logic it calls lives in the library modules.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from fabray.errors import BadInputError

logger = logging.getLogger("fabray")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # the design's training backend


# ---------------------------------------------------------------------------- sub-commands


def _cmd_simulate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fabray.config import load_config
    from fabray.data import io
    from fabray.data.simulate import delay_labels, simulate_preset, summarize
    from fabray.data.windows import zone_nominal_s

    io.table_format(args.out)  # Parquet or CSV by extension, else BadInputError before any work
    if args.plot is not None and Path(args.plot).suffix.lower() != ".png":
        raise BadInputError(f"--plot must end in .png. Received: {args.plot}")
    if args.zones is not None and args.zones < 1:
        raise BadInputError(f"--zones must be >= 1. Received: {args.zones}")
    config = load_config(args.config)
    frame = simulate_preset(args.preset, seed=args.seed, zones=args.zones, config=config.simulation)
    out = io.write_table(frame, args.out)
    summary = summarize(frame, config.task, config.split)
    print(f"{out}: {summary.line()}")
    if args.plot is not None:
        from fabray.data.plot import plot_zone_day

        _, events = delay_labels(frame, config.task, config.split)
        fig = plot_zone_day(frame, events, zone_nominal_s(frame, config.task, config.split), config.task.sla_delay_s)
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=110)
        logger.info("drew %s", args.plot)
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from fabray import schema
    from fabray.data import io, validate

    if args.max_errors < 1:
        raise BadInputError(f"--max-errors must be at least 1. Received: {args.max_errors}")
    source = io.data_source(args.path, table=args.table, query=args.query)
    frame = io.read_table(source, text_columns=(schema.ZONE,))
    report = validate.validate_frame(frame, max_rows=args.max_errors)
    if not report.ok:
        raise BadInputError(report.format(source=str(source)))  # printed on stderr, exit 2
    print(report.format(source=str(source)))
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from fabray import schema
    from fabray.config import load_config
    from fabray.models import MODELS, get_spec, model_table
    from fabray.models.gbt import GBT

    if args.repeats < 0 or args.batch_size < 1:
        raise BadInputError(
            f"--repeats must be >= 0 and --batch-size >= 1. "
            f"Received: --repeats {args.repeats}, --batch-size {args.batch_size}"
        )
    config = load_config(args.config)
    overrides = config.train.model_overrides
    for name in overrides:
        if name != GBT:  # the LightGBM member's overrides are GBTConfig fields (checked by train)
            get_spec(name)  # an unknown model name in the config → exit 2
    names = [n.strip() for n in args.names.split(",") if n.strip()] if args.names else list(MODELS)
    for name in names:
        get_spec(name)
    lookback, n_features = config.task.lookback, len(schema.FEATURES)
    rows = model_table(lookback, n_features, overrides, names, args.repeats, args.batch_size)

    batch_key = f"latency_batch{args.batch_size}_ms"
    header = ("model", "params", "seed_claim", "ratio", "single_ms", f"batch{args.batch_size}_ms")
    cells = [header] + [
        (
            r["name"],
            f"{r['params']:,}",
            "-" if r["seed_param_claim"] is None else f"{r['seed_param_claim']:,}",
            "-" if r["ratio_to_claim"] is None else f"{r['ratio_to_claim']:.2f}",
            "-" if r["latency_single_ms"] is None else f"{r['latency_single_ms']:.2f}",
            "-" if r[batch_key] is None else f"{r[batch_key]:.2f}",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]))
    print(f"(lookback {lookback} x {n_features} features; latency: median forward pass of the "
          f"compiled predict function, warm-up excluded, on this machine)")
    if not args.names:
        print("gbt: the LightGBM member on lag features (opt-in: add gbt to train.models; needs "
              "fabray[gbt]); its trees are grown by training, so it has no size to list here")
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"lookback": lookback, "n_features": n_features, "batch_size": args.batch_size,
                   "repeats": args.repeats, "models": rows}
        out.write_text(json.dumps(payload, indent=2) + "\n")
        logger.info("wrote %s", out)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from fabray.api import Forecaster
    from fabray.data import io

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    if args.models is not None and not models:
        raise BadInputError(f"--models names no model. Received: {args.models!r}")
    if args.num_cpus is not None and args.num_cpus < 1:
        raise BadInputError(f"--num-cpus must be >= 1. Received: {args.num_cpus}")
    data = io.data_source(args.data, table=args.table, query=args.query)  # a file path or a SqlSource
    fc = Forecaster.train(
        data, args.out, models=models, config=args.config, epochs=args.epochs, use_gpu=args.use_gpu,
        budget=args.budget, mlflow=args.mlflow, address=args.address, num_cpus=args.num_cpus,
        worker_logs=args.verbose, check=False,  # every model failed: the table says so, exit 1
    )
    summary = fc.summary
    print(summary.table())
    print(f"run: {summary.run_dir} ({summary.manifest['status']})")
    return 0 if summary.ok else 1


def _cmd_retrain(args: argparse.Namespace) -> int:
    import time

    from fabray.config import load_config
    from fabray.ray_session import ray_session
    from fabray.train.retrain import budget_line, prepare_retrain, run_retrain

    started = time.time()  # the budget counts from here
    if args.num_cpus is not None and args.num_cpus < 1:
        raise BadInputError(f"--num-cpus must be >= 1. Received: {args.num_cpus}")
    config = load_config(args.config) if args.config else None  # None: the parent's own config
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    job = prepare_retrain(args.run, args.data, args.out, config, epochs=args.epochs,
                          budget_minutes=args.budget_minutes, models=models, started_unix=started)
    with ray_session(args.address, num_cpus=args.num_cpus, worker_logs=args.verbose) as session:
        summary = run_retrain(job, can_autoscale=session.joined)
    print(summary.table())
    print(f"run: {summary.run_dir} ({summary.manifest['status']}); {budget_line(summary.manifest)}")
    return 0 if summary.ok else 1


def _cmd_ensemble(args: argparse.Namespace) -> int:
    from fabray.api import Forecaster

    # The constructor, not Forecaster.load: fitting loads and checks the run's models itself.
    fit = Forecaster(args.run).ensemble(
        trials=args.trials, search=args.search, seed=args.seed, config=args.config,
        train_data=args.train_data, address=args.address, num_cpus=args.num_cpus,
    )
    print(fit.table())
    print(f"ensemble: {fit.run_dir / 'ensemble.json'} (winner {fit.winner}); trials: {fit.run_dir / 'ensemble_trials.csv'}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from fabray.api import Forecaster
    from fabray.data import io
    from fabray.evaluate import leaderboard_text

    # The constructor, not Forecaster.load: evaluating loads and checks the run's models itself.
    fc = Forecaster(args.run)
    fc.evaluate(
        io.data_source(args.data, table=args.table, query=args.query), args.report, json_path=args.json,
        config=args.config, train_data=args.train_data, mlflow=args.mlflow,
    )
    print(leaderboard_text(fc.last_evaluation))
    if fc.last_mlflow_run is not None:
        print(f"mlflow: evaluation run {fc.last_mlflow_run['run_id']} at {fc.last_mlflow_run['uri']}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from fabray.batch_predict import predict_to_file, summary_line
    from fabray.data import io

    data = io.data_source(args.data, table=args.table, query=args.query)  # a file path or a SqlSource
    frame, out = predict_to_file(args.run, data, args.out, latest=args.latest, ensemble=args.ensemble,
                                 address=args.address, num_cpus=args.num_cpus, workers=args.workers,
                                 batch_size=args.batch_size)
    print(summary_line(frame, out))
    return 0


def _cmd_backtest(args: argparse.Namespace) -> int:
    from fabray.backtest import BACKTEST_FILE, run_backtest, summary_table

    if args.num_cpus is not None and args.num_cpus < 1:
        raise BadInputError(f"--num-cpus must be >= 1. Received: {args.num_cpus}")
    doc = run_backtest(args.data, args.out, args.folds, config=args.config, trials=args.trials,
                       seed=args.seed, address=args.address, num_cpus=args.num_cpus)
    print(summary_table(doc["summary"]))
    print(f"backtest: {args.out}/{BACKTEST_FILE}, {doc['plot']}")
    return 0


def _cmd_capacity(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from tqdm import tqdm

    from fabray import capacity as cap

    def ints(text: str, flag: str) -> list[int]:
        try:
            values = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise BadInputError(f"{flag} takes comma-separated integers. Received: {text!r}") from None
        if not values or min(values) < 1:
            raise BadInputError(f"{flag} takes integers >= 1. Received: {text!r}")
        return values

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else list(cap.SEED_MODELS)
    batch_sizes = ints(args.batch_sizes, "--batch-sizes")
    steps = 2 if args.quick else args.steps
    if steps < 1:
        raise BadInputError(f"--steps must be >= 1. Received: {steps}")
    assumptions = cap.Assumptions(gpu_speedup=args.gpu_speedup)
    phases = [cap.seed_phase(args.phase)] if args.phase else list(cap.SEED_PHASES)
    with tqdm(total=len(models) * len(set(batch_sizes)), desc="measuring", unit="case",
              disable=None) as bar:
        measurements = cap.measure_zoo(models, batch_sizes, steps=steps,
                                       on_measured=lambda m: bar.update(1))
    report = cap.capacity_report(measurements, assumptions, phases, host=cap.host_info())
    print(cap.format_report(report))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        logger.info("wrote %s", out)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import signal
    import threading
    import time

    from fabray.serve.runner import serving

    if args.num_cpus is not None and args.num_cpus < 1:
        raise BadInputError(f"--num-cpus must be >= 1. Received: {args.num_cpus}")
    overrides = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
    stop = threading.Event()  # SIGTERM (Kubernetes, systemd) stops as gracefully as Ctrl-C

    def on_sigterm(signum: int, frame: object) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        with serving(args.run, store=args.store, config=args.config, overrides=overrides,
                     address=args.address, num_cpus=args.num_cpus) as url:
            print(f"fabray serving {args.run} on {url} (API docs: {url}/docs); Ctrl-C or SIGTERM stops",
                  flush=True)
            deadline = None if args.duration is None else time.monotonic() + args.duration
            try:
                while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                    stop.wait(0.5)
            except KeyboardInterrupt:
                pass
            print("stopping: answering requests in flight, saving the ensemble state", flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    import json
    import os

    from fabray.data.io import read_table
    from fabray.serve.replay import alerts_table, replay

    token = open(args.token_file).read().strip() if args.token_file else os.environ.get("FABRAY_API_TOKEN")
    result = replay(read_table(args.data), args.url.rstrip("/"), token, speed=args.speed, horizon=args.horizon,
                    limit=args.minutes)
    print(json.dumps(result.summary()))
    if result.alerts:
        print(alerts_table(result.alerts))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from fabray.demo import run_demo

    run_demo(args.workdir, seed=args.seed, num_cpus=args.num_cpus, trials=args.trials,
             serve=not args.no_serve)
    return 0


# ---------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fabray",
        description="Forecast OHT transport delays in a semiconductor fab: simulate or validate "
        "zone-minute data, train a model zoo on Ray, fit a dynamic ensemble, evaluate and serve.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name, help=help_text, description=help_text,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        p.set_defaults(handler=handler)
        return p

    p = add("simulate", _cmd_simulate, "Simulate a fab's OHT traffic, one row per zone-minute.")
    p.add_argument("--preset", default="tiny", choices=["tiny", "poc", "1m", "1.5m"],
                   help="size: tiny (tests, seconds), poc (781,163 rows), 1m, 1.5m")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same data")
    p.add_argument("--zones", type=int, default=None, help="number of zones (default: the preset's)")
    p.add_argument("--config", default=None, help="YAML config with a 'simulation' section")
    p.add_argument("--out", required=True, help="output file (.parquet or .csv)")
    p.add_argument("--plot", default=None, help="also draw one zone's day to this PNG")

    p = add("validate", _cmd_validate, "Check a data file against the data contract; exit 2 on errors.")
    p.add_argument("path", help="Parquet or CSV file, one row per zone-minute; or a SQLAlchemy URL "
                   "(sqlite:///fab.db) with --table or --query")
    p.add_argument("--table", default=None, help="with a SQLAlchemy URL as data: read this table")
    p.add_argument("--query", default=None, help="with a SQLAlchemy URL as data: read this SQL query's rows")
    p.add_argument("--max-errors", type=int, default=50, help="errors to print per kind")

    p = add("models", _cmd_models, "Table of the models: parameters, the seed's claim, latency.")
    p.add_argument("--config", default=None, help="YAML config with model sizes")
    p.add_argument("--names", default=None, help="comma-separated models (default: all)")
    p.add_argument("--repeats", type=int, default=20,
                   help="timed single-window forward passes per model (batch: a quarter); 0 skips latency")
    p.add_argument("--batch-size", type=int, default=256, help="windows in the batch latency")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the table as JSON here")

    p = add("train", _cmd_train, "Train the model zoo on Ray, every model concurrently, into a run directory.")
    p.add_argument("--data", required=True, help="zone-minute data file (.parquet or .csv), or a SQLAlchemy "
                   "URL with --table/--query (validated into OUT.data.parquet beside the run)")
    p.add_argument("--out", required=True, help="new run directory (never overwritten)")
    p.add_argument("--table", default=None, help="with a SQLAlchemy URL as data: read this table")
    p.add_argument("--query", default=None, help="with a SQLAlchemy URL as data: read this SQL query's rows")
    p.add_argument("--models", default=None, help="comma-separated model names; unset: the config's train.models")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs; unset: the config's train.epochs")
    p.add_argument("--budget", default=None, metavar="DURATION",
                   help="wall-clock training budget shared by the models, e.g. 60m, 1h30m (minutes "
                   "if a bare number); unset: the config's train.budget_min (none)")
    p.add_argument("--address", default=None,
                   help="join this Ray cluster; unset: RAY_ADDRESS, else an embedded local Ray")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the embedded local Ray; unset: all")
    p.add_argument("--use-gpu", default=None, choices=["auto", "true", "false"],
                   help="use GPUs; 'auto' = when the cluster has any; unset: the config's train.use_gpu")
    p.add_argument("--config", default=None, help="YAML config (task, split, train sections)")
    p.add_argument("--mlflow", default=None, metavar="URI",
                   help="log the run to this MLflow tracking URI (needs the mlflow extra); "
                   "unset: the config's tracking.mlflow_uri")

    p = add("retrain", _cmd_retrain, "Warm-start every model of a run on new data plus a replay "
            "sample of its history, within a time budget, into a new (challenger) run.")
    p.add_argument("--run", required=True, help="parent run directory (its models are the starting point)")
    p.add_argument("--data", required=True, help="new zone-minute data file (.parquet or .csv)")
    p.add_argument("--out", required=True, help="new run directory (never overwritten); records its parent")
    p.add_argument("--budget-minutes", type=float, default=None,
                   help="wall-clock budget from the start; unset: the config's retrain.budget_minutes")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs; unset: the config's retrain.epochs")
    p.add_argument("--models", default=None,
                   help="comma-separated models to fine-tune; the parent's others are carried over unchanged")
    p.add_argument("--address", default=None,
                   help="join this Ray cluster; unset: RAY_ADDRESS, else an embedded local Ray")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the embedded local Ray; unset: all")
    p.add_argument("--config", default=None,
                   help="YAML config (train, retrain sections); unset: the parent run's own config")

    p = add("ensemble", _cmd_ensemble, "Fit the dynamic ensemble's hyper-parameters with Ray Tune on the validation split.")
    p.add_argument("--run", required=True, help="run directory written by `fabray train`")
    p.add_argument("--trials", type=int, default=None, help="Tune trials; unset: the config's ensemble.tune_trials")
    p.add_argument("--search", default="tpe", choices=["tpe", "random"],
                   help="search algorithm: Optuna TPE, or Tune's random BasicVariantGenerator")
    p.add_argument("--seed", type=int, default=0, help="seed of the search")
    p.add_argument("--address", default=None,
                   help="join this Ray cluster; unset: RAY_ADDRESS, else an embedded local Ray")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the embedded local Ray; unset: all")
    p.add_argument("--train-data", default=None,
                   help="the run's training data if it moved (checked against the manifest's fingerprint)")
    p.add_argument("--config", default=None, help="YAML config whose 'ensemble' section replaces the run's")

    p = add("evaluate", _cmd_evaluate, "Evaluate every model, both ensembles and the baselines on test data.")
    p.add_argument("--run", required=True, help="run directory (after `fabray ensemble`)")
    p.add_argument("--data", required=True,
                   help="test data (.parquet/.csv, or a SQLAlchemy URL with --table/--query); the run's "
                   "own training file → its test split only")
    p.add_argument("--table", default=None, help="with a SQLAlchemy URL as data: read this table")
    p.add_argument("--query", default=None, help="with a SQLAlchemy URL as data: read this SQL query's rows")
    p.add_argument("--json", default=None, help="write the metrics as JSON here")
    p.add_argument("--report", default=None, help="write report.md and PNG plots into this directory")
    p.add_argument("--train-data", default=None,
                   help="the run's training data if it moved (for the tree baseline and thresholds)")
    p.add_argument("--config", default=None, help="YAML config (its 'roi' section sets the ROI parameters)")
    p.add_argument("--mlflow", default=None, metavar="URI",
                   help="log the metrics and report to this MLflow tracking URI (needs the mlflow "
                   "extra); unset: the config's tracking.mlflow_uri")

    p = add("predict", _cmd_predict, "Offline batch scoring on Ray Data: every window of a data file "
            "scored by every model of a run and its ensemble, written to a Parquet file (the columns "
            "of Forecaster.predict: zone, end_time, score_<model>, probability, threshold, decision).")
    p.add_argument("--run", required=True, help="run directory (after `fabray train`, best after `fabray ensemble`)")
    p.add_argument("--data", required=True, help="zone-minute data (.parquet/.csv, or a SQLAlchemy URL "
                   "with --table/--query), validated against the data contract")
    p.add_argument("--out", required=True, help="scores file (.parquet or .csv); an existing file is replaced")
    p.add_argument("--table", default=None, help="with a SQLAlchemy URL as data: read this table")
    p.add_argument("--query", default=None, help="with a SQLAlchemy URL as data: read this SQL query's rows")
    p.add_argument("--latest", action="store_true",
                   help="write only each zone's newest window (the forecast for now); every window is "
                   "still scored, since the dynamic ensemble's weights replay the whole file")
    p.add_argument("--ensemble", default="dynamic", choices=["dynamic", "static"],
                   help="the fitted dynamic ensemble replayed over the file, or the static one")
    p.add_argument("--workers", type=int, default=1, help="Ray Data scoring actors (each loads the run's models once)")
    p.add_argument("--batch-size", type=int, default=4096, help="windows per model call")
    p.add_argument("--address", default=None,
                   help="join this Ray cluster; unset: RAY_ADDRESS, else an embedded local Ray")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the embedded local Ray; unset: all")

    p = add("backtest", _cmd_backtest, "Rolling-origin backtest: train, fit the ensemble and evaluate "
            "on K successive test blocks at the end of the data, and compare every model, the ensemble "
            "and the baselines across the folds.")
    p.add_argument("--data", required=True, help="zone-minute data file (.parquet or .csv)")
    p.add_argument("--folds", type=int, default=3, help="K: test blocks, each as long as the config's test split")
    p.add_argument("--out", required=True, help="new directory: one run per fold, backtest.json, backtest.png")
    p.add_argument("--config", default=None, help="YAML config (task, split, train, ensemble sections)")
    p.add_argument("--trials", type=int, default=None, help="Tune trials per fold; unset: the config's ensemble.tune_trials")
    p.add_argument("--seed", type=int, default=0, help="seed of each fold's ensemble search")
    p.add_argument("--address", default=None,
                   help="join this Ray cluster; unset: RAY_ADDRESS, else an embedded local Ray")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the embedded local Ray; unset: all")

    p = add("capacity", _cmd_capacity, "Measure the models here (params, memory, windows/s) and "
            "project the seed's phases: time per epoch / retrain, memory per GPU, H100s needed.")
    p.add_argument("--phase", type=int, default=None, choices=[1, 2, 3],
                   help="project only this phase of the seed (default: all three)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write measurements + projection as JSON")
    p.add_argument("--models", default=None, help="comma-separated models (default: the seed's five)")
    p.add_argument("--batch-sizes", default="32,64,128", help="batch sizes to measure")
    p.add_argument("--steps", type=int, default=5, help="timed steps per measurement (after one warm-up)")
    p.add_argument("--quick", action="store_true", help="2 timed steps per measurement (tests)")
    p.add_argument("--gpu-speedup", type=float, default=30.0,
                   help="ASSUMED H100 speed relative to this machine (ignored when measured on a GPU)")

    p = add("serve", _cmd_serve, "Serve a run over HTTP on Ray Serve: real-time, feedback, batch, retraining.")
    p.add_argument("--run", required=True, help="run directory to serve (imported into the store, made live)")
    p.add_argument("--port", type=int, default=None, help="HTTP port; unset: the config's serve.port (8000)")
    p.add_argument("--host", default=None, help="listen address; unset: the config's serve.host (127.0.0.1)")
    p.add_argument("--store", default=None, help="model store directory; unset: serve-store next to the run")
    p.add_argument("--config", default=None, help="YAML config (serve and ensemble sections)")
    p.add_argument("--address", default=None,
                   help="join this Ray cluster; unset: RAY_ADDRESS, else an embedded local Ray")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the embedded local Ray; unset: all")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (unset: Ctrl-C)")

    p = add("replay", _cmd_replay, "Feed a zone-minute file into a running server minute by minute "
            "(POST /v1/observe) and print the alerts it raised with their lead times.")
    p.add_argument("--data", required=True, help="zone-minute data file (Parquet or CSV, the data contract)")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the server")
    p.add_argument("--speed", type=float, default=0.0,
                   help="data minutes per real minute (60: one minute per second); 0: as fast as it answers")
    p.add_argument("--minutes", type=int, default=None, help="send only the first N minutes")
    p.add_argument("--horizon", type=int, default=10, help="minutes of plan sent ahead with each row")
    p.add_argument("--token-file", default=None, help="file holding the API token; unset: $FABRAY_API_TOKEN")

    p = add("demo", _cmd_demo, "Run the whole chain on a small simulated fab.")
    p.add_argument("--workdir", default="demo-run", help="where the demo writes its files")
    p.add_argument("--seed", type=int, default=7, help="seed of the simulated fab")
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs of the embedded Ray")
    p.add_argument("--trials", type=int, default=16, help="Ray Tune trials for the ensemble")
    p.add_argument("--no-serve", action="store_true", help="skip the serving stage")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from fabray.console import quiet_console

    args = build_parser().parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # keep printed lines in order with log lines
    with quiet_console(args.command, verbose=args.verbose) as library_log:  # -v: everything here
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        code = _run(args)
    if library_log is not None and library_log.exists():
        logger.info("library messages (TensorFlow, absl, Ray): %s (-v shows them here)", library_log)
    return code


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.handler(args) or 0)
    except BadInputError as err:
        print(f"fabray {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fabray {args.command}: interrupted", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - the CLI's last line of defence
        logger.exception("fabray %s failed", args.command)
        print(f"fabray {args.command}: failed: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
