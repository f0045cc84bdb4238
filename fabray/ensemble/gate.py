"""The learned gate (DESIGN §5, issue 12 §1): member weights as a function of the zone's situation.

    w(x) = softmax(V · x)          x = [context (standardized), recent member errors (standardized), 1]
    p    = Σ_m w_m(x) · s_m        (a linear opinion pool, as the online ensemble)

A mixture of experts with a linear gate. The context is what serving also has for every window:
the last minute's vehicle utilisation, queue length, vehicles down, blocked segments (the run's
raw inputs; the gate standardizes them itself) and the time to the next shift change (the calendar context column, when the run
has it), plus each member's **recent error** on the zone (the decayed Brier score of
`DynamicEnsemble.errors`, fed by outcomes `feedback_lag` minutes late, computed offline by
`fabray.ensemble.replay.lagged_errors`). V = 0 is the uniform static ensemble; the L2 penalty
pulls towards it, so a gate with nothing to learn falls back to equal weights.

Fitted by L-BFGS on the log-loss of p (+ l2·‖V‖²) on the validation split. **Cross-fitting by time
blocks** (`cross_fit`): the validation period is cut into K contiguous time blocks; each block is
scored by a gate fitted on the other blocks, minus `purge` minutes on either side of it (the
label looks `horizon` minutes ahead and errors decay slowly, so neighbouring minutes leak). Those
out-of-fold probabilities are what the gate is judged, thresholded and calibrated on; the gate
that is served is then refitted on every validation row. Pure numpy + scipy.optimize.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Context inputs of the gate, by input-column name; those the run's inputs have are used.
GATE_CONTEXT: tuple[str, ...] = ("vehicle_util", "queue_len", "vehicles_down", "blocked_segments", "cal_to_shift_h")
_EPS = 1e-6


def context_index(input_columns: Sequence[str]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """(names, column indices) of the `GATE_CONTEXT` columns present in the run's inputs."""
    cols = list(input_columns)
    names = tuple(c for c in GATE_CONTEXT if c in cols)
    return names, tuple(cols.index(c) for c in names)


def context_rows(last_rows: np.ndarray, index: Sequence[int]) -> np.ndarray:
    """The gate's context [B, C] from each window's last minute, raw [B, F] (the models' inputs)."""
    rows = np.asarray(last_rows, dtype=np.float64)
    if rows.ndim == 1:
        rows = rows[None]
    return rows[:, list(index)] if len(index) else np.zeros((rows.shape[0], 0))


@dataclass(frozen=True)
class GateParams:
    """The gate's hyper-parameters: half-life (outcomes of one zone) of the recent-error inputs,
    and the L2 penalty on V (larger: closer to equal weights)."""

    half_life: float = 60.0
    l2: float = 1e-2

    def __post_init__(self) -> None:
        for name, value in (("half_life", self.half_life), ("l2", self.l2)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"GateParams.{name} must be a finite number > 0. Received: {name}={value!r}")


