"""What `fabray ensemble` optimizes: every ensemble form replayed over the validation scores and
scored by the headline lead score (DESIGN §1), threshold solved, never sampled.

Pure (no Ray, no files): the Tune driver (`fabray.ensemble.tune`, run by `fabray.ensemble.fit`) loads the validation
predictions once and calls `evaluate_sample` from each trial; `fit_served` turns the winner into
the `ServedEnsemble` that is stored with the run.

A *sample* (a point of `fabray.ensemble.search_space.form_search_space`, or a fixed candidate) is a
dict: "form" (member / static / dynamic / gate), the member subset ("members": [names], or one
`use_<name>` flag per model), and the form's hyper-parameters (`base_weight_<name>`, half_life,
floor_share, step_cap, temperature, loss for static/dynamic; gate_half_life, gate_l2 for a gate).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from fabray.ensemble.params import EnsembleParams
from fabray.ensemble.replay import lagged_errors, replay

#: Lead-time keys (of `fabray.metrics.lead_metrics`) every candidate reports beside the event metrics.
LEAD_KEYS = (
    "lead_score", "lead_score_low_fp", "lead_score_low_fn", "episodes", "warned_at_start_fraction",
    "warned_before_onset_fraction", "warned_5min_before_onset_fraction", "median_lead_min",
    "false_alarm_runs_per_zone_day",
)
#: Time blocks for cross-fitting the gate and choosing the calibrator.
CROSS_FIT_BLOCKS = 5
USE_PREFIX = "use_"
GATE_DEFAULTS = {"gate_half_life": 60.0, "gate_l2": 1e-2}


@dataclass(frozen=True)
class ValidationScores:
    """The validation split as the ensemble sees it, rows in (zone, time) order."""

    model_names: tuple[str, ...]
    scores: np.ndarray  # [N, M] each model's probability
    outcomes: np.ndarray  # [N] delay_event 0/1
    zone_codes: np.ndarray  # [N] zone index per row (the ensemble's trackers are per zone)
    zone_names: tuple[str, ...]  # zone index → name
    feedback_lag: int  # rows (minutes) between a prediction and its known outcome
    segments: np.ndarray | None = None  # [N] id changing at a zone change or gap; None: zone_codes
    minute_delay_s: np.ndarray | None = None  # [N] each row's own delay, s; None: onsets fall back to s + H
    sla_delay_s: float = 60.0
    horizon: int = 10
    context: np.ndarray | None = None  # [N, C] the gate's context (raw inputs); None: none
    context_names: tuple[str, ...] = ()
    context_index: tuple[int, ...] = ()  # the context's columns in the run's inputs
    times: np.ndarray | None = None  # [N] minutes (any origin); None: position within the zone
    alarm_budget: float | None = None  # false-alarm runs per zone-day the site tolerates; None: no budget

    def lead_inputs(self) -> tuple[np.ndarray, np.ndarray, float, int]:
        """(segments, minute_delay_s, sla_delay_s, horizon) for `fabray.metrics` lead functions."""
        segments = self.zone_codes if self.segments is None else self.segments
        delay = np.zeros(self.outcomes.size) if self.minute_delay_s is None else self.minute_delay_s
        return segments, delay, float(self.sla_delay_s), int(self.horizon)

    def row_zones(self) -> list[str]:
        return [self.zone_names[int(c)] for c in self.zone_codes]

    def gate_context(self) -> np.ndarray:
        return np.zeros((self.outcomes.size, 0)) if self.context is None else np.asarray(self.context, np.float64)

    def row_times(self) -> np.ndarray:
        """[N] minutes: `times`, else each row's position within its zone (rows are minutes)."""
        if self.times is not None:
            return np.asarray(self.times, dtype=np.float64)
        codes = np.asarray(self.zone_codes)
        pos = np.zeros(codes.size)
        for c in np.unique(codes):
            sel = codes == c
            pos[sel] = np.arange(int(sel.sum()))
        return pos


