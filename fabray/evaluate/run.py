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
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fabray.errors import BadInputError
from fabray.files import strict_json

logger = logging.getLogger(__name__)

KINDS = ("model", "static_ensemble", "ensemble", "baseline")
#: The metric the leaderboard ranks by (DESIGN §1: lead time is the headline).
HEADLINE = "lead_score"


@dataclass
class Candidate:
    """One predictor's test scores and metrics."""

    name: str
    kind: str  # one of KINDS
    prob: np.ndarray  # [W] score per test window
    policy: Any  # fabray.alarm.AlarmPolicy (a bare threshold is taken as the plain policy)
    metrics: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    lead_records: Any = None  # fabray.metrics.LeadEpisodes of its alarms on the test windows
    alarm: Any = None  # [W] bool: the policy over the test series (set by `score_candidate`)

    def __post_init__(self) -> None:
        from fabray.alarm import AlarmPolicy

        if not isinstance(self.policy, AlarmPolicy):
            self.policy = AlarmPolicy.from_dict(float(self.policy))

    @property
    def threshold(self) -> float:
        return float(self.policy.threshold)


@dataclass
class EvaluationResult:
    """Everything `fabray evaluate` measured, with the arrays the report draws."""

    run: str
    data: dict[str, Any]
    task: dict[str, Any]
    model_names: tuple[str, ...]
    candidates: dict[str, Candidate]  # insertion order: models, ensembles, baselines
    target: np.ndarray  # [W] delay_event
    future_delay_s: np.ndarray  # [W] mean delay of the next horizon minutes (the target's value)
    minute_delay_s: np.ndarray  # [W] this minute's transport time − nominal (carried over empty minutes)
    zone_codes: np.ndarray  # [W]
    zones: tuple[str, ...]
    segments: np.ndarray  # [W] segment id (zone change or gap)
    timestamps: np.ndarray  # [W] datetime64
    weights: np.ndarray  # [W, M] dynamic weights used per prediction
    roi: dict[str, Any]
    roi_by_candidate: dict[str, dict[str, Any]]
    ensemble_info: dict[str, Any]
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    cause: np.ndarray | None = None  # [W] the data's diagnostic cause ("" none); None without the column
    episode_causes: np.ndarray | None = None  # [E] cause of each delay episode (None without the column)
    run_dir: str | None = None  # the evaluated run's directory (its manifest feeds the model card)

    def by_kind(self, kind: str) -> dict[str, Candidate]:
        return {n: c for n, c in self.candidates.items() if c.kind == kind}

    def leaderboard(self) -> list[Candidate]:
        """Every candidate, best headline (`lead_score`) first; F1, then PR-AUC break ties."""
        return sorted(
            self.candidates.values(),
            key=lambda c: (_finite(c.metrics.get(HEADLINE)), _finite(c.metrics.get("f1")),
                           _finite(c.metrics.get("pr_auc"))),
            reverse=True,
        )

    def to_json(self) -> dict[str, Any]:
        """DESIGN §8: {"models", "ensemble", "baselines"} plus "static_ensemble", "roi", …"""
        ens = self.by_kind("ensemble")
        static = self.by_kind("static_ensemble")
        baselines: dict[str, Any] = {n: c.metrics for n, c in self.by_kind("baseline").items()}
        baselines.update({n: {"skipped": reason} for n, reason in self.skipped.items()})
        out = {
            "run": self.run,
            "data": self.data,
            "task": self.task,
            "models": {n: c.metrics for n, c in self.by_kind("model").items()},
            "ensemble": next(iter(ens.values())).metrics if ens else None,
            "static_ensemble": next(iter(static.values())).metrics if static else None,
            "baselines": baselines,
            "roi": self.roi,
            "roi_by_candidate": self.roi_by_candidate,
            "ensemble_info": self.ensemble_info,
            "headline": HEADLINE,
            "leaderboard": [_board_entry(c) for c in self.leaderboard()],
            "notes": self.notes,
        }
        return strict_json(out)


