"""Choosing the served ensemble (pure: no Ray, no files): what the search maximizes, how
candidates rank, the fixed candidates beside the Tune trials, and the winner under the one-SE
"clear win" rule; plus each model's alarm policy and the states serving starts from.

`fabray.ensemble.tune` is the thin Ray Tune driver around these: it runs the trials
(`fabray.ensemble.objective.evaluate_sample` in each); then `fabray.ensemble.fit` calls
`search_candidates` and writes `ensemble.json`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from fabray.ensemble.objective import (
    LEAD_KEYS,
    ValidationScores,
    evaluate_sample,
    scored_metrics,
    solve_alarm,
)

OBJECTIVE = "objective"
#: Weight of the tie-breaking metric in the single number the searcher maximizes; small enough
#: that it only reorders trials whose primary metric differs by less than a thousandth.
TIE_BREAK_WEIGHT = 1e-3
#: The tie-breaking metric of each tune metric.
SECONDARY = {"lead_score": "f1", "f1": "pr_auc", "pr_auc": "f1"}

#: The metric keys a Tune trial reports (the rest of a trial row is its sampled point).
REPORTED = (
    "form", "members", "f1", "pr_auc", "roc_auc", "precision", "recall", "accuracy", "balanced_accuracy", "threshold",
    "log_loss", "brier", *LEAD_KEYS, OBJECTIVE,
)


def objective(metrics: Mapping[str, float], primary: str) -> float:
    """The one number the searcher maximizes: primary + 1e-3 × its tie-breaker (`SECONDARY`)."""
    value = _finite(metrics.get(primary)) + TIE_BREAK_WEIGHT * _finite(metrics.get(SECONDARY[primary]))
    return float(value)


def rank_key(metrics: Mapping[str, float], primary: str) -> tuple[float, float]:
    """Sort key of a candidate (higher is better): (primary, tie-breaker), NaN as -inf."""
    secondary = SECONDARY[primary]
    return (_finite(metrics.get(primary), -math.inf), _finite(metrics.get(secondary), -math.inf))


def _finite(value: Any, default: float = 0.0) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return default
    return value if math.isfinite(value) else default


def static_candidates(data: ValidationScores, base_weights: Sequence[float]) -> dict[str, Any]:
    """The static ensembles worth comparing: uniform weights, and fixed `base_weights`."""
    from fabray.ensemble import EnsembleParams

    m = len(data.model_names)
    out = {"static_uniform": EnsembleParams.static([1.0] * m)}
    if not np.allclose(np.asarray(base_weights) / np.sum(base_weights), 1.0 / m):
        out["static_winner_base"] = EnsembleParams.static(list(base_weights))
    return out


def fitted_state(params: Any, data: ValidationScores) -> dict[str, Any]:
    """The online ensemble after every validation outcome, fed zone by zone in time order:
    the state serving starts from (trackers warmed up on the latest labelled data)."""
    from fabray.ensemble import DynamicEnsemble

    ensemble = DynamicEnsemble(params, data.model_names)
    defined = ~np.isnan(data.outcomes)
    for row in np.flatnonzero(defined):
        ensemble.update(data.zone_names[int(data.zone_codes[row])], data.scores[row], data.outcomes[row])
    return ensemble.to_state()


def model_alarms(
    data: ValidationScores, primary: str = "lead_score", hysteresis: bool = True,
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """Each model's validation alarm policy (`solve_alarm`: threshold, hysteresis and hold by the
    lead score by default), and its validation metrics under it (event metrics, losses, lead keys)."""
    policies, metrics = {}, {}
    for j, name in enumerate(data.model_names):
        policy = solve_alarm(data, data.scores[:, j], primary, hysteresis)
        policies[name] = policy
        metrics[name] = scored_metrics(data, data.scores[:, j], policy.threshold, policy)
    return policies, metrics


def configured_point(ens_config: Any, model_names: Sequence[str]) -> dict[str, Any]:
    """The config's ensemble (uniform base weights unless configured) as a search-space point,
    clipped into the space's ranges: the search evaluates it first."""
    from fabray.ensemble import search_space
    from fabray.ensemble.search_space import BASE_WEIGHT_PREFIX

    space = search_space(model_names)
    m = len(model_names)
    weights = ens_config.base_weights or {}
    from fabray.ensemble.objective import GATE_DEFAULTS

    point = {
        "form": "dynamic",
        **{f"use_{n}": True for n in model_names},
        **GATE_DEFAULTS,  # unused by a dynamic point; Optuna wants every dimension of the space
        "half_life": ens_config.half_life,
        "floor_share": ens_config.floor * m,
        "step_cap": ens_config.step_cap,
        "temperature": ens_config.temperature,
        "loss": ens_config.loss,
        **{f"{BASE_WEIGHT_PREFIX}{n}": float(weights.get(n, 1.0)) for n in model_names},
    }
    top = max(point[f"{BASE_WEIGHT_PREFIX}{n}"] for n in model_names) or 1.0
    for n in model_names:  # only ratios matter: bring the largest to the range's top
        point[f"{BASE_WEIGHT_PREFIX}{n}"] *= space[f"{BASE_WEIGHT_PREFIX}{n}"]["high"] / top
    for key, spec in space.items():
        if key in point and spec["type"] in ("uniform", "loguniform"):
            point[key] = float(min(max(point[key], spec["low"]), spec["high"]))
    return point


