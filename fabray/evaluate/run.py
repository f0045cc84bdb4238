"""`fabray evaluate`: every model, the static and the dynamic ensemble, and the baselines, on test
data the run never trained on; JSON as DESIGN §8, a leaderboard, ROI, and a report.

What is compared, all on the same test windows (each row a window end with a defined target):

- every model of the run, each at its own **validation** threshold (stored by `fabray ensemble`:
  the lead-score-best one, `fabray.metrics.best_lead_threshold`; 0.5 before it ran). Thresholds
  are never chosen on test;
- `"ensemble"`: the ensemble fabray serves (`ensemble.json`: its form, members, calibration and
  threshold), replayed over the test rows in time order with feedback arriving `horizon` minutes
  late through the same object serving uses (`fabray.ensemble.served.run_online`), starting from
  the state fitted at the end of the validation replay, as serving does;
- `"static_ensemble"`: fixed weights, fitted alongside it on validation;
- baselines (`fabray.evaluate.baselines`): persistence, the rules alone (untrained `rule` model), and
  gradient-boosted trees on lag features (trained here on the run's training split, early-stopped
  on its validation split). The rules' and the trees' thresholds are the lead-score-best ones on
  the validation split, as the models'.

Test data: a separate file (e.g. a fab simulated with another seed) is scored in full. The run's
own training file (same fingerprint) is scored on its **test split** only.

Every metrics dict holds `fabray.metrics.EVENT_METRICS`, the `threshold` used, the `lead` object
(DESIGN §8: episodes warned at their start, before the delay is observed, ≥ 5 min before it,
median lead, false-alarm runs per zone-day, lead scores; `fabray.metrics.lead_metrics`) and the
headline `lead_score` beside it; with a `cause` column in the test data also `lead_by_cause`.
The leaderboard ranks by the headline (`HEADLINE`), then F1, then PR-AUC. NaN is written as null.

This module runs the comparison (`evaluate_run`); beside it `result` holds `Candidate` and
`EvaluationResult`, `scoring` scores one candidate, `outputs` prints the leaderboard and writes
`--json` / `--report`.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fabray.errors import BadInputError
from fabray.evaluate.outputs import _fmt
from fabray.evaluate.result import HEADLINE, Candidate, EvaluationResult, _finite
from fabray.evaluate.scoring import block_bootstrap_f1, lead_policy, minute_delays, score_candidate

logger = logging.getLogger(__name__)


def _test_windows(predictor: Any, data_path: Path, split: Any) -> tuple[Any, np.ndarray, dict[str, Any]]:
    from fabray.data.validate import load_validated
    from fabray.data.windows import ends_with_target
    from fabray.files import sha256_file

    if not data_path.is_file():
        raise BadInputError(f"test data file not found: {data_path}")
    fingerprint = sha256_file(data_path)
    same = fingerprint == (predictor.manifest.get("data") or {}).get("fingerprint")
    df = load_validated(data_path)
    if same:
        from fabray.run import rows_before

        prepared = predictor.prepare(rows_before(df, predictor.manifest["data"].get("until")), split)
        ends, used = prepared.splits["test"], "test split of the training file"
    else:
        prepared = predictor.prepare(df, None)
        ends, used = ends_with_target(prepared, prepared.splits["all"]), "all windows with a defined target"
    if len(ends) == 0:
        raise BadInputError(
            f"{data_path}: no window with a defined target to evaluate ({used}); each zone needs more "
            f"than lookback + horizon = {predictor.lookback + predictor.horizon} minutes"
        )
    info = {
        "path": str(data_path.resolve()), "fingerprint": fingerprint, "windows": int(len(ends)),
        "windows_used": used, "zones": list(prepared.zones), "rows": int(prepared.n_rows),
        "events": int(np.nansum(prepared.target[ends])),
        "first_timestamp": str(prepared.timestamps[ends].min().astype("datetime64[m]")),
        "last_timestamp": str(prepared.timestamps[ends].max().astype("datetime64[m]")),
    }
    return prepared, np.asarray(ends, dtype=np.int64), info


def evaluate_run(
    run_dir: str | Path,
    data_path: str | Path,
    *,
    config_path: str | Path | None = None,
    train_data: str | Path | None = None,
    gbt_config: Any = None,
) -> EvaluationResult:
    """Evaluate a run on a test file (see the module docstring)."""
    from fabray.evaluate import baselines as bl
    from fabray.config import load_config
    from fabray.ensemble import EnsembleParams, replay
    from fabray.ensemble.served import ServedEnsemble, run_online
    from fabray.predictor import RunPredictor
    from fabray.evaluate.roi import roi
    from fabray.metrics import episode_causes as causes_of
    from fabray.metrics import episodes as find_episodes
    from fabray.metrics import observed_onsets
    from fabray.run_data import load_run_data, rule_overrides, run_config, segment_codes

    predictor = RunPredictor.load(run_dir)
    config = run_config(predictor)
    spec = predictor.ensemble
    # The site's false-alarm budget the models' policies were fitted under (ensemble.json), so
    # the baselines' are fitted under the same one.
    alarm_budget = (spec.raw.get("max_false_alarms_per_zone_day") if spec is not None
                    else config.ensemble.max_false_alarms_per_zone_day)
    roi_config = load_config(config_path).roi if config_path else config.roi
    task = predictor.task
    notes: list[str] = []
    skipped: dict[str, str] = {}

    prepared, ends, data_info = _test_windows(predictor, Path(data_path), config.split)
    target = prepared.target[ends].astype(np.float64)  # [W]
    zone_codes = prepared.zone_codes[ends].astype(np.int64)
    segments = segment_codes(prepared, ends)
    minute_delay_s = minute_delays(prepared, ends)  # [W]
    sla, horizon = float(task.sla_delay_s), int(task.horizon)
    if np.nansum(target) == 0:
        notes.append("the test windows hold no delay event: recall, F1 and the AUCs are 0 or undefined")

    # The run's own data: train split for the tree baseline, validation for thresholds.
    try:
        run_data = load_run_data(predictor, config, train_data)
    except BadInputError as err:
        if train_data is not None:
            raise
        run_data = None
        notes.append(f"the run's training data is not available ({err}); baselines use threshold 0.5 "
                     "and the tree baseline is skipped")
        logger.warning("%s", notes[-1])

    # Models.
    logger.info("scoring %d test windows with %s", len(ends), list(predictor.model_names))
    scores = predictor.score_prepared(prepared, ends)
    default_thr = float(config.train.event_threshold)
    cands: dict[str, Candidate] = {}
    for name in predictor.model_names:
        policy = spec.model_alarm(name, default_thr) if spec else default_thr
        cands[name] = Candidate(name, "model", scores[name], policy)

    # Ensembles.
    names = predictor.model_names
    matrix = np.stack([scores[n] for n in names], axis=1)  # [W, M]
    if spec is not None:
        dyn_params, static_params, lag = spec.params, spec.static_params, spec.feedback_lag
        ens_info = {"fitted": True, "winner": spec.raw.get("winner"), "params": dyn_params.to_dict(),
                    "static_params": static_params.to_dict(), "feedback_lag": lag,
                    "search": spec.raw.get("search"), "validation": spec.raw.get("validation", {}).get("dynamic"),
                    "calibration": spec.raw.get("calibration"), "diversity": spec.raw.get("diversity")}
    else:
        dyn_params = config.ensemble.to_params(names)
        static_params = EnsembleParams.static([1.0] * len(names), threshold=dyn_params.threshold)
        lag = config.ensemble.feedback_lag or task.horizon
        ens_info = {"fitted": False, "params": dyn_params.to_dict(), "static_params": static_params.to_dict(),
                    "feedback_lag": lag}
        notes.append("no ensemble.json in the run (run `fabray ensemble`): the ensembles use the "
                     "config's untuned defaults")
    ens_info["max_false_alarms_per_zone_day"] = alarm_budget
    # The served ensemble replays the test rows through the same object and code as serving
    # (`run_online`), starting from the state fitted at the end of the validation replay.
    served = predictor.new_ensemble() if spec is not None else ServedEnsemble.from_params(dyn_params, names)
    dyn_prob, weights = run_online(served, [prepared.zones[c] for c in zone_codes], matrix, target, lag,
                                   served.context_from_rows(prepared.features[ends]))
    ens_info["served"] = {**served.describe(), "start": "fitted state" if spec is not None else "fresh"}
    st_prob, _ = replay(matrix, target, zone_codes, static_params, lag)
    cands["static_ensemble"] = Candidate("static_ensemble", "static_ensemble", st_prob, static_params.threshold)
    cands["ensemble"] = Candidate("ensemble", "ensemble", dyn_prob, served.alarm)
    if spec is not None:
        notes += [f"ensemble fitting: {n}" for n in spec.raw.get("notes", [])]

    # Baselines.
    cands["persistence"] = Candidate(
        "persistence", "baseline",
        bl.persistence_alarms(prepared.delay_s, ends, task.horizon, task.sla_delay_s, predictor.lookback), 0.5,
        note="event over the last horizon minutes → event over the next",
    )
    overrides = rule_overrides(predictor, config)
    rule_test = bl.rules_scores(prepared.features, ends, predictor.lookback, overrides)
    rule_thr = default_thr
    if run_data is not None:
        vp = run_data.prepared
        val = vp.splits["val"]
        val_lead = (segment_codes(vp, val), minute_delays(vp, val), sla, horizon,
                    alarm_budget)
        rule_thr = lead_policy(vp.target[val].astype(np.float64), bl.rules_scores(
            vp.features, val, predictor.lookback, overrides), *val_lead)
    cands["rules"] = Candidate("rules", "baseline", rule_test, rule_thr, note="untrained rule model: rule score only")

    if not bl.gbt_available():
        skipped["gbt"] = bl.GBT_MISSING
    elif run_data is None:
        skipped["gbt"] = "the run's training data is not available to fit the trees on"
    else:
        gbt_config = gbt_config or bl.GBTConfig()
        rp = run_data.prepared
        tr = bl.subsample_ends(rp.splits["train"], gbt_config.max_train_rows, gbt_config.seed)
        va = rp.splits["val"]
        def lags(p: Any, at: np.ndarray) -> np.ndarray:  # z-scored with the run's statistics, as the models do
            return bl.lag_features(p.features, at, predictor.lookback, scaler=predictor.scaler)

        try:
            model = bl.fit_gbt(lags(rp, tr), rp.target[tr].astype(np.float64),
                               lags(rp, va), rp.target[va].astype(np.float64), gbt_config)
        except ValueError as err:
            skipped["gbt"] = f"could not be fitted: {err}"
        else:
            thr = lead_policy(rp.target[va].astype(np.float64), bl.gbt_scores(model, lags(rp, va)), *val_lead)
            key = "gbt_baseline" if "gbt" in predictor.model_names else "gbt"  # the run's own LightGBM member is "gbt"
            cands[key] = Candidate(key, "baseline", bl.gbt_scores(model, lags(prepared, ends)),
                                     thr, note=f"LightGBM on {len(bl.LagSpec().names(['x']))} lag features per input")
    cause_w = getattr(prepared, "cause", None)
    cause_w = None if cause_w is None else np.asarray(cause_w, dtype=object)[ends]  # [W]
    ep_causes = None
    if cause_w is not None:
        starts, stops = find_episodes(target, segments)
        ep_causes = causes_of(cause_w, starts, observed_onsets(starts, stops, segments, minute_delay_s, sla, horizon))
    for cand in cands.values():
        score_candidate(cand, target, segments, minute_delay_s, sla, horizon, episode_causes=ep_causes)
    boot = block_bootstrap_f1(target, {n: c.alarm for n, c in cands.items()}, segments)
    for name, cand in cands.items():
        lo, hi = np.nanpercentile(boot[name], [2.5, 97.5])
        cand.metrics["f1_ci95"] = [float(lo), float(hi)]

    # Arrays for the report: this minute's delay (carried over empty minutes) and the target's value.
    nominal = np.asarray([prepared.nominal_s[z] for z in prepared.zones])[zone_codes]
    notes += _nominal_drift_notes(minute_delay_s + nominal, zone_codes, prepared.zones, prepared.nominal_s)
    ens_metrics = cands["ensemble"].metrics
    result = EvaluationResult(
        run=predictor.version, data=data_info, task=task.model_dump(), model_names=tuple(names),
        candidates=cands, target=target, future_delay_s=prepared.delay_s[ends].astype(np.float64),
        minute_delay_s=minute_delay_s, zone_codes=zone_codes, zones=tuple(prepared.zones),
        segments=segments, timestamps=prepared.timestamps[ends], weights=weights,
        roi=roi(ens_metrics, roi_config),
        roi_by_candidate={n: _roi_brief(roi(c.metrics, roi_config)) for n, c in cands.items()},
        ensemble_info=ens_info, skipped=skipped, notes=notes, cause=cause_w, episode_causes=ep_causes,
        run_dir=str(predictor.run_dir),
    )
    _compare_note(result, boot)
    return result


def _nominal_drift_notes(
    transport_s: np.ndarray, zone_codes: np.ndarray, zones: tuple[str, ...], nominal_s: Mapping[str, float],
    tolerance: float = 0.05,
) -> list[str]:
    """Warn where a test zone's median transport time is far from the run's nominal for it:
    delays and events on this file are then measured against another fab's free-flow times."""
    far = []
    for code, zone in enumerate(zones):
        values = transport_s[zone_codes == code]
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        median = float(np.median(values))
        if abs(median / nominal_s[zone] - 1.0) > tolerance:
            far.append(f"{zone} {median:.0f} s vs {nominal_s[zone]:.0f} s")
    if not far:
        return []
    return [
        "the test file's median transport times differ from the run's nominal ones by more than "
        f"{tolerance:.0%} ({'; '.join(far)}): its delays and events are measured against the "
        "training data's free-flow times (set task.nominal_transport_time_s when the site knows them)"
    ]


