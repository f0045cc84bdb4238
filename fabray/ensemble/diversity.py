"""What each member adds (issue 12 §2): the correlation of members' errors and leave-one-out.

- `error_correlation`: Pearson correlation of the members' residuals (score − outcome) over the
  rows with a defined outcome. Members whose errors move together cannot cover for each other,
  whatever the weights.
- `leave_one_out`: the validation metrics of a combination (a sample of
  `fabray.ensemble.objective`) without each of its members in turn (same form and
  hyper-parameters, threshold re-solved), and the change in the headline lead score and F1.

Pure numpy; fed the validation scores by `fabray ensemble`, stored in `ensemble.json`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def error_correlation(scores: np.ndarray, outcomes: np.ndarray) -> np.ndarray:
    """[M, M] correlation of residuals scores [N, M] − outcomes [N] (NaN outcomes skipped;
    a member with constant residuals correlates NaN)."""
    scores = np.asarray(scores, dtype=np.float64)
    y = np.asarray(outcomes, dtype=np.float64)
    keep = ~np.isnan(y)
    resid = scores[keep] - y[keep, None]  # [n, M]
    resid = resid - resid.mean(axis=0)
    norm = np.sqrt((resid * resid).sum(axis=0))  # [M]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (resid.T @ resid) / np.outer(norm, norm)


def leave_one_out(sample: Mapping[str, Any], data: Any, primary: str = "lead_score") -> dict[str, Any]:
    """{"base": {form, members, lead_score, f1}, "without": {member: {lead_score, f1,
    delta_lead_score, delta_f1}}} on validation; empty "without" for a single member."""
    from fabray.ensemble.objective import evaluate_sample, members_of

    members = members_of(sample, data.model_names)
    base = evaluate_sample({**sample, "members": list(members)}, data, primary)
    out: dict[str, Any] = {"base": {"form": base["form"], "members": list(members),
                                    "lead_score": base["lead_score"], "f1": base["f1"]}, "without": {}}
    if len(members) < 2:
        return out
    for name in members:
        rest = [m for m in members if m != name]
        form = sample.get("form", "dynamic") if len(rest) > 1 else "member"
        metrics = evaluate_sample({**sample, "form": form, "members": rest}, data, primary)
        out["without"][name] = {"lead_score": metrics["lead_score"], "f1": metrics["f1"],
                                "delta_lead_score": base["lead_score"] - metrics["lead_score"],
                                "delta_f1": base["f1"] - metrics["f1"]}
    return out


def diversity_report(sample: Mapping[str, Any], data: Any, primary: str = "lead_score") -> dict[str, Any]:
    """Both, JSON-able: the error correlation of every model and leave-one-out of `sample` (the
    served combination), or of the uniform static ensemble of every model when one member is
    served."""
    from fabray.ensemble.objective import members_of

    corr = error_correlation(data.scores, data.outcomes)
    target = sample if len(members_of(sample, data.model_names)) > 1 else {"form": "static",
                                                                          "members": list(data.model_names)}
    return {
        "model_names": list(data.model_names),
        "error_correlation": [[None if not np.isfinite(v) else float(v) for v in row] for row in corr],
        "leave_one_out": leave_one_out(target, data, primary),
    }