@dataclass(frozen=True)
class Gate:
    """A fitted gate over M members with C context inputs.

    Attributes:
        params: GateParams (the half-life the online error trackers must use).
        context_names: [C] input columns of the context, in order.
        mean, scale: [C + M] standardization of [context, errors] (fitted on the training rows).
        coef: [M, C + M + 1] V (last column: bias).
    """

    params: GateParams
    context_names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray

    @property
    def n_members(self) -> int:
        return int(self.coef.shape[0])

    def design(self, context: np.ndarray, errors: np.ndarray) -> np.ndarray:
        """x = [standardized context, standardized errors, 1]: context [N, C], errors [N, M] → [N, D]."""
        raw = np.concatenate([np.asarray(context, dtype=np.float64).reshape(len(errors), -1),
                              np.asarray(errors, dtype=np.float64)], axis=1)  # [N, C + M]
        return np.concatenate([(raw - self.mean) / self.scale, np.ones((raw.shape[0], 1))], axis=1)

    def weights(self, context: np.ndarray, errors: np.ndarray) -> np.ndarray:
        """[N, M] member weights (rows sum to 1)."""
        return _softmax(self.design(context, errors) @ self.coef.T)

    def prob(self, scores: np.ndarray, context: np.ndarray, errors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(p [N], weights [N, M]) for member scores [N, M]."""
        w = self.weights(context, errors)
        return (w * scores).sum(axis=1), w

    def to_dict(self) -> dict[str, Any]:
        return {"half_life": float(self.params.half_life), "l2": float(self.params.l2),
                "context_names": list(self.context_names), "mean": self.mean.tolist(),
                "scale": self.scale.tolist(), "coef": self.coef.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Gate:
        try:
            params = GateParams(float(data["half_life"]), float(data["l2"]))
            names = tuple(str(c) for c in data["context_names"])
            coef = np.asarray(data["coef"], dtype=np.float64)
            mean = np.asarray(data["mean"], dtype=np.float64)
            scale = np.asarray(data["scale"], dtype=np.float64)
        except (KeyError, TypeError) as err:
            raise ValueError(f"invalid gate: {err!r}") from None
        m = coef.shape[0] if coef.ndim == 2 else -1
        d = len(names) + m
        if coef.ndim != 2 or coef.shape[1] != d + 1 or mean.shape != (d,) or scale.shape != (d,):
            raise ValueError(f"gate arrays do not fit {len(names)} context inputs and {m} members. "
                             f"Received: coef {coef.shape}, mean {mean.shape}, scale {scale.shape}")
        return cls(params, names, mean, scale, coef)


def gate_on_raw_context(data: Mapping[str, Any], mean: Sequence[float], scale: Sequence[float]) -> dict[str, Any]:
    """A gate (`Gate.to_dict()`) fitted on context z-scored with per-column `mean` / `scale` ([C],
    its context columns' statistics: run format 1) as the same gate on raw context: standardizing
    raw x by (mean + scale·μ, scale·σ) is standardizing its z-score by (μ, σ)."""
    col_mean, col_scale = np.asarray(mean, dtype=np.float64), np.asarray(scale, dtype=np.float64)
    c = len(data["context_names"])
    if col_mean.shape != (c,) or col_scale.shape != (c,):
        raise ValueError(f"the gate has {c} context inputs. Received: {col_mean.shape[0]} means, "
                         f"{col_scale.shape[0]} scales")
    gate_mean, gate_scale = np.asarray(data["mean"], dtype=np.float64), np.asarray(data["scale"], dtype=np.float64)
    gate_mean[:c] = col_mean + col_scale * gate_mean[:c]
    gate_scale[:c] = col_scale * gate_scale[:c]
    return {**data, "mean": gate_mean.tolist(), "scale": gate_scale.tolist()}


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def fit_gate(
    scores: np.ndarray,
    outcomes: np.ndarray,
    context: np.ndarray,
    errors: np.ndarray,
    params: GateParams,
    context_names: Sequence[str],
    max_iter: int = 200,
) -> Gate:
    """Fit V on rows with a defined outcome: scores [N, M], outcomes [N], context [N, C], errors [N, M]."""
    from scipy.optimize import minimize

    scores = np.asarray(scores, dtype=np.float64)
    n, m = scores.shape
    context = np.asarray(context, dtype=np.float64).reshape(n, -1)
    errors = np.asarray(errors, dtype=np.float64)
    if errors.shape != (n, m) or context.shape[1] != len(context_names):
        raise ValueError(f"gate inputs disagree: scores {scores.shape}, errors {errors.shape}, context "
                         f"{context.shape} for names {list(context_names)}")
    keep = ~np.isnan(np.asarray(outcomes, dtype=np.float64))
    y = np.asarray(outcomes, dtype=np.float64)[keep]
    s = scores[keep]
    raw = np.concatenate([context[keep], errors[keep]], axis=1)
    mean = raw.mean(axis=0) if raw.shape[0] else np.zeros(raw.shape[1])
    scale = raw.std(axis=0) if raw.shape[0] else np.ones(raw.shape[1])
    scale = np.where(scale > 1e-9, scale, 1.0)
    shell = Gate(params, tuple(context_names), mean, scale, np.zeros((m, raw.shape[1] + 1)))
    if y.size == 0:
        return shell
    x = shell.design(context[keep], errors[keep])  # [n, D]
    d = x.shape[1]
    count = float(y.size)

    def loss_grad(flat: np.ndarray) -> tuple[float, np.ndarray]:
        v = flat.reshape(m, d)
        w = _softmax(x @ v.T)  # [n, M]
        p = np.clip((w * s).sum(axis=1), _EPS, 1.0 - _EPS)  # [n]
        loss = -np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)) + params.l2 * float(np.sum(v * v))
        dp = (p - y) / (p * (1.0 - p)) / count  # [n] dL/dp
        dz = dp[:, None] * w * (s - p[:, None])  # [n, M]
        grad = dz.T @ x + 2.0 * params.l2 * v  # [M, D]
        return float(loss), grad.reshape(-1)

    res = minimize(loss_grad, np.zeros(m * d), jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return Gate(params, tuple(context_names), mean, scale, res.x.reshape(m, d))


def time_blocks(times: np.ndarray, k: int) -> np.ndarray:
    """[N] block id 0…k−1 of each row: k contiguous, equally long stretches of time."""
    t = np.asarray(times, dtype=np.float64)
    if k < 2:
        raise ValueError(f"cross-fitting needs k >= 2 time blocks. Received: k={k}")
    if t.size == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = float(t.min()), float(t.max())
    width = (hi - lo) / k if hi > lo else 1.0
    return np.clip(((t - lo) // width).astype(np.int64), 0, k - 1)


def cross_fit(
    scores: np.ndarray,
    outcomes: np.ndarray,
    context: np.ndarray,
    errors: np.ndarray,
    times: np.ndarray,
    params: GateParams,
    context_names: Sequence[str],
    *,
    k: int = 5,
    purge: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold gate probabilities: each time block scored by a gate fitted on the rows at
    least `purge` (time units of `times`) away from it. Returns (prob [N], weights [N, M])."""
    scores = np.asarray(scores, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    blocks = time_blocks(t, k)
    prob = np.empty(scores.shape[0])
    weights = np.empty_like(scores)
    ctx = np.asarray(context, dtype=np.float64).reshape(scores.shape[0], -1)
    for b in range(k):
        held = blocks == b
        if not held.any():
            continue
        lo, hi = t[held].min(), t[held].max()
        train = (t < lo - purge) | (t > hi + purge)
        gate = fit_gate(scores[train], np.asarray(outcomes)[train], ctx[train], errors[train], params, context_names)
        prob[held], weights[held] = gate.prob(scores[held], ctx[held], errors[held])
    return prob, weights