def served_params(served: Any) -> Any:
    """EnsembleParams over every model that describe the served ensemble for readers of
    `ensemble.json`'s "params" (the served threshold; a dynamic ensemble over every model: its
    own parameters; otherwise fixed weights 1 on the members, 0 elsewhere). The served object
    itself is the "state"."""
    from fabray.ensemble import EnsembleParams

    if served.form == "dynamic" and served.members == served.model_names:
        return replace(served.params, threshold=served.threshold)
    if served.form == "static" and served.members == served.model_names:
        return replace(served.params, threshold=served.threshold)
    base = [1.0 if n in served.members else 0.0 for n in served.model_names]
    return EnsembleParams.static(base, threshold=served.threshold)


def search_candidates(
    data: ValidationScores, rows: list[dict[str, Any]], primary: str
) -> tuple[dict[str, tuple[dict[str, Any], dict[str, Any]]], str, dict[str, Any] | None]:
    """Every scored candidate: the Tune trials (`rows`) and the fixed ones
    (`fabray.ensemble.search_space.fixed_candidates`: each member alone, the uniform static
    ensemble, the default gate), scored here.

    The winner is the best by `rank_key`, unless it is a combination whose lead over the best
    member is not clear of the noise (`fabray.ensemble.objective.clear_win`, one standard error
    over validation time blocks): then the best member wins. Returns ({name: (metrics, sample)},
    the winner's name, the clear-win verdict (None when a member won outright))."""
    from fabray.ensemble.objective import clear_win
    from fabray.ensemble.search_space import fixed_candidates

    candidates: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for row in rows:
        if row.get("status") == "ok":
            sample = {k: v for k, v in row.items() if k not in REPORTED and k not in ("trial", "status", "error")}
            sample["form"] = row["form"]
            candidates[row["trial"]] = ({k: row[k] for k in REPORTED if k in row}, sample)
    for name, sample in fixed_candidates(data.model_names).items():
        metrics = evaluate_sample(sample, data, primary)
        metrics[OBJECTIVE] = objective(metrics, primary)
        candidates[name] = (metrics, sample)
    winner = max(candidates, key=lambda k: rank_key(candidates[k][0], primary))
    verdict = None
    if candidates[winner][0].get("form") != "member":
        members = [n for n in candidates if candidates[n][0].get("form") == "member"]
        best_member = max(members, key=lambda k: rank_key(candidates[k][0], primary))
        verdict = {**clear_win(data, candidates[winner][1], candidates[best_member][1], primary),
                   "challenger": winner, "best_member": best_member}
        if not verdict["clear"]:
            winner = best_member
    return candidates, winner, verdict
