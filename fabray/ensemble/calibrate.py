"""Calibration of the served probability (issue 12 §5): operators read it as a chance.

Two maps, both monotone non-decreasing, fitted on the validation split:

- **Platt**: p' = σ(a·logit(p) + b), a logistic regression on the logit (2 parameters; smooth,
  cannot overfit much, but only bends the curve one way);
- **isotonic**: the pool-adjacent-violators step function (scikit-learn's `IsotonicRegression`,
  stored as its breakpoints and applied with linear interpolation, clipped at both ends).

`choose_calibrator` picks the map with the lowest **cross-fitted** Brier score (each time block
scored by a map fitted on the other blocks, so the choice is not made on rows a map has seen),
then refits the winner on every validation row. The identity map competes too: a map that makes
the Brier score worse out of sample (a short or shifting validation period) is not served, and the
report says so (`chosen: "identity"`). Pure numpy (+ scikit-learn for the isotonic fit, already a dependency); a `Calibrator`
round-trips through `to_dict` / `from_dict` (JSON).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fabray.numeric import sigmoid

METHODS = ("platt", "isotonic")
_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class Calibrator:
    """A fitted monotone map of probabilities. method "identity" | "platt" | "isotonic".

    params: platt {"a", "b"}; isotonic {"x": [K], "y": [K]} breakpoints (x increasing)."""

    method: str = "identity"
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in ("identity", *METHODS):
            raise ValueError(f"Calibrator.method must be identity, platt or isotonic. Received: {self.method!r}")
        if self.method == "platt" and not {"a", "b"} <= set(self.params):
            raise ValueError(f"a Platt calibrator needs params a and b. Received: {sorted(self.params)}")
        if self.method == "isotonic":
            x, y = (np.asarray(self.params.get(k, []), dtype=np.float64) for k in ("x", "y"))
            if x.size == 0 or x.shape != y.shape or (np.diff(x) < 0).any():
                raise ValueError("an isotonic calibrator needs breakpoints x (increasing) and y of one length. "
                                 f"Received: {x.size} x and {y.size} y")

    def __call__(self, prob: np.ndarray | float) -> np.ndarray:
        """Calibrated probabilities, same shape as `prob` (float64, in [0, 1])."""
        p = np.asarray(prob, dtype=np.float64)
        if self.method == "platt":
            z = self.params["a"] * _logit(p) + self.params["b"]
            return sigmoid(z)
        if self.method == "isotonic":
            return np.clip(np.interp(p, self.params["x"], self.params["y"]), 0.0, 1.0)
        return p.copy()

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "params": {k: (list(map(float, v)) if isinstance(v, (list, tuple, np.ndarray))
                                                      else float(v)) for k, v in self.params.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Calibrator:
        if not data:
            return cls()
        return cls(str(data.get("method", "identity")), dict(data.get("params") or {}))


def fit_platt(prob: np.ndarray, y: np.ndarray, l2: float = 1e-4, iters: int = 50) -> Calibrator:
    """Platt scaling by Newton's method on the log-loss (a tiny ridge keeps it defined when the
    classes separate). NaN outcomes are skipped."""
    x, y = _defined(prob, y)
    z = _logit(x)
    w = np.zeros(2)  # a, b
    a_design = np.stack([z, np.ones_like(z)], axis=1)  # [N, 2]
    w[0] = 1.0
    for _ in range(iters):
        p = sigmoid(a_design @ w)
        grad = a_design.T @ (p - y) / max(y.size, 1) + l2 * w
        hess = (a_design * (p * (1 - p))[:, None]).T @ a_design / max(y.size, 1) + l2 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return Calibrator("platt", {"a": float(w[0]), "b": float(w[1])})


def fit_isotonic(prob: np.ndarray, y: np.ndarray) -> Calibrator:
    """Isotonic regression of the outcome on the probability (non-decreasing, clipped to [0, 1])."""
    from sklearn.isotonic import IsotonicRegression

    x, y = _defined(prob, y)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(x, y)
    return Calibrator("isotonic", {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()})


_FITTERS = {"platt": fit_platt, "isotonic": fit_isotonic}


def brier(prob: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error of probabilities against 0/1 outcomes (NaN outcomes skipped)."""
    x, y = _defined(prob, y)
    return float(np.mean((x - y) ** 2)) if y.size else math.nan


def cross_fitted(prob: np.ndarray, y: np.ndarray, blocks: np.ndarray, method: str) -> np.ndarray:
    """[N] each row calibrated by a `method` map fitted on the rows of the other blocks (rows of
    a block whose complement holds no event of both classes stay uncalibrated)."""
    prob = np.asarray(prob, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    blocks = np.asarray(blocks)
    out = prob.copy()
    for b in np.unique(blocks):
        train = blocks != b
        yt = y[train]
        yt = yt[~np.isnan(yt)]
        if yt.size == 0 or yt.min() == yt.max():
            continue
        out[~train] = _FITTERS[method](prob[train], y[train])(prob[~train])
    return out


def choose_calibrator(prob: np.ndarray, y: np.ndarray, blocks: np.ndarray) -> tuple[Calibrator, dict[str, Any]]:
    """The map of lowest cross-fitted Brier (identity, Platt or isotonic), refitted on every row.

    Args:
        prob: [N] validation probabilities (out-of-sample for the combination rule).
        y: [N] 0/1 outcomes, NaN where undefined.
        blocks: [N] time-block id of each row (cross-fitting folds).

    Returns:
        (calibrator, report {"chosen", "brier_cv": {identity, platt, isotonic}, "brier_fit"}).
    """
    prob = np.asarray(prob, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if prob.shape != y.shape or prob.ndim != 1:
        raise ValueError(f"prob and y must be [N] of one length. Received: {prob.shape} and {y.shape}")
    defined = y[~np.isnan(y)]
    report: dict[str, Any] = {"brier_cv": {"identity": brier(prob, y)}}
    if defined.size == 0 or defined.min() == defined.max():
        report["chosen"] = "identity"
        report["why"] = "validation holds one class only: nothing to calibrate on"
        return Calibrator(), report
    for method in METHODS:
        report["brier_cv"][method] = brier(cross_fitted(prob, y, blocks, method), y)
    chosen = min(("identity", *METHODS), key=lambda m: report["brier_cv"][m])  # ties: identity first
    calibrator = _FITTERS[chosen](prob, y) if chosen in _FITTERS else Calibrator()
    report["chosen"] = chosen
    report["brier_fit"] = brier(calibrator(prob), y)
    return calibrator, report


def reliability(prob: np.ndarray, y: np.ndarray, bins: int = 10) -> dict[str, list[float]]:
    """Reliability-diagram data: per equal-width probability bin, the mean probability, the event
    frequency and the count (empty bins left out)."""
    x, y = _defined(prob, y)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(x, edges[1:-1]), 0, bins - 1)
    out: dict[str, list[float]] = {"mean_prob": [], "event_rate": [], "count": []}
    for b in range(bins):
        sel = idx == b
        if sel.any():
            out["mean_prob"].append(float(x[sel].mean()))
            out["event_rate"].append(float(y[sel].mean()))
            out["count"].append(int(sel.sum()))
    return out


def _defined(prob: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prob = np.asarray(prob, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if prob.size != y.size:
        raise ValueError(f"prob and y need one value per row. Received: {prob.size} and {y.size}")
    keep = ~np.isnan(y)
    return prob[keep], y[keep]