def _board_entry(c: Candidate) -> dict[str, Any]:
    lead = c.metrics.get("lead") or {}
    return {
        "name": c.name, "kind": c.kind, HEADLINE: c.metrics.get(HEADLINE),
        "episodes": lead.get("episodes"), "warned_at_start": lead.get("warned_at_start"),
        "warned_at_start_fraction": lead.get("warned_at_start_fraction"),
        "warned_before_onset": lead.get("warned_before_onset"),
        "warned_before_onset_fraction": lead.get("warned_before_onset_fraction"),
        "warned_5min_before_onset": lead.get("warned_5min_before_onset"),
        "median_lead_min": lead.get("median_lead_min"),
        "false_alarm_runs_per_zone_day": lead.get("false_alarm_runs_per_zone_day"),
        "f1": c.metrics.get("f1"), "pr_auc": c.metrics.get("pr_auc"),
    }


def _finite(value: Any, default: float = -math.inf) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return default
    return value if math.isfinite(value) else default


# ---------------------------------------------------------------------------- scoring


def score_candidate(
    cand: Candidate,
    target: np.ndarray,
    segments: np.ndarray,
    minute_delay_s: np.ndarray | None = None,
    sla_delay_s: float = 60.0,
    horizon: int = 10,
    *,
    episode_causes: np.ndarray | None = None,
) -> Candidate:
    """Fill `cand.metrics`: event metrics at its threshold, the threshold, the `lead` object and
    the headline `lead_score` (and `lead_by_cause` when `episode_causes` [E] is given); keep the
    per-episode records in `cand.lead_records`.

    `minute_delay_s` [W] is each window end's own delay (None: no onset is observed before the
    fallback s + horizon)."""
    from fabray.metrics import HEADLINE_METRIC, event_metrics, lead_by_cause, lead_episodes, lead_summary

    target = np.asarray(target, dtype=np.float64)
    if minute_delay_s is None:
        minute_delay_s = np.zeros(target.size)
    cand.alarm = cand.policy.alarms(cand.prob, segments)  # [W]
    metrics: dict[str, Any] = event_metrics(target, cand.prob, cand.threshold, alarm=cand.alarm)
    metrics["threshold"] = float(cand.threshold)
    metrics["alarm_policy"] = cand.policy.to_dict()
    records = lead_episodes(target, cand.alarm, segments, minute_delay_s, sla_delay_s, horizon)
    metrics["lead"] = lead_summary(records)
    metrics[HEADLINE_METRIC] = metrics["lead"][HEADLINE_METRIC]
    if episode_causes is not None:
        metrics["lead_by_cause"] = lead_by_cause(records, episode_causes)
    if cand.note:
        metrics["note"] = cand.note
    cand.metrics = metrics
    cand.lead_records = records
    return cand


def minute_delays(prepared: Any, ends: np.ndarray, scaler: Any = None) -> np.ndarray:
    """[W] float64 each window end's own transport delay, seconds: `prepared.minute_delay_s` when
    the prepared data carries it, else the transport-time feature (carried over empty minutes),
    un-scaled, minus the zone's nominal."""
    from fabray import schema

    ends = np.asarray(ends, dtype=np.int64)
    carried = getattr(prepared, "minute_delay_s", None)
    if carried is not None:
        return np.asarray(carried, dtype=np.float64)[ends]
    scaler = scaler if scaler is not None else prepared.scaler
    tt = schema.FEATURES.index(schema.TRANSPORT_TIME)
    raw_tt = prepared.features[ends, tt].astype(np.float64) * scaler.scale[tt] + scaler.mean[tt]
    nominal = np.asarray([prepared.nominal_s[z] for z in prepared.zones])[prepared.zone_codes[ends]]
    return raw_tt - nominal