# ---------------------------------------------------------------------------- thresholds, metrics


def solve_threshold(data: ValidationScores, prob: np.ndarray, primary: str = "lead_score") -> float:
    """The validation threshold of a probability series [N]: lead-score-best when `primary` is
    "lead_score" (F1-best when validation holds no episode), else F1-best. Within
    `data.alarm_budget` (false-alarm runs per zone-day) when set."""
    from fabray.metrics import best_lead_threshold, best_threshold

    if primary == "lead_score":
        thr, score = best_lead_threshold(data.outcomes, prob, *data.lead_inputs(),
                                         max_false_alarms_per_zone_day=data.alarm_budget)
        if math.isfinite(score):
            return float(min(max(thr, 0.0), 1.0))
    thr, _ = best_threshold(data.outcomes, prob)
    return float(min(max(thr, 0.0), 1.0))


def solve_alarm(data: ValidationScores, prob: np.ndarray, primary: str = "lead_score",
                hysteresis: bool = True) -> Any:
    """The validation alarm policy of a probability series [N] (`fabray.alarm.AlarmPolicy`):
    threshold, hysteresis and hold by the lead score (`fabray.alarm.fit_alarm_policy`) when
    `primary` is "lead_score" and `hysteresis`; else the plain `solve_threshold`. Within
    `data.alarm_budget` (false-alarm runs per zone-day) when set."""
    from fabray.alarm import AlarmPolicy, fit_alarm_policy

    if primary == "lead_score" and hysteresis:
        policy, score = fit_alarm_policy(data.outcomes, prob, *data.lead_inputs(),
                                         max_false_alarms_per_zone_day=data.alarm_budget)
        if math.isfinite(score):
            return policy
    return AlarmPolicy(solve_threshold(data, prob, primary))


def scored_metrics(data: ValidationScores, prob: np.ndarray, threshold: float, alarm: Any = None) -> dict[str, float]:
    """Event metrics, probability losses and the lead keys (`LEAD_KEYS`) of `prob` at `threshold`
    (or under the `fabray.alarm.AlarmPolicy` `alarm`, whose threshold is `threshold`)."""
    from fabray.metrics import event_metrics, lead_metrics, probability_losses

    segments = data.lead_inputs()[0]
    alarms = prob >= threshold if alarm is None else alarm.alarms(prob, segments)
    metrics = event_metrics(data.outcomes, prob, threshold, alarm=alarms)
    metrics.update(probability_losses(data.outcomes, prob))
    lead = lead_metrics(data.outcomes, alarms, *data.lead_inputs())
    metrics.update({k: lead[k] for k in LEAD_KEYS})
    metrics["threshold"] = threshold
    if alarm is not None:
        metrics["alarm_policy"] = alarm.to_dict()
    return metrics


def candidate_metrics(params: EnsembleParams, data: ValidationScores,
                      primary: str = "lead_score") -> tuple[dict[str, float], EnsembleParams]:
    """Replay `params` (every model) over the validation scores; metrics at the threshold
    `solve_threshold` picks for `primary`. Returns (metrics, params with that threshold)."""
    prob, _ = replay(data.scores, data.outcomes, data.zone_codes, params, data.feedback_lag)  # [N]
    threshold = solve_threshold(data, prob, primary)
    return scored_metrics(data, prob, threshold), replace(params, threshold=threshold)


