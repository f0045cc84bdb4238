"""fabray in a few lines of Python: simulate a tiny fab, train two small models, fit the
ensemble, forecast, evaluate.

    python examples/quickstart.py --out /tmp/fabray-quickstart      # ~2-4 minutes on 2 CPUs

Writes under --out: `train.parquet` / `test.parquet` (two simulated fabs), the run `r1/`
(models, manifest, ensemble.json, TensorBoard files: `tensorboard --logdir OUT/r1`),
`r1.eval.json` (as `fabray evaluate --json`). `tests/integration/test_quickstart.py` runs
`quickstart()` and checks what it returns.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

#: Two small models, tiny sizes (as the integration tests train them): seconds per epoch.
MODELS = ["lstm", "rule"]
CONFIG = {
    "train": {
        "batch_size": 256,
        "resources": {"cpus": 0.5},  # both trainers at once on 2 CPUs
        "shuffle_buffer": 2000,
        "model_overrides": {
            "lstm": {"lstm_units": [8], "head_units": [8]},
            "rule": {"lstm_units": 4, "head_units": [4]},
        },
    }
}


def quickstart(out: Path, *, seed: int = 3, epochs: int = 1, trials: int = 4) -> dict[str, Any]:
    """The whole chain; returns {"forecaster", "fit", "predictions", "latest", "evaluation"}."""
    from fabray import Forecaster
    from fabray.data.io import write_table
    from fabray.data.simulate import simulate_preset

    out.mkdir(parents=True, exist_ok=True)
    train = simulate_preset("tiny", seed=seed)  # 4 zones x 3 days, one row per zone-minute
    test = simulate_preset("tiny", seed=seed + 100)  # another fab: never seen in training
    write_table(train, out / "train.parquet")
    write_table(test, out / "test.parquet")

    fc = Forecaster.train(out / "train.parquet", out / "r1", models=MODELS, config=CONFIG, epochs=epochs)
    fit = fc.ensemble(trials=trials)
    predictions = fc.predict(test)  # every window of the test fab
    latest = fc.predict(test, latest=True)  # each zone's forecast for "now"
    evaluation = fc.evaluate(out / "test.parquet", json_path=out / "r1.eval.json")
    return {"forecaster": fc, "fit": fit, "predictions": predictions, "latest": latest,
            "evaluation": evaluation}


def report(result: dict[str, Any], out: Path) -> None:
    """A few lines: the run, each zone's forecast for "now", the top of the leaderboard."""
    fc, evaluation = result["forecaster"], result["evaluation"]
    print(f"run: {fc.run_dir} (models {', '.join(fc.model_names)}; ensemble winner {result['fit'].winner})")
    print(result["latest"][["zone", "end_time", "probability", "decision"]].to_string(index=False))
    headline = evaluation["headline"]
    for entry in evaluation["leaderboard"][:4]:
        print(f"{entry['name']:<18} {headline} {_num(entry[headline]):>7}  f1 {_num(entry.get('f1')):>6}")
    print(f"evaluation JSON: {out / 'r1.eval.json'}; TensorBoard: tensorboard --logdir {fc.run_dir}")


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="working directory (the run is OUT/r1, new)")
    parser.add_argument("--seed", type=int, default=3, help="seed of the simulated training fab")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs per model")
    parser.add_argument("--trials", type=int, default=4, help="Ray Tune trials for the ensemble")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray started here")
    args = parser.parse_args(argv)

    import ray

    started = not ray.is_initialized()
    if started:  # one small local Ray for every step (the API would start one per call)
        ray.init(address="local", num_cpus=args.num_cpus, object_store_memory=300 * 1024**2,
                 log_to_driver=False)
    try:
        result = quickstart(Path(args.out), seed=args.seed, epochs=args.epochs, trials=args.trials)
    finally:
        if started:
            ray.shutdown()

    report(result, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