def lead_policy(
    target: np.ndarray, prob: np.ndarray, segments: np.ndarray, minute_delay_s: np.ndarray,
    sla_delay_s: float, horizon: int, max_false_alarms_per_zone_day: float | None = None,
) -> Any:
    """The validation alarm policy of a scorer (`fabray.alarm.fit_alarm_policy`: threshold,
    hysteresis and hold by the lead score, within the false-alarm budget when one is set); the
    F1-best plain threshold when validation holds no delay episode (the lead score is undefined
    there)."""
    from fabray.alarm import AlarmPolicy, fit_alarm_policy

    policy, score = fit_alarm_policy(target, prob, segments, minute_delay_s, sla_delay_s, horizon,
                                     max_false_alarms_per_zone_day=max_false_alarms_per_zone_day)
    if not math.isfinite(score):
        return AlarmPolicy(_f1_threshold(target, prob))
    return policy


def block_bootstrap_f1(
    target: np.ndarray,
    alarms: Mapping[str, np.ndarray],
    segments: np.ndarray,
    *,
    block_minutes: int = 60,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """F1 of each alarm series on `resamples` block-bootstrap resamples of the test windows:
    {name: [resamples] F1}. Blocks are `block_minutes` consecutive windows of one segment (delay
    episodes and alarms are autocorrelated, so single windows are not independent); every name
    is scored on the same resampled blocks, so differences between names are paired.

    F1 needs only the TP/FP/FN sums, so each resample is a weighted sum of per-block counts.
    NaN targets are skipped."""
    target = np.asarray(target, dtype=np.float64)
    defined = ~np.isnan(target)
    event = np.nan_to_num(target) == 1
    seg = np.asarray(segments)
    new_seg = np.r_[True, seg[1:] != seg[:-1]]
    pos_in_seg = np.arange(seg.size) - np.maximum.accumulate(np.where(new_seg, np.arange(seg.size), 0))
    block = np.cumsum(new_seg | (pos_in_seg % block_minutes == 0)) - 1  # [W] block id
    n_blocks = int(block[-1]) + 1 if block.size else 0
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n_blocks, np.full(n_blocks, 1.0 / n_blocks), size=resamples) if n_blocks else None
    out = {}
    for name, alarm in alarms.items():
        alarm = np.asarray(alarm, dtype=bool)
        counts = np.stack([
            np.bincount(block, weights=(alarm & event & defined).astype(float), minlength=n_blocks),
            np.bincount(block, weights=(alarm & ~event & defined).astype(float), minlength=n_blocks),
            np.bincount(block, weights=(~alarm & event & defined).astype(float), minlength=n_blocks),
        ], axis=1)  # [blocks, 3]: tp, fp, fn
        if weights is None:
            out[name] = np.full(resamples, np.nan)
            continue
        tp, fp, fn = (weights @ counts).T  # [resamples] each
        den = 2 * tp + fp + fn
        out[name] = np.where(den > 0, 2 * tp / np.maximum(den, 1e-12), 0.0)
    return out