def score_params(
    params: EnsembleParams,
    scores: np.ndarray,
    outcomes: np.ndarray,
    zone_codes: np.ndarray,
    feedback_lag: int,
    *,
    segments: np.ndarray | None = None,
    minute_delay_s: np.ndarray | None = None,
    sla_delay_s: float = 60.0,
    horizon: int | None = None,
) -> dict[str, float]:
    """Replay the ensemble over scores [N, M]; its metrics at the lead-score-best threshold (the
    headline, `fabray.metrics.best_lead_threshold`; F1-best when there is no episode): event
    metrics, log_loss, brier, the `LEAD_KEYS` and "threshold". NaN outcomes are skipped.
    Segments default to the zones, each row's own delay to 0, the horizon to feedback_lag."""
    data = ValidationScores(
        model_names=tuple(f"m{j}" for j in range(np.asarray(scores).shape[1])), scores=np.asarray(scores),
        outcomes=np.asarray(outcomes, dtype=np.float64), zone_codes=np.asarray(zone_codes),
        zone_names=(), feedback_lag=int(feedback_lag), segments=segments, minute_delay_s=minute_delay_s,
        sla_delay_s=sla_delay_s, horizon=int(horizon or feedback_lag),
    )
    prob, _ = replay(data.scores, data.outcomes, data.zone_codes, params, data.feedback_lag)
    return scored_metrics(data, prob, solve_threshold(data, prob, "lead_score"))


# ---------------------------------------------------------------------------- forms


def members_of(sample: Mapping[str, Any], model_names: Sequence[str]) -> tuple[str, ...]:
    """The member subset a sample names (run order): "members", else the `use_<name>` flags
    (a model without a flag is in); an empty subset means every model."""
    if sample.get("members"):
        chosen = set(sample["members"])
        unknown = sorted(chosen - set(model_names))
        if unknown:
            raise ValueError(f"members {unknown} are not models of the run {list(model_names)}")
    else:
        chosen = {n for n in model_names if bool(sample.get(f"{USE_PREFIX}{n}", True))}
    return tuple(n for n in model_names if n in chosen) or tuple(model_names)


def sample_params(sample: Mapping[str, Any], members: Sequence[str]) -> EnsembleParams:
    """EnsembleParams of a static/dynamic sample over `members` (uniform base weights if unset)."""
    from fabray.ensemble.search_space import BASE_WEIGHT_PREFIX, params_from_sample

    filled = {**sample, **{f"{BASE_WEIGHT_PREFIX}{n}": sample.get(f"{BASE_WEIGHT_PREFIX}{n}", 1.0) for n in members}}
    params = params_from_sample(filled, members)
    if sample.get("form") == "static" or (sample.get("form") == "member"):
        return EnsembleParams.static(params.base_weights if sample.get("form") == "static" else (1.0,))
    return params


def gate_params(sample: Mapping[str, Any]) -> Any:
    from fabray.ensemble.gate import GateParams

    return GateParams(half_life=float(sample.get("gate_half_life", GATE_DEFAULTS["gate_half_life"])),
                      l2=float(sample.get("gate_l2", GATE_DEFAULTS["gate_l2"])))


def candidate_prob(sample: Mapping[str, Any], data: ValidationScores) -> tuple[np.ndarray, tuple[str, ...]]:
    """(prob [N] on validation, members) of a sample, uncalibrated. Every row is out of sample
    for the combination rule: the online forms learn only from outcomes already known; a gate's
    rows are scored by gates fitted on other time blocks (`fabray.ensemble.gate.cross_fit`)."""
    from fabray.ensemble.gate import cross_fit

    form = sample.get("form", "dynamic")
    members = members_of(sample, data.model_names)
    cols = [data.model_names.index(n) for n in members]
    s = np.asarray(data.scores, dtype=np.float64)[:, cols]  # [N, K]
    if form == "member":
        if len(members) != 1:
            raise ValueError(f"form 'member' needs exactly one member. Received: {list(members)}")
        return s[:, 0].copy(), members
    if form in ("static", "dynamic"):
        prob, _ = replay(s, data.outcomes, data.zone_codes, sample_params(sample, members), data.feedback_lag)
        return prob, members
    if form == "gate":
        gp = gate_params(sample)
        errors = lagged_errors(s, data.outcomes, data.zone_codes, gp.half_life, "brier", data.feedback_lag)
        prob, _ = cross_fit(s, data.outcomes, data.gate_context(), errors, data.row_times(), gp, data.context_names,
                            k=CROSS_FIT_BLOCKS, purge=float(data.feedback_lag + data.horizon))
        return prob, members
    raise ValueError(f"unknown ensemble form {form!r}; expected member, static, dynamic or gate")


