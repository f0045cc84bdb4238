"""`fabray ensemble`: Ray Tune chooses the served ensemble (form, members, hyper-parameters) on the validation split.

Order of work:

1. load the run (`RunPredictor`) and the data it trained on (fingerprint-checked), prepare it with
   the run's scaler and split, and score the **validation** windows with every model. These
   scores are out-of-sample: no model was fitted on them (they only chose each model's best
   epoch, so they are slightly optimistic for every model alike);
2. Ray Tune searches the whole space (`fabray.ensemble.search_space.form_search_space`): the
   **form** (static weights / online dynamic weights / learned gate), the **member subset** (one
   `use_<name>` flag per model) and each form's hyper-parameters (base weights, half-life, floor,
   step cap, temperature, loss; the gate's error half-life and L2). Each trial replays its
   candidate over the validation scores in time order (feedback `horizon` minutes late, as in
   serving; a gate is scored out of fold, cross-fitted by time blocks) and reports the headline
   `lead_score` (DESIGN §1), F1 and PR-AUC (`fabray.ensemble.objective.evaluate_sample`);
3. fixed candidates are scored beside the trials: **every member alone**, the uniform static
   ensemble and the default gate, so the winner is never worse on validation than its best
   member; and a combination wins only if its lead over the best member is clear of the noise
   (one standard error over validation time blocks, `fabray.ensemble.objective.clear_win`),
   else the member is served. The winner (by `ensemble.tune_metric`: `lead_score` by default with F1 breaking ties)
   becomes the served ensemble (`fabray.ensemble.objective.fit_served`): calibrated on validation
   (Platt, isotonic or none by cross-fitted Brier), threshold solved on the calibrated
   probabilities, its trackers replayed to the end of validation. If a single member wins, the
   "ensemble" is that member, and `ensemble.json` says so. The served object's state is
   `ensemble.json`'s "state": serving (the keeper) and `fabray evaluate` both start from it.
   Every candidate goes to `RUN/ensemble_trials.csv`; both files are written atomically and the
   manifest records them with checksums. Each model's own threshold (`model_thresholds`) is
   chosen the same way.

**The decision threshold is not sampled; it is solved.** Given the other parameters the
ensemble's validation probabilities are fixed, and the best threshold over them is a 1-D
problem: `fabray.metrics.best_lead_threshold` (a scan of ~100 quantiles for the lead score; an
exact solve by `fabray.metrics.best_threshold` when the tune metric is F1 or PR-AUC). Sampling
it would spend trials on a dimension with a known answer, and a sampled threshold slightly off
the best makes a good weighting look bad (both scores are step functions of the threshold),
which misleads a model-based search. Every trial therefore reports its metrics at its own best
threshold.

**The search** (TPE through Optuna, or random) is `fabray.ensemble.tune`, the thin Ray Tune
driver; why TPE is said there.

**Static beside it.** The static ensemble over every model (uniform, or the winner's base
weights when the winner is a weighted ensemble of all models) is stored as `static_params`, so
`fabray evaluate` can say on test whether moving the weights pays. The measured comparison of
the forms (validation and test, side by side) is `benchmarks/ensemble_search.py`.

Ray: an embedded `ray.init(address="local", num_cpus=...)` unless `--address` (or RAY_ADDRESS)
names a cluster; only what this command started is shut down.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from fabray.ensemble.objective import (
    ValidationScores,
    candidate_metrics,
    fit_served,
    members_of,
    sample_params,
)
from fabray.ensemble.selection import (
    OBJECTIVE,
    REPORTED,
    SECONDARY,
    configured_point,
    model_alarms,
    objective,
    rank_key,
    search_candidates,
    served_params,
    static_candidates,
)
from fabray.ensemble.tune import SEARCHES, run_tune
from fabray.errors import BadInputError
from fabray.files import strict_json
from fabray.predictor import ENSEMBLE_FILE

logger = logging.getLogger(__name__)

TRIALS_FILE = "ensemble_trials.csv"


# ---------------------------------------------------------------------------- the command


@dataclass
class EnsembleFit:
    """What `fit_ensemble` produced."""

    run_dir: Path
    winner: str
    params: Any  # EnsembleParams over every model, at the served threshold (see `served_params`)
    val_metrics: dict[str, float]
    static_metrics: dict[str, float]
    model_val_metrics: dict[str, dict[str, float]]
    trials: Any  # pandas.DataFrame, best first
    primary: str
    served: Any = None  # fabray.ensemble.ServedEnsemble in its fitted state
    calibration: dict[str, Any] | None = None
    best_by_form: dict[str, dict[str, Any]] | None = None

    def table(self) -> str:
        lines = [f"{'candidate':<26} {'val_lead_score':>14} {'at_start':>8} {'val_f1':>7} {'val_pr_auc':>10} "
                 f"{'threshold':>9}"]

        def num(m: Mapping[str, Any], key: str) -> float:
            value = m.get(key)
            return math.nan if value is None else float(value)

        def line(name: str, m: Mapping[str, Any]) -> str:
            return (f"{name:<26} {num(m, 'lead_score'):>14.1f} {num(m, 'warned_at_start_fraction'):>8.3f} "
                    f"{num(m, 'f1'):>7.4f} {num(m, 'pr_auc'):>10.4f} {num(m, 'threshold'):>9.3f}")

        for name, m in self.model_val_metrics.items():
            lines.append(line(name, m))
        for form, m in (self.best_by_form or {}).items():
            lines.append(line(f"best {form} ({m.get('trial')})", m))
        lines.append(line("static ensemble", self.static_metrics))
        form = self.served.form if self.served is not None else "dynamic"
        members = ",".join(self.served.members) if self.served is not None else ""
        lines.append(line(f"SERVED {form} [{members}]", self.val_metrics))
        return "\n".join(lines)


def validation_scores(predictor: Any, prepared: Any, feedback_lag: int) -> ValidationScores:
    """Score the validation windows with every model of the run; carry what the lead metrics
    need (segments, each row's own delay, the run's SLA and horizon) and what the gate needs
    (each window's last-minute context in the run's raw inputs, its time in minutes)."""
    from fabray.ensemble.gate import context_index
    from fabray.evaluate import minute_delays
    from fabray.run_data import segment_codes

    ends = prepared.splits["val"]
    logger.info("scoring %d validation windows with %s", len(ends), list(predictor.model_names))
    scores = predictor.score_prepared(prepared, ends)
    names, index = context_index(predictor.scaler.features)
    return ValidationScores(
        model_names=tuple(predictor.model_names),
        scores=np.stack([scores[n] for n in predictor.model_names], axis=1),  # [N, M]
        outcomes=prepared.target[ends].astype(np.float64),
        zone_codes=prepared.zone_codes[ends].astype(np.int64),
        zone_names=tuple(prepared.zones),
        feedback_lag=int(feedback_lag),
        segments=segment_codes(prepared, ends),
        minute_delay_s=minute_delays(prepared, ends),
        sla_delay_s=float(predictor.task.sla_delay_s),
        horizon=int(predictor.task.horizon),
        context=prepared.features[ends][:, list(index)].astype(np.float64),  # [N, C]
        context_names=names,
        context_index=index,
        times=prepared.timestamps[ends].astype("datetime64[m]").astype(np.int64).astype(np.float64),
    )


def fit_ensemble(
    run_dir: str | Path,
    *,
    trials: int | None = None,
    search: str = "tpe",
    seed: int = 0,
    config_path: str | Path | None = None,
    train_data: str | Path | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
) -> EnsembleFit:
    """The whole `fabray ensemble` command (see the module docstring). Bad input → BadInputError
    before Ray starts."""
    from fabray.config import load_config
    from fabray.ensemble.diversity import diversity_report
    from fabray.files import atomic_write_json, atomic_write_text, sha256_file, utc_now
    from fabray.predictor import ENSEMBLE_FORMAT, ENSEMBLE_FORMAT_VERSION, RunPredictor
    from fabray.run_data import load_run_data, run_config
    from fabray import run as rd
    from fabray.ray_session import ray_session

    if search not in SEARCHES:
        raise BadInputError(f"--search must be one of {SEARCHES}. Received: {search!r}")
    if trials is not None and trials < 1:
        raise BadInputError(f"--trials must be >= 1. Received: {trials}")
    if num_cpus is not None and num_cpus < 1:
        raise BadInputError(f"--num-cpus must be >= 1. Received: {num_cpus}")
    predictor = RunPredictor.load(run_dir, warm_up=False)
    config = run_config(predictor)
    ens_cfg = load_config(config_path).ensemble if config_path else config.ensemble
    trials = trials or ens_cfg.tune_trials
    primary = ens_cfg.tune_metric
    lag = ens_cfg.feedback_lag or predictor.horizon
    run_data = load_run_data(predictor, config, train_data)
    data = replace(validation_scores(predictor, run_data.prepared, lag),
                   alarm_budget=ens_cfg.max_false_alarms_per_zone_day)
    if np.nansum(data.outcomes) == 0:
        raise BadInputError(
            f"the validation split of {run_data.path} has no delay event: nothing to fit an "
            "ensemble's F1 on (more data, or a lower sla_delay_s)"
        )
    hysteresis = bool(ens_cfg.alarm_hysteresis)
    alarms, model_val = model_alarms(data, primary, hysteresis)
    thresholds = {name: policy.threshold for name, policy in alarms.items()}
    names = data.model_names

    start_point = configured_point(ens_cfg, names)
    with ray_session(address, num_cpus=num_cpus):
        rows = run_tune(
            data, trials=trials, search=search, seed=seed, primary=primary,
            points=[start_point], storage=predictor.run_dir / "ray",
        )
    ok_rows = [r for r in rows if r.get("status") == "ok"]
    if not ok_rows:
        errors = {r.get("error") for r in rows}
        raise RuntimeError(f"every ensemble trial failed: {sorted(map(str, errors))[:3]}")

    # The winner among the trials and the fixed candidates (each member alone among them): the
    # served ensemble is never worse on validation than its best member.
    candidates, winner, verdict = search_candidates(data, rows, primary)
    win_metrics, win_sample = candidates[winner]
    served, served_metrics, calibration = fit_served(win_sample, data, primary, hysteresis)
    # The search compares candidates at bare thresholds and the alarm policy comes after, so a
    # member under its own fitted policy (`model_alarms`) may still beat the winner's served form:
    # then that member is served (never serve what loses to a member on validation).
    guard_note = None
    best_model = max(model_val, key=lambda n: rank_key(model_val[n], primary))
    member = f"member_{best_model}"
    if winner != member and member in candidates \
            and rank_key(model_val[best_model], primary) > rank_key(served_metrics, primary):
        m_served, m_metrics, m_calibration = fit_served(candidates[member][1], data, primary, hysteresis)
        if rank_key(m_metrics, primary) > rank_key(served_metrics, primary):
            guard_note = (f"{winner} ({served.form}) served at {primary} {_fmt(served_metrics.get(primary))} on "
                          f"validation, below {best_model} alone under its alarm policy "
                          f"({_fmt(m_metrics.get(primary))}): {best_model} is served")
            winner, (win_metrics, win_sample) = member, candidates[member]
            served, served_metrics, calibration = m_served, m_metrics, m_calibration
    diversity = diversity_report(win_sample, data, primary)
    best_by_form: dict[str, dict[str, Any]] = {}
    for name, (metrics, _) in candidates.items():
        form = str(metrics.get("form"))
        if form not in best_by_form or rank_key(metrics, primary) > rank_key(best_by_form[form], primary):
            best_by_form[form] = {**strict_json(metrics), "trial": name}

    # The static ensemble over every model, kept for `fabray evaluate`'s comparison.
    win_base = sample_params(win_sample, names).base_weights if win_sample.get("form") in ("static", "dynamic") \
        and members_of(win_sample, names) == names else [1.0] * len(names)
    statics = {}
    for name, params in static_candidates(data, win_base).items():
        metrics, fitted = candidate_metrics(params, data, primary)
        metrics[OBJECTIVE] = objective(metrics, primary)
        statics[name] = (metrics, fitted)
    static_name = max(statics, key=lambda k: rank_key(statics[k][0], primary))
    static_metrics, static_params = statics[static_name]
    notes = [f"served: {served.form} over {list(served.members)} ({winner}), chosen on validation among "
             f"{len(candidates)} candidates ({len(ok_rows)} Tune trials, every member alone, the uniform "
             f"static ensemble, the default gate) by {primary}"]
    if verdict is not None and not verdict["clear"]:
        notes.append(f"the best combination ({verdict['challenger']}) led the best member "
                     f"({verdict['best_member']}) on validation by {verdict['difference']:.1f} lead-score points, "
                     f"within one standard error ({verdict['standard_error']:.1f}, {verdict['blocks']} time "
                     "blocks): not a clear win, so the member is served")
    if guard_note:
        notes.append(guard_note)
    if served.form == "member":
        notes.append(f"a single member ({served.members[0]}) won on validation: the ensemble served is that "
                     "member alone")
    for form in ("static", "dynamic", "gate"):
        if form in best_by_form and form != served.form:
            other = best_by_form[form]
            notes.append(f"best {form} candidate: {primary} {_fmt(other.get(primary))} vs served "
                         f"{_fmt(win_metrics.get(primary))} (validation, before calibration)")
    if "overridden" in calibration:
        notes.append(f"calibration: {calibration['why']}")
    elif calibration.get("chosen") == "identity":
        notes.append("calibration: neither Platt nor isotonic lowered the cross-fitted Brier score on "
                     f"validation ({calibration['brier_cv']}); the probability is served uncalibrated")

    params = served_params(served)
    table = _trials_frame(rows, statics, names, primary, candidates)
    ensemble_doc = {
        "format": ENSEMBLE_FORMAT,
        "format_version": ENSEMBLE_FORMAT_VERSION,
        "fitted_at": utc_now(),
        "run": predictor.version,
        "model_names": list(names),
        "feedback_lag": lag,
        "form": served.form,
        "members": list(served.members),
        "params": params.to_dict(),
        "state": served.to_state(),
        "static_params": static_params.to_dict(),
        "static_name": static_name,
        "model_thresholds": thresholds,
        "model_alarms": {name: policy.to_dict() for name, policy in alarms.items()},
        "max_false_alarms_per_zone_day": data.alarm_budget,
        "winner": winner,
        "winner_sample": strict_json(win_sample),
        "clear_win": strict_json(verdict),
        "calibration": calibration,
        "diversity": strict_json(diversity),
        "notes": notes,
        "search": {
            "algorithm": "optuna-tpe (multivariate)" if search == "tpe" else "random (BasicVariantGenerator)",
            "trials": trials, "trials_ok": len(ok_rows), "seed": seed, "candidates": len(candidates),
            "space": "form (static / dynamic / gate), member subset, each form's hyper-parameters; "
                     "fixed: every member alone, static uniform, default gate",
            "metric": primary, "tie_breaker": SECONDARY[primary],
            "threshold": (
                "solved per trial: lead-score-best on validation (fabray.metrics.best_lead_threshold)"
                + (f" within {data.alarm_budget:g} false-alarm runs per zone-day" if data.alarm_budget is not None else "")
                if primary == "lead_score"
                else "solved per trial: F1-best on validation (fabray.metrics.best_threshold)"
            ),
        },
        "validation": {
            "data": str(run_data.path), "fingerprint": run_data.fingerprint, "windows": int(len(data.outcomes)),
            "events": int(np.nansum(data.outcomes)),
            "dynamic": strict_json(served_metrics), "served": strict_json(served_metrics),
            "served_uncalibrated": strict_json(win_metrics), "static": strict_json(static_metrics),
            "best_by_form": best_by_form,
            "models": {n: strict_json(m) for n, m in model_val.items()},
        },
    }
    run = predictor.run_dir
    atomic_write_json(run / ENSEMBLE_FILE, ensemble_doc)
    atomic_write_text(run / TRIALS_FILE, table.to_csv(index=False))
    manifest = rd.read_manifest(run)
    manifest["ensemble"] = {
        "file": ENSEMBLE_FILE,
        "trials": TRIALS_FILE,
        "fitted_at": ensemble_doc["fitted_at"],
        "winner": winner,
        "form": served.form,
        "members": list(served.members),
        "search": ensemble_doc["search"]["algorithm"],
        "val_metrics": strict_json({k: served_metrics.get(k) for k in ("lead_score", "warned_at_start_fraction", "f1",
                                                                  "pr_auc", "precision", "recall", "threshold")}),
        "checksums": {ENSEMBLE_FILE: sha256_file(run / ENSEMBLE_FILE), TRIALS_FILE: sha256_file(run / TRIALS_FILE)},
    }
    rd.write_manifest(run, manifest)
    logger.info("ensemble of run %s: %s %s (%s), val lead_score %s, F1 %.4f, PR-AUC %.4f", predictor.version,
                served.form, list(served.members), winner, served_metrics.get("lead_score"), served_metrics["f1"],
                served_metrics["pr_auc"])
    return EnsembleFit(
        run_dir=run, winner=winner, params=params, val_metrics=served_metrics,
        static_metrics=static_metrics, model_val_metrics={n: {**m, "threshold": thresholds[n]} for n, m in model_val.items()},
        trials=table, primary=primary, served=served, calibration=calibration, best_by_form=best_by_form,
    )


def _fmt(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "—"
    return f"{v:.4f}" if math.isfinite(v) else "—"


def _trials_frame(
    rows: list[dict[str, Any]], statics: Mapping[str, tuple[dict[str, float], Any]],
    names: Sequence[str], primary: str, candidates: Mapping[str, tuple[dict[str, Any], dict[str, Any]]] | None = None,
) -> Any:
    """Every trial, the fixed candidates and the static ensembles, best first, as a DataFrame."""
    import pandas as pd

    from fabray.ensemble.search_space import BASE_WEIGHT_PREFIX

    records = [dict(r) for r in rows]
    for name, (metrics, sample) in (candidates or {}).items():
        if not any(r.get("trial") == name for r in rows):
            record = {"trial": name, "status": "ok", **{k: v for k, v in sample.items() if k != "members"}}
            record.update({k: metrics[k] for k in REPORTED if k in metrics})
            records.append(record)
    for name, (metrics, params) in statics.items():
        record = {"trial": name, "status": "ok", "half_life": "inf", "floor_share": params.floor * len(names),
                  "step_cap": params.step_cap, "temperature": params.temperature, "loss": params.loss}
        record.update({f"{BASE_WEIGHT_PREFIX}{n}": w for n, w in zip(names, params.base_weights)})
        record.update({k: metrics[k] for k in REPORTED if k in metrics})
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    first = ["trial", "status", "form", "members", "lead_score", "warned_at_start_fraction", "false_alarm_runs_per_zone_day",
             "f1", "pr_auc", "threshold", "precision", "recall", "roc_auc",
             "log_loss", "brier", OBJECTIVE, "half_life", "floor_share", "step_cap", "temperature", "loss"]
    columns = [c for c in first if c in frame.columns] + [c for c in frame.columns if c not in first]
    frame = frame[columns]
    key = frame.apply(lambda r: rank_key(r, primary), axis=1)
    order = sorted(range(len(frame)), key=lambda i: key.iloc[i], reverse=True)
    return frame.iloc[order].reset_index(drop=True)
