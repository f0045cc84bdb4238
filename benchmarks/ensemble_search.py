"""The ensemble forms side by side, in one run: each member alone, static, online dynamic, learned
gate, and what `fabray ensemble` would serve (the best of all on validation).

    python benchmarks/ensemble_search.py --run runs/r1 [--test-data other.parquet] [--trials 24]
                                         [--seed 0] [--json OUT]

The run's validation windows are scored once with every model (as `fabray ensemble` does), and the
test windows once (the run's own test split, or every window of `--test-data`, e.g. a fab
simulated with another seed). Then, without Ray (this measures the forms, not Tune):

- `best_member`: the member with the best validation lead score (each at its own threshold);
- `static`, `dynamic`, `gate`: the best of the fixed candidate (all models) and `--trials` random
  draws of `fabray.ensemble.search_space.form_search_space` with the form fixed (member subsets of
  two or more models and each form's hyper-parameters drawn), ranked on validation by the lead
  score (F1 breaks ties);
- `served`: what `fabray ensemble` would serve: the best of all of them on validation, unless that
  is a combination whose lead over the best member is within one standard error over validation
  time blocks (`fabray.ensemble.objective.clear_win`); then the best member.

Each is turned into its `ServedEnsemble` (`fabray.ensemble.objective.fit_served`: calibrated on
validation, threshold solved on validation, trackers warmed to the end of validation) and replayed
over the test windows from that fitted state with `run_online`, the code serving and `fabray
evaluate` use. Printed: a table (form × lead_score / F1 / PR-AUC / Brier, validation and test) and
JSON. Nothing is chosen on test.
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
FORMS = ("static", "dynamic", "gate")


def _draws(names: tuple[str, ...], form: str, trials: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    from fabray.ensemble import sample_search_space
    from fabray.ensemble.objective import members_of
    from fabray.ensemble.search_space import form_search_space

    space = {k: v for k, v in form_search_space(names).items() if k not in ("threshold", "form")}
    out = []
    while len(out) < trials:  # a subset of one model is the member form: each form row is a real combination
        sample = {**sample_search_space(space, rng), "form": form}
        if len(members_of(sample, names)) >= 2:
            out.append(sample)
    return out


def search_forms(data: Any, trials: int, seed: int) -> dict[str, dict[str, Any]]:
    """{label: {"sample", "val_uncalibrated", "candidates"}} of the best candidate per form on validation."""
    from fabray.ensemble.objective import clear_win, evaluate_sample
    from fabray.ensemble.search_space import fixed_candidates
    from fabray.ensemble.selection import rank_key

    rng = np.random.default_rng(seed)
    fixed = fixed_candidates(data.model_names)
    pools: dict[str, list[dict[str, Any]]] = {
        "best_member": [s for s in fixed.values() if s["form"] == "member"],
        "static": [fixed["static_all"], *_draws(data.model_names, "static", trials, rng)],
        "dynamic": [{"form": "dynamic"}, *_draws(data.model_names, "dynamic", trials, rng)],
        "gate": [fixed["gate_all"], *_draws(data.model_names, "gate", trials, rng)],
    }
    out: dict[str, dict[str, Any]] = {}
    for label, samples in pools.items():
        began = time.perf_counter()
        scored = [(evaluate_sample(s, data), s) for s in samples]
        metrics, sample = max(scored, key=lambda ms: rank_key(ms[0], "lead_score"))
        out[label] = {"sample": sample, "val_uncalibrated": metrics, "candidates": len(samples),
                      "search_seconds": time.perf_counter() - began}
        logger.info("%s: best of %d, val lead_score %.1f (%s)", label, len(samples), metrics["lead_score"],
                    metrics["members"])
    best = max(out, key=lambda k: rank_key(out[k]["val_uncalibrated"], "lead_score"))
    verdict = None
    if best != "best_member":  # as `fabray ensemble`: a combination must win clearly (one standard error)
        verdict = clear_win(data, out[best]["sample"], out["best_member"]["sample"])
        logger.info("%s vs best member: %s", best, verdict)
    chosen = best if verdict is None or verdict["clear"] else "best_member"
    out["served"] = {**out[chosen], "chosen_from": chosen, "clear_win": verdict, "best_on_validation": best}
    return out


def test_scores(predictor: Any, config: Any, test_data: str | None) -> tuple[Any, np.ndarray, str]:
    """(prepared, ends, what) of the test windows: `--test-data` in full, else the run's test split."""
    from fabray.data.validate import load_validated
    from fabray.data.windows import ends_with_target
    from fabray.run_data import load_run_data

    if test_data:
        prepared = predictor.prepare(load_validated(Path(test_data)), None)
        return prepared, np.asarray(ends_with_target(prepared, prepared.splits["all"])), f"all windows of {test_data}"
    prepared = load_run_data(predictor, config).prepared
    return prepared, np.asarray(prepared.splits["test"]), "the run's test split"