def evaluate_sample(sample: Mapping[str, Any], data: ValidationScores, primary: str = "lead_score") -> dict[str, Any]:
    """Validation metrics of one candidate at its solved threshold, plus "form" and "members"."""
    prob, members = candidate_prob(sample, data)
    metrics: dict[str, Any] = scored_metrics(data, prob, solve_threshold(data, prob, primary))
    metrics["form"] = str(sample.get("form", "dynamic"))
    metrics["members"] = ",".join(members)
    return metrics


def fit_served(sample: Mapping[str, Any], data: ValidationScores, primary: str = "lead_score",
               hysteresis: bool = True) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The `ServedEnsemble` of a chosen sample, in its fitted state.

    1. validation probabilities as `candidate_prob` (out of sample);
    2. calibrator: Platt or isotonic by cross-fitted Brier (`choose_calibrator`, time blocks);
    3. alarm policy solved on the calibrated probabilities (`solve_alarm`: threshold, and with
       `hysteresis` a clear level and a hold, by the lead score);
    4. the rule itself: a gate is refitted on every validation row;
    5. the object replayed over the validation split (`run_online`): trackers warmed up to the
       end of validation, the state serving and `fabray evaluate` start from.

    Returns (served, validation metrics of the calibrated probabilities, calibration report)."""
    from fabray.ensemble.calibrate import Calibrator, choose_calibrator
    from fabray.ensemble.dynamic import DynamicEnsemble
    from fabray.ensemble.gate import fit_gate, time_blocks
    from fabray.ensemble.served import ServedEnsemble, error_tracker_params, run_online

    form = str(sample.get("form", "dynamic"))
    prob, members = candidate_prob(sample, data)
    blocks = time_blocks(data.row_times(), CROSS_FIT_BLOCKS)
    calibrator, report = choose_calibrator(prob, data.outcomes, blocks)
    calibrated = calibrator(prob)
    alarm = solve_alarm(data, calibrated, primary, hysteresis)
    threshold = alarm.threshold
    metrics: dict[str, Any] = scored_metrics(data, calibrated, threshold, alarm)
    if report["chosen"] != "identity":
        # A monotone map keeps the alarms a threshold can draw, but isotonic regression merges
        # neighbouring scores into ties, so fewer operating points remain: never pay for a
        # lower Brier score with a worse warning (the headline) on validation.
        raw_alarm = solve_alarm(data, prob, primary, hysteresis)
        raw_metrics = scored_metrics(data, prob, raw_alarm.threshold, raw_alarm)
        if _rank(raw_metrics, primary) > _rank(metrics, primary):
            report["overridden"] = {"chosen": report["chosen"], primary: metrics.get(primary),
                                    f"{primary}_uncalibrated": raw_metrics.get(primary)}
            report["chosen"] = "identity"
            report["why"] = (f"{report['overridden']['chosen']} lowered the validation {primary} "
                             f"({raw_metrics.get(primary):.4g} → {metrics.get(primary):.4g}): served uncalibrated")
            calibrator, calibrated, alarm, metrics = Calibrator(), prob, raw_alarm, raw_metrics
            threshold = alarm.threshold
    metrics["form"], metrics["members"] = form, ",".join(members)

    cols = [data.model_names.index(n) for n in members]
    gate = None
    if form == "gate":
        gp = gate_params(sample)
        s = np.asarray(data.scores, dtype=np.float64)[:, cols]
        errors = lagged_errors(s, data.outcomes, data.zone_codes, gp.half_life, "brier", data.feedback_lag)
        gate = fit_gate(s, data.outcomes, data.gate_context(), errors, gp, data.context_names)
        inner = DynamicEnsemble(error_tracker_params(len(members), gp.half_life), members)
    else:
        inner = DynamicEnsemble(sample_params(sample, members), members)
    served = ServedEnsemble(form, data.model_names, members, threshold, inner, gate=gate, calibrator=calibrator,
                            context_index=data.context_index if form == "gate" else (), alarm=alarm)
    run_online(served, data.row_zones(), data.scores, data.outcomes, data.feedback_lag,
               data.gate_context() if form == "gate" else None)
    return served, metrics, report


def _rank(metrics: Mapping[str, Any], primary: str) -> tuple[float, float]:
    """(primary, F1) with NaN as −inf: how `fit_served` compares calibrated and raw."""
    def num(v: Any) -> float:
        try:
            v = float(v)
        except (TypeError, ValueError):
            return -math.inf
        return v if math.isfinite(v) else -math.inf
    return num(metrics.get(primary)), num(metrics.get("f1"))


# ---------------------------------------------------------------------------- a win that holds

#: Time blocks for `clear_win` (the one-standard-error rule of a combination over its best member).
WIN_BLOCKS = 10


def block_lead_raw(data: ValidationScores, prob: np.ndarray, threshold: float,
                   k: int = WIN_BLOCKS) -> tuple[np.ndarray, np.ndarray]:
    """Per time block of validation: (raw NAB sum [k] = Σ credit − missed − A_fp·false-alarm units,
    episodes [k]), from the lead score of each block's rows (`fabray.metrics.lead_metrics`:
    score = 100·(raw + E) / (2E), so raw = score·2E/100 − E)."""
    from fabray.ensemble.gate import time_blocks
    from fabray.metrics import lead_metrics

    blocks = time_blocks(data.row_times(), k)
    segments, delay, sla, horizon = data.lead_inputs()
    raw, episodes = np.zeros(k), np.zeros(k)
    for b in range(k):
        rows = blocks == b
        if not rows.any():
            continue
        lead = lead_metrics(data.outcomes[rows], prob[rows] >= threshold, np.asarray(segments)[rows],
                            np.asarray(delay)[rows], sla, horizon)
        e = float(lead["episodes"])
        episodes[b] = e
        raw[b] = lead["lead_score"] * 2.0 * e / 100.0 - e if e > 0 else -0.25 * float(lead["false_alarm_units"])
    return raw, episodes


def clear_win(data: ValidationScores, challenger: Mapping[str, Any], incumbent: Mapping[str, Any],
              primary: str = "lead_score", k: int = WIN_BLOCKS) -> dict[str, Any]:
    """Does `challenger` beat `incumbent` (e.g. the best member) on validation by more than the
    noise? Both replayed (out of sample) at their own solved thresholds; the difference of their
    raw lead sums is taken per time block, and the win is clear when its mean exceeds one
    standard error (the one-standard-error rule: with a short validation period, a combination
    that wins by less is as likely to lose on new data, and the simpler candidate is kept).

    Returns {"clear": bool, "difference": Σ per-block difference in lead-score points,
    "standard_error": its standard error in the same points, "blocks": k}."""
    diffs = []
    total_e = 0.0
    for sample in (challenger, incumbent):
        prob, _ = candidate_prob(sample, data)
        raw, episodes = block_lead_raw(data, prob, solve_threshold(data, prob, primary), k)
        diffs.append(raw)
        total_e = max(total_e, float(episodes.sum()))
    d = diffs[0] - diffs[1]  # [k]
    scale = 100.0 / (2.0 * total_e) if total_e > 0 else 1.0  # raw → lead-score points
    mean, se = float(d.sum() * scale), float(d.std(ddof=1) * np.sqrt(k) * scale) if k > 1 else math.inf
    return {"clear": bool(mean > se), "difference": mean, "standard_error": se, "blocks": k}
