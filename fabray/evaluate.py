"""`fabray evaluate`: every model, the static and the dynamic ensemble, and the baselines, on test
data the run never trained on; JSON as DESIGN §8, a leaderboard, ROI, and a report.

What is compared, all on the same test windows (each row a window end with a defined target):

- every model of the run, each at its own F1-best **validation** threshold (stored by
  `fabray ensemble`; 0.5 before it ran). Thresholds are never chosen on test;
- `"ensemble"`: the dynamic weighted ensemble fabray serves (`ensemble.json`), replayed over the
  test rows in time order with feedback arriving `horizon` minutes late, starting from the base
  weights in every zone (it does not assume the validation period's trackers carry over);
- `"static_ensemble"`: fixed weights, fitted alongside it on validation;
- baselines (`fabray.baselines`): persistence, the rules alone (untrained `rule` model), and
  gradient-boosted trees on lag features (trained here on the run's training split, early-stopped
  and thresholded on its validation split).

Test data: a separate file (e.g. a fab simulated with another seed) is scored in full. The run's
own training file (same fingerprint) is scored on its **test split** only.

Every metrics dict holds `fabray.metrics.EVENT_METRICS`, the `threshold` used and a `lead_time`
summary (minutes of warning before each delay episode; DESIGN §1). NaN is written as null.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fabray.errors import BadInputError

logger = logging.getLogger(__name__)

KINDS = ("model", "static_ensemble", "ensemble", "baseline")


@dataclass
class Candidate:
    """One predictor's test scores and metrics."""

    name: str
    kind: str  # one of KINDS
    prob: np.ndarray  # [W] score per test window
    threshold: float
    metrics: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def alarm(self) -> np.ndarray:
        return self.prob >= self.threshold  # [W]


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

    def by_kind(self, kind: str) -> dict[str, Candidate]:
        return {n: c for n, c in self.candidates.items() if c.kind == kind}

    def leaderboard(self) -> list[Candidate]:
        """Every candidate, best F1 first (PR-AUC breaks ties)."""
        return sorted(
            self.candidates.values(),
            key=lambda c: (_finite(c.metrics.get("f1")), _finite(c.metrics.get("pr_auc"))),
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
            "leaderboard": [
                {"name": c.name, "kind": c.kind, "f1": c.metrics.get("f1"), "pr_auc": c.metrics.get("pr_auc")}
                for c in self.leaderboard()
            ],
            "notes": self.notes,
        }
        return _json_safe(out)


def _finite(value: Any, default: float = -math.inf) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return default
    return value if math.isfinite(value) else default


def _json_safe(obj: Any) -> Any:
    """NaN/inf → None, numpy → Python, recursively (strict JSON)."""
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


# ---------------------------------------------------------------------------- scoring


def score_candidate(cand: Candidate, target: np.ndarray, segments: np.ndarray) -> Candidate:
    """Fill `cand.metrics`: event metrics at its threshold, the threshold, lead-time summary."""
    from fabray.metrics import event_metrics, lead_time_summary, lead_times

    metrics: dict[str, Any] = event_metrics(target, cand.prob, cand.threshold)
    metrics["threshold"] = float(cand.threshold)
    metrics["lead_time"] = lead_time_summary(lead_times(target, cand.alarm, segments))
    if cand.note:
        metrics["note"] = cand.note
    cand.metrics = metrics
    return cand


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


def rule_overrides(predictor: Any, config: Any) -> dict[str, Any]:
    """The `rule` model's hyper-parameters as the run trained it (its stored overrides, which
    carry the scaler's mean and scale), else the config's plus the run's scaler."""
    entry = predictor.manifest.get("models", {}).get("rule") or {}
    path = predictor.run_dir / entry["config"] if entry.get("config") else None
    if path is not None and path.is_file():
        overrides = dict(json.loads(path.read_text()).get("overrides") or {})
    else:
        overrides = dict(config.train.model_overrides.get("rule", {}))
    if "feature_mean" not in overrides and "feature_scale" not in overrides:
        overrides["feature_mean"] = [float(v) for v in predictor.scaler.mean]
        overrides["feature_scale"] = [float(v) for v in predictor.scaler.scale]
    return overrides


