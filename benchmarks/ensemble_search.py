"""Search quality for `fabray ensemble`: Optuna TPE vs random search at the same trial budget.

    python benchmarks/ensemble_search.py --run runs/r1 [--trials 48] [--seeds 5] [--json OUT]

The run's validation windows are scored once with every model (as `fabray ensemble` does), then
each search draws `--trials` points of `fabray.ensemble.search_space` (threshold solved per
point, as in the Tune trial) for `--seeds` seeds:

- `tpe`    (the project's choice) Optuna's multivariate TPESampler, the settings of
           `fabray.train.tune_ensemble._searcher`, run sequentially (Tune runs up to 4 trials at
           once, which can only weaken it);
- `random` (the baseline) independent draws from the same distributions
           (`fabray.ensemble.sample_search_space`), Tune's BasicVariantGenerator in effect.

Both evaluate the configured ensemble first, as the Tune run does. No Ray: this measures the
search algorithm, not Tune's overhead. Printed: a table of the best validation F1 reached after
8, 16, 32, … trials (mean and worst over seeds) and JSON with every curve; the figure to read is
the ratio tpe / random of the mean best F1 at the full budget, from the same run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

logger = logging.getLogger("benchmarks.ensemble_search")


def _space(model_names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    from fabray.ensemble import search_space

    return {k: v for k, v in search_space(model_names).items() if k != "threshold"}


def _evaluate(sample: dict[str, Any], data: Any, primary: str) -> float:
    from fabray.ensemble import params_from_sample
    from fabray.train.tune_ensemble import candidate_metrics

    metrics, _ = candidate_metrics(params_from_sample(sample, data.model_names), data)
    return float(metrics[primary])


def run_random(data: Any, trials: int, seed: int, start: dict[str, Any], primary: str) -> list[float]:
    from fabray.ensemble import sample_search_space

    rng = np.random.default_rng(seed)
    space = _space(data.model_names)
    values = [_evaluate(start, data, primary)]
    for _ in range(trials - 1):
        values.append(_evaluate(sample_search_space(space, rng), data, primary))
    return values


def run_tpe(data: Any, trials: int, seed: int, start: dict[str, Any], primary: str) -> list[float]:
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = _space(data.model_names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = optuna.samplers.TPESampler(
            seed=seed, multivariate=True, n_startup_trials=max(4, min(10, trials // 4))
        )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial(start)
    values: list[float] = []

    def objective(trial: Any) -> float:
        sample = {}
        for key, spec in space.items():
            if spec["type"] == "uniform":
                sample[key] = trial.suggest_float(key, spec["low"], spec["high"])
            elif spec["type"] == "loguniform":
                sample[key] = trial.suggest_float(key, spec["low"], spec["high"], log=True)
            elif spec["type"] == "randint":
                sample[key] = trial.suggest_int(key, spec["low"], spec["high"] - 1)
            else:
                sample[key] = trial.suggest_categorical(key, list(spec["values"]))
        values.append(_evaluate(sample, data, primary))
        return values[-1]

    study.optimize(objective, n_trials=trials)
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a trained run directory")
    parser.add_argument("--trials", type=int, default=48)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from fabray.predictor import RunPredictor
    from fabray.run_data import load_run_data, run_config
    from fabray.train.tune_ensemble import configured_point, validation_scores

    predictor = RunPredictor.load(args.run, warm_up=False)
    config = run_config(predictor)
    data = validation_scores(predictor, load_run_data(predictor, config).prepared,
                             config.ensemble.feedback_lag or predictor.horizon)
    start = configured_point(config.ensemble, data.model_names)
    primary = config.ensemble.tune_metric
    curves: dict[str, list[list[float]]] = {"tpe": [], "random": []}
    seconds: dict[str, float] = {"tpe": 0.0, "random": 0.0}
    for seed in range(args.seeds):
        for name, fn in (("tpe", run_tpe), ("random", run_random)):
            began = time.perf_counter()
            values = fn(data, args.trials, seed, start, primary)
            seconds[name] += time.perf_counter() - began
            curves[name].append(np.maximum.accumulate(values).tolist())
            logger.info("seed %d %s: best %s %.4f", seed, name, primary, curves[name][-1][-1])

    marks = [k for k in (8, 16, 32, 64, 128, 256) if k < args.trials] + [args.trials]
    summary: dict[str, Any] = {}
    for name, runs in curves.items():
        arr = np.asarray(runs)  # [seeds, trials]
        summary[name] = {
            f"best_{primary}_after_{k}": {"mean": float(arr[:, k - 1].mean()), "worst": float(arr[:, k - 1].min())}
            for k in marks
        }
        summary[name]["seconds"] = seconds[name]
    full = f"best_{primary}_after_{args.trials}"
    ratio = summary["tpe"][full]["mean"] / summary["random"][full]["mean"]
    out = {
        "run": predictor.version, "models": list(data.model_names), "val_windows": int(len(data.outcomes)),
        "trials": args.trials, "seeds": args.seeds, "metric": primary, "summary": summary,
        "ratio_tpe_over_random": ratio, "curves": curves,
    }
    print(f"{'trials':>7} {'tpe mean':>9} {'tpe worst':>9} {'rnd mean':>9} {'rnd worst':>9}", file=sys.stderr)
    for k in marks:
        t, r = summary["tpe"][f"best_{primary}_after_{k}"], summary["random"][f"best_{primary}_after_{k}"]
        print(f"{k:>7} {t['mean']:>9.4f} {t['worst']:>9.4f} {r['mean']:>9.4f} {r['worst']:>9.4f}", file=sys.stderr)
    print(f"tpe / random (mean best {primary} after {args.trials} trials): {ratio:.4f}", file=sys.stderr)
    text = json.dumps({k: v for k, v in out.items() if k != "curves"}, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