def _f1_threshold(y: np.ndarray, prob: np.ndarray) -> float:
    from fabray.metrics import best_threshold

    return float(min(max(best_threshold(y, prob)[0], 0.0), 1.0))


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
        from fabray.train.run_dir import rows_before

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
    if predictor.task.task != "event":
        raise BadInputError(
            f"fabray evaluate reports event metrics; run {predictor.version} has task "
            f"{predictor.task.task!r} (the delay task's evaluation is not built yet)"
        )
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
    minute_delay_s = minute_delays(prepared, ends, predictor.scaler)  # [W]
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
    st_prob, _ = replay(matrix, target, zone_codes, None, static_params, lag)
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
        val_lead = (segment_codes(vp, val), minute_delays(vp, val, predictor.scaler), sla, horizon,
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
        lookback = predictor.lookback
        try:
            model = bl.fit_gbt(bl.lag_features(rp.features, tr, lookback), rp.target[tr].astype(np.float64),
                               bl.lag_features(rp.features, va, lookback), rp.target[va].astype(np.float64),
                               gbt_config)
        except ValueError as err:
            skipped["gbt"] = f"could not be fitted: {err}"
        else:
            thr = lead_policy(rp.target[va].astype(np.float64),
                                 bl.gbt_scores(model, bl.lag_features(rp.features, va, lookback)), *val_lead)
            cands["gbt"] = Candidate("gbt", "baseline", bl.gbt_scores(model, bl.lag_features(prepared.features, ends, lookback)),
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


# ---------------------------------------------------------------------------- output


def leaderboard_text(result: EvaluationResult) -> str:
    """A fixed-width leaderboard, best headline (`lead_score`) first, F1 and PR-AUC beside it."""
    head = ["rank", "name", "kind", HEADLINE, "at_start", "before_onset", "5min_before", "median_lead_min",
            "fa_runs/zone_day", "f1", "f1_ci95", "pr_auc", "precision", "recall", "threshold"]
    rows = [head]
    for i, c in enumerate(result.leaderboard(), 1):
        m, lead = c.metrics, c.metrics.get("lead") or {}
        ci = m.get("f1_ci95") or [None, None]
        episodes = lead.get("episodes", 0)
        rows.append([
            str(i), c.name, c.kind, _fmt(m.get(HEADLINE), 1),
            *(f"{lead.get(k, 0)}/{episodes}" for k in ("warned_at_start", "warned_before_onset",
                                                          "warned_5min_before_onset")),
            _fmt(lead.get("median_lead_min"), 1), _fmt(lead.get("false_alarm_runs_per_zone_day"), 2),
            _fmt(m.get("f1")), f"{_fmt(ci[0], 3)}–{_fmt(ci[1], 3)}",
            *(_fmt(m.get(k)) for k in ("pr_auc", "precision", "recall")), _fmt(m.get("threshold"), 3),
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(
        f"headline: {HEADLINE} (NAB-style, standard profile: 100 = every episode warned at or before its "
        "start and no false alarm, 0 = never alarming); lead = minutes before the delay is first observed"
    )
    lines += [f"skipped {n}: {why}" for n, why in result.skipped.items()]
    r = result.roi
    lines.append(
        f"ROI (dynamic ensemble): {_fmt(r['delays_caught_per_day'], 1)} of {r['delays_per_day']:.0f} delays/day "
        f"warned at or before their start, {_fmt(r['false_alarms_per_day'], 1)} false alarms/day, net "
        f"{_krw(r['net_value_per_month_krw'])}/month ({_fmt(r['roi_multiple'], 1)}× the GPU cost; "
        f"seed claimed {r['seed_claim_roi_multiple']:.0f}×); stricter (≥ 5 min before the delay is "
        f"observed): net {_krw(r['net_value_per_month_5min_krw'])}/month"
    )
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


def _fmt(value: Any, digits: int = 4) -> str:
    v = _finite(value, math.nan)
    return "—" if not math.isfinite(v) else f"{v:.{digits}f}"


def _krw(value: Any) -> str:
    v = _finite(value, math.nan)
    if not math.isfinite(v):
        return "—"
    return f"{v / 1e6:,.1f}M KRW"


def write_outputs(result: EvaluationResult, *, json_path: str | Path | None = None,
                  report_dir: str | Path | None = None) -> None:
    """`--json` (written atomically) and `--report` (report.md + PNGs, and the model card)."""
    from fabray.files import atomic_write_json

    if json_path is not None:
        path = Path(json_path)
        atomic_write_json(path, result.to_json())
        logger.info("wrote %s", path)
    if report_dir is not None:
        from fabray.evaluate.report import write_report

        out = write_report(result, Path(report_dir))
        logger.info("wrote %s", out)
        if result.run_dir is not None:
            from fabray.evaluate.model_card import write_model_card

            write_model_card(result, result.run_dir, report_dir)  # model_card.md, appended to report.md