def _test_windows(predictor: Any, data_path: Path, split: Any) -> tuple[Any, np.ndarray, dict[str, Any]]:
    from fabray.data.validate import load_validated
    from fabray.data.windows import ends_with_target
    from fabray.predictor import sha256_file

    if not data_path.is_file():
        raise BadInputError(f"test data file not found: {data_path}")
    fingerprint = sha256_file(data_path)
    same = fingerprint == (predictor.manifest.get("data") or {}).get("fingerprint")
    df = load_validated(data_path)
    if same:
        prepared = predictor.prepare(df, split)
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
    from fabray import baselines as bl
    from fabray.config import load_config
    from fabray.ensemble import EnsembleParams, replay
    from fabray.predictor import RunPredictor
    from fabray.roi import roi
    from fabray.run_data import load_run_data, run_config, segment_codes

    predictor = RunPredictor.load(run_dir)
    if predictor.task.task != "event":
        raise BadInputError(
            f"fabray evaluate reports event metrics; run {predictor.version} has task "
            f"{predictor.task.task!r} (the delay task's evaluation is not built yet)"
        )
    config = run_config(predictor)
    roi_config = load_config(config_path).roi if config_path else config.roi
    task = predictor.task
    notes: list[str] = []
    skipped: dict[str, str] = {}

    prepared, ends, data_info = _test_windows(predictor, Path(data_path), config.split)
    target = prepared.target[ends].astype(np.float64)  # [W]
    zone_codes = prepared.zone_codes[ends].astype(np.int64)
    segments = segment_codes(prepared, ends)
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
    spec = predictor.ensemble
    default_thr = float(config.train.event_threshold)
    cands: dict[str, Candidate] = {}
    for name in predictor.model_names:
        thr = spec.model_thresholds.get(name, default_thr) if spec else default_thr
        cands[name] = Candidate(name, "model", scores[name], thr)

    # Ensembles.
    names = predictor.model_names
    matrix = np.stack([scores[n] for n in names], axis=1)  # [W, M]
    if spec is not None:
        dyn_params, static_params, lag = spec.params, spec.static_params, spec.feedback_lag
        ens_info = {"fitted": True, "winner": spec.raw.get("winner"), "params": dyn_params.to_dict(),
                    "static_params": static_params.to_dict(), "feedback_lag": lag,
                    "search": spec.raw.get("search"), "validation": spec.raw.get("validation", {}).get("dynamic")}
    else:
        dyn_params = config.ensemble.to_params(names)
        static_params = EnsembleParams.static([1.0] * len(names), threshold=dyn_params.threshold)
        lag = config.ensemble.feedback_lag or task.horizon
        ens_info = {"fitted": False, "params": dyn_params.to_dict(), "static_params": static_params.to_dict(),
                    "feedback_lag": lag}
        notes.append("no ensemble.json in the run (run `fabray ensemble`): the ensembles use the "
                     "config's untuned defaults")
    dyn_prob, weights = replay(matrix, target, zone_codes, None, dyn_params, lag)
    st_prob, _ = replay(matrix, target, zone_codes, None, static_params, lag)
    cands["static_ensemble"] = Candidate("static_ensemble", "static_ensemble", st_prob, static_params.threshold)
    cands["ensemble"] = Candidate("ensemble", "ensemble", dyn_prob, dyn_params.threshold)
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
        val = run_data.prepared.splits["val"]
        rule_thr = _f1_threshold(run_data.prepared.target[val], bl.rules_scores(
            run_data.prepared.features, val, predictor.lookback, overrides))
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
            thr = _f1_threshold(rp.target[va], bl.gbt_scores(model, bl.lag_features(rp.features, va, lookback)))
            cands["gbt"] = Candidate("gbt", "baseline", bl.gbt_scores(model, bl.lag_features(prepared.features, ends, lookback)),
                                     thr, note=f"LightGBM on {len(bl.LagSpec().names(['x']))} lag features per input")
    for cand in cands.values():
        score_candidate(cand, target, segments)
    boot = block_bootstrap_f1(target, {n: c.alarm for n, c in cands.items()}, segments)
    for name, cand in cands.items():
        lo, hi = np.nanpercentile(boot[name], [2.5, 97.5])
        cand.metrics["f1_ci95"] = [float(lo), float(hi)]

    # Arrays for the report: this minute's delay (carried over empty minutes) and the target's value.
    from fabray import schema

    tt = schema.FEATURES.index(schema.TRANSPORT_TIME)
    raw_tt = prepared.features[ends, tt].astype(np.float64) * predictor.scaler.scale[tt] + predictor.scaler.mean[tt]
    nominal = np.asarray([prepared.nominal_s[z] for z in prepared.zones])[zone_codes]
    notes += _nominal_drift_notes(raw_tt, zone_codes, prepared.zones, prepared.nominal_s)
    ens_metrics = cands["ensemble"].metrics
    result = EvaluationResult(
        run=predictor.version, data=data_info, task=task.model_dump(), model_names=tuple(names),
        candidates=cands, target=target, future_delay_s=prepared.delay_s[ends].astype(np.float64),
        minute_delay_s=raw_tt - nominal, zone_codes=zone_codes, zones=tuple(prepared.zones),
        segments=segments, timestamps=prepared.timestamps[ends], weights=weights,
        roi=roi(ens_metrics, roi_config),
        roi_by_candidate={n: _roi_brief(roi(c.metrics, roi_config)) for n, c in cands.items()},
        ensemble_info=ens_info, skipped=skipped, notes=notes,
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
    keys = ("delays_caught_per_day", "false_alarms_per_day", "value_per_month_krw", "net_value_per_month_krw",
            "roi_multiple", "delays_warned_in_advance_per_day", "net_value_per_month_warned_krw")
    return {k: full[k] for k in keys}


def _compare_note(result: EvaluationResult, boot: Mapping[str, np.ndarray]) -> None:
    """State plainly whether the served ensemble beats its best member and every baseline, with
    the paired block-bootstrap 95% interval of each F1 difference."""
    ens = result.candidates["ensemble"].metrics
    f1 = _finite(ens.get("f1"))
    best = max(result.by_kind("model").values(), key=lambda c: _finite(c.metrics.get("f1")))

    def diff(other: str) -> str:
        lo, hi = np.nanpercentile(boot["ensemble"] - boot[other], [2.5, 97.5])
        return f"difference 95% CI [{lo:+.4f}, {hi:+.4f}]"

    best_f1 = _finite(best.metrics.get("f1"))
    parts = [
        f"dynamic ensemble F1 {f1:.4f} vs best model {best.name} {best_f1:.4f}: "
        + ("at least as good" if f1 >= best_f1 else "WORSE") + f" ({diff(best.name)})"
    ]
    for name, cand in result.by_kind("baseline").items():
        other = _finite(cand.metrics.get("f1"))
        parts.append(f"{'above' if f1 > other else 'NOT above'} baseline {name} {other:.4f} ({diff(name)})")
    verdict = "; ".join(parts)
    result.notes.append(verdict)
    logger.info("%s", verdict)


# ---------------------------------------------------------------------------- output


def leaderboard_text(result: EvaluationResult) -> str:
    """A fixed-width leaderboard, best F1 first."""
    head = ["rank", "name", "kind", "f1", "f1_ci95", "pr_auc", "precision", "recall", "accuracy", "threshold",
            "caught", "median_lead_min"]
    rows = [head]
    for i, c in enumerate(result.leaderboard(), 1):
        m, lead = c.metrics, c.metrics.get("lead_time", {})
        ci = m.get("f1_ci95") or [None, None]
        rows.append([
            str(i), c.name, c.kind, _fmt(m.get("f1")), f"{_fmt(ci[0], 3)}–{_fmt(ci[1], 3)}",
            *(_fmt(m.get(k)) for k in ("pr_auc", "precision", "recall", "accuracy")),
            _fmt(m.get("threshold"), 3), f"{lead.get('caught', 0)}/{lead.get('episodes', 0)}",
            _fmt(lead.get("median_lead_min"), 1),
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines += [f"skipped {n}: {why}" for n, why in result.skipped.items()]
    r = result.roi
    lines.append(
        f"ROI (dynamic ensemble): {_fmt(r['delays_caught_per_day'], 1)} of {r['delays_per_day']:.0f} delays/day "
        f"caught, {_fmt(r['false_alarms_per_day'], 1)} false alarms/day, net "
        f"{_krw(r['net_value_per_month_krw'])}/month ({_fmt(r['roi_multiple'], 1)}× the GPU cost; "
        f"seed claimed {r['seed_claim_roi_multiple']:.0f}×)"
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
    """`--json` (written atomically) and `--report` (report.md + PNGs)."""
    from fabray.train.run_dir import atomic_write_json

    if json_path is not None:
        path = Path(json_path)
        atomic_write_json(path, result.to_json())
        logger.info("wrote %s", path)
    if report_dir is not None:
        from fabray.report import write_report

        out = write_report(result, Path(report_dir))
        logger.info("wrote %s", out)
