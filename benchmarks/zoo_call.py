"""One compiled call for the whole zoo vs one call per model (issue 13 item 5), in one process.

`RunPredictor` scores every model of a run through ONE `tf.function` (the members' outputs
stacked). The baseline, measured in the same run, is what it did before: one `tf.function` per
model, called one after the other. Both score the same windows; rounds alternate the two so
that the machine's noise falls on both alike. Printed JSON: per batch size, p50/p99/mean
latency in ms of each way and their ratio, the largest score difference between them, and the
load average at start and end.

    python benchmarks/zoo_call.py --run runs/r1 [--batches 1,32] [--calls 200] [--rounds 3]
        [--json benchmarks/results/zoo_call.json]

Not part of `make test`; run it on a quiet machine (the load average is printed beside).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def per_model_calls(predictor) -> callable:
    """The baseline: one traced graph per model, called in turn; [M, B] like the zoo's."""
    import tensorflow as tf

    signature = [tf.TensorSpec([None, predictor.lookback, predictor.n_features], tf.float32)]
    fns = []
    for name in predictor.model_names:
        model = predictor.model(name)

        @tf.function(input_signature=signature)
        def forward(x, model=model):
            return tf.reshape(tf.cast(model(x, training=False), tf.float32), [-1])

        fns.append(forward)
    return lambda x: np.stack([f(x).numpy() for f in fns])


def latencies(fn, x: np.ndarray, calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        started = time.perf_counter()
        fn(x)
        out.append(1000.0 * (time.perf_counter() - started))
    return out


def summary(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"n": int(a.size), "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a trained run directory")
    parser.add_argument("--batches", default="1,32", help="windows per call, comma-separated")
    parser.add_argument("--calls", type=int, default=200, help="timed calls per way per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()

    from fabray.predictor import RunPredictor

    load_start = os.getloadavg()
    predictor = RunPredictor.load(args.run)  # traces and warms the zoo's graph
    baseline = per_model_calls(predictor)
    rng = np.random.default_rng(0)
    result = {"benchmark": "zoo_call", "run": str(args.run), "models": list(predictor.model_names),
              "cpus": os.cpu_count(), "load_average_start": list(load_start), "batches": {}}
    for batch in [int(b) for b in args.batches.split(",")]:
        x = rng.normal(size=(batch, predictor.lookback, predictor.n_features)).astype(np.float32)
        zoo_out, base_out = predictor.zoo_outputs(x), baseline(x)  # also the baseline's warm-up trace
        times = {"zoo": [], "per_model": []}
        for _ in range(args.rounds):
            times["per_model"] += latencies(baseline, x, args.calls)
            times["zoo"] += latencies(predictor.zoo_outputs, x, args.calls)
        zoo, base = summary(times["zoo"]), summary(times["per_model"])
        result["batches"][str(batch)] = {
            "zoo_one_call": zoo, "per_model_calls": base,
            "p50_ratio_zoo_over_per_model": zoo["p50_ms"] / base["p50_ms"],
            "p99_ratio_zoo_over_per_model": zoo["p99_ms"] / base["p99_ms"],
            "max_abs_output_difference": float(np.max(np.abs(zoo_out - base_out))),
        }
    result["load_average_end"] = list(os.getloadavg())
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