def test_metrics(served: Any, predictor: Any, prepared: Any, ends: np.ndarray, scores: np.ndarray,
                 lag: int) -> dict[str, Any]:
    """Replay `served` (from its fitted state) over the test windows; its metrics under its alarm policy."""
    from fabray.ensemble.objective import ValidationScores, scored_metrics
    from fabray.ensemble.served import run_online
    from fabray.evaluate import minute_delays
    from fabray.run_data import segment_codes

    target = prepared.target[ends].astype(np.float64)
    zones = [prepared.zones[c] for c in prepared.zone_codes[ends]]
    prob, _ = run_online(served, zones, scores, target, lag, served.context_from_rows(prepared.features[ends]))
    data = ValidationScores(
        model_names=served.model_names, scores=scores, outcomes=target, zone_codes=prepared.zone_codes[ends],
        zone_names=tuple(prepared.zones), feedback_lag=lag, segments=segment_codes(prepared, ends),
        minute_delay_s=minute_delays(prepared, ends), sla_delay_s=float(predictor.task.sla_delay_s),
        horizon=int(predictor.task.horizon),
    )
    return scored_metrics(data, prob, served.threshold, served.alarm)  # under its served alarm policy


KEYS = ("lead_score", "f1", "pr_auc", "brier", "warned_at_start_fraction", "false_alarm_runs_per_zone_day", "threshold")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a trained run directory")
    parser.add_argument("--test-data", default=None, help="test file (default: the run's own test split)")
    parser.add_argument("--trials", type=int, default=24, help="random draws per form")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from fabray.ensemble.objective import fit_served
    from fabray.ensemble.served import ServedEnsemble
    from fabray.predictor import RunPredictor
    from fabray.run_data import load_run_data, run_config
    from fabray.ensemble.fit import validation_scores

    predictor = RunPredictor.load(args.run, warm_up=False)
    config = run_config(predictor)
    lag = config.ensemble.feedback_lag or predictor.horizon
    data = validation_scores(predictor, load_run_data(predictor, config).prepared, lag)
    prepared, ends, test_what = test_scores(predictor, config, args.test_data)
    by_model = predictor.score_prepared(prepared, ends)
    scores = np.stack([by_model[n] for n in predictor.model_names], axis=1)  # [W, M]

    found = search_forms(data, args.trials, args.seed)
    rows: dict[str, Any] = {}
    for label, entry in found.items():
        served, val, calibration = fit_served(entry["sample"], data)
        fresh = ServedEnsemble.from_state(json.loads(json.dumps(served.to_state())))  # as stored in ensemble.json
        test = test_metrics(fresh, predictor, prepared, ends, scores, lag)
        rows[label] = {
            "form": served.form, "members": list(served.members), "calibrator": calibration["chosen"],
            "brier_cv": calibration["brier_cv"], "candidates": entry["candidates"],
            "chosen_from": entry.get("chosen_from"), "clear_win": entry.get("clear_win"),
            "val": {k: val.get(k) for k in KEYS}, "test": {k: test.get(k) for k in KEYS},
            "val_uncalibrated": {k: entry["val_uncalibrated"].get(k) for k in KEYS},
        }
    out = {
        "run": predictor.version, "models": list(data.model_names), "val_windows": int(data.outcomes.size),
        "test_windows": int(ends.size), "test": test_what, "trials_per_form": args.trials, "seed": args.seed,
        "metric": "lead_score (F1 breaks ties), chosen on validation only", "forms": rows,
    }
    head = (f"{'form':<12} {'served as':<30} {'cal':<9} {'val lead':>8} {'val F1':>7} {'val PR':>7} "
            f"{'test lead':>9} {'test F1':>7} {'test PR':>7} {'test Brier':>10}")
    print(head, file=sys.stderr)
    for label, r in rows.items():
        v, t = r["val"], r["test"]
        what = f"{r['form']}[{','.join(r['members'])}]"
        print(f"{label:<12} {what[:30]:<30} {r['calibrator']:<9} {v['lead_score']:>8.1f} {v['f1']:>7.3f} "
              f"{v['pr_auc']:>7.3f} {t['lead_score']:>9.1f} {t['f1']:>7.3f} {t['pr_auc']:>7.3f} {t['brier']:>10.4f}",
              file=sys.stderr)
    text = json.dumps(out, indent=2, default=float)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