def _roi_brief(full: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("basis", "delays_caught_per_day", "false_alarms_per_day", "value_per_month_krw", "net_value_per_month_krw",
            "roi_multiple", "delays_warned_5min_per_day", "net_value_per_month_5min_krw",
            "delays_caught_minute_recall_per_day", "net_value_per_month_minute_krw")
    return {k: full[k] for k in keys}


def _compare_note(result: EvaluationResult, boot: Mapping[str, np.ndarray]) -> None:
    """State plainly whether the served ensemble beats its best member and every baseline: on the
    headline lead score, and on F1 with the paired block-bootstrap 95% interval of each F1
    difference."""
    ens = result.candidates["ensemble"].metrics
    score, f1 = _finite(ens.get(HEADLINE)), _finite(ens.get("f1"))
    models = result.by_kind("model").values()
    best = max(models, key=lambda c: (_finite(c.metrics.get(HEADLINE)), _finite(c.metrics.get("f1"))))

    def diff(other: str) -> str:
        lo, hi = np.nanpercentile(boot["ensemble"] - boot[other], [2.5, 97.5])
        return f"F1 difference 95% CI [{lo:+.4f}, {hi:+.4f}]"

    def versus(cand: Candidate) -> str:
        return (f"{HEADLINE} {_fmt(cand.metrics.get(HEADLINE), 1)}, F1 {_fmt(cand.metrics.get('f1'))} "
                f"({diff(cand.name)})")

    best_score = _finite(best.metrics.get(HEADLINE))
    parts = [
        f"dynamic ensemble {HEADLINE} {_fmt(score, 1)}, F1 {_fmt(f1)} vs best model {best.name} "
        f"{versus(best)}: " + ("at least as good" if score >= best_score else "WORSE") + f" on {HEADLINE}"
    ]
    for name, cand in result.by_kind("baseline").items():
        other = _finite(cand.metrics.get(HEADLINE))
        parts.append(f"{'above' if score > other else 'NOT above'} baseline {name} {versus(cand)}")
    verdict = "; ".join(parts)
    result.notes.append(verdict)
    logger.info("%s", verdict)
