"""The dynamic weighted ensemble's weight rule (DESIGN §5), shared by the online
`fabray.ensemble.dynamic.DynamicEnsemble` and the offline `fabray.ensemble.replay`, so both compute
the same numbers.

The rule, per tracker (one per zone), M models:

1. **Error.** When the truth y of an earlier prediction arrives, each model's loss ℓ_m (Brier or
   clipped log-loss of its score then) enters an exponential moving average
   ``E_m ← d·E_m + (1 − d)·ℓ_m``, d = 0.5 ** (1 / half_life). E starts at 0 for every model and
   has no bias correction, on purpose: the first outcomes move the weights only a little
   (shrinkage towards the base weights), and with half_life = inf (d = 1) E never moves.
2. **Target.** ``w*_m ∝ base_m · exp(−(E_m − min E) / temperature)``, normalized; then the
   **floor**: weights below `floor` are raised to it and the mass is taken from the others in
   proportion (iterated until none is below; the result sums to 1). Equal errors give exactly
   the (floored) base weights.
3. **Cap.** The tracker's weights move from w towards w* along the straight line, by the largest
   fraction that keeps every |Δw_m| <= step_cap. Moving along the line keeps the sum at 1 and
   every weight above the floor (both endpoints satisfy both).

The ensemble probability is the weighted mean of the models' probabilities (a linear opinion
pool, in probability space), not a weighted mean of logits: with probabilities a single
over-confident model cannot dominate through an extreme logit, a weight of w bounds a model's
pull on the result to w, and the floors keep that reasoning simple. (Logit pooling is sharper;
Tune can be pointed at it later if validation says it helps.)
"""

from __future__ import annotations

import numpy as np

from fabray.ensemble.params import LOG_LOSS_EPS, EnsembleParams


def model_losses(scores: np.ndarray, outcomes: np.ndarray, loss: str) -> np.ndarray:
    """Per-model loss of each score against its outcome. scores [..., M], outcomes [...] → [..., M]."""
    y = np.asarray(outcomes, dtype=np.float64)[..., None]  # [..., 1]
    if loss == "brier":
        diff = scores - y
        return diff * diff
    p = np.clip(scores, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    return -(y * np.log(p) + (1.0 - y) * np.log1p(-p))


def floor_weights(weights: np.ndarray, floor: float) -> np.ndarray:
    """Raise weights below `floor` to it, scaling the others down so each row still sums to 1.

    weights [..., M], each row summing to 1, floor <= 1/M → [..., M]. At most M rounds: a weight
    once raised stays raised, since the others only shrink.
    """
    if floor <= 0.0:
        return weights
    target = weights
    out = weights
    fixed = np.zeros(weights.shape, dtype=bool)
    for _ in range(weights.shape[-1]):
        newly = (out < floor) & ~fixed
        if not newly.any():
            break
        fixed |= newly
        free_mass = 1.0 - floor * fixed.sum(axis=-1, keepdims=True)  # [..., 1]
        free_sum = np.where(fixed, 0.0, target).sum(axis=-1, keepdims=True)  # [..., 1]
        scale = np.divide(free_mass, free_sum, out=np.zeros_like(free_sum), where=free_sum > 0)
        # Rows never floored keep their input untouched (bit-identical to the one-row case).
        out = np.where(fixed.any(axis=-1, keepdims=True), np.where(fixed, floor, target * scale), target)
    return out


def target_weights(base: np.ndarray, errors: np.ndarray, temperature: float, floor: float) -> np.ndarray:
    """w* ∝ base · exp(−(E − min E) / temperature), normalized and floored.

    base [M], errors [..., M] → [..., M].
    """
    rel = errors - errors.min(axis=-1, keepdims=True)  # [..., M], >= 0
    raw = base * np.exp(-rel / temperature)  # [..., M]
    return floor_weights(raw / raw.sum(axis=-1, keepdims=True), floor)


def capped_step(weights: np.ndarray, target: np.ndarray, step_cap: float) -> np.ndarray:
    """Move weights [..., M] towards target [..., M] so that no |Δw_m| exceeds step_cap."""
    if step_cap >= 1.0:  # two points of the simplex are never more than 1 apart in any coordinate
        return target.copy()
    diff = target - weights  # [..., M]
    largest = np.abs(diff).max(axis=-1, keepdims=True)  # [..., 1]
    return weights + (step_cap / np.maximum(largest, step_cap)) * diff


def pool(weights: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Ensemble probability: weights [..., M] · scores [..., M] → [...]."""
    return (weights * scores).sum(axis=-1)


def initial_weights(params: EnsembleParams) -> np.ndarray:
    """[M] the weights before any feedback: base weights normalized to sum 1, then floored."""
    base = np.asarray(params.base_weights, dtype=np.float64)
    return floor_weights(base / base.sum(), params.floor)
