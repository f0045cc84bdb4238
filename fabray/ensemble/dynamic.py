"""The dynamic weighted ensemble (DESIGN §5): weights that follow each model's recent error.

The rule, per tracker (one per zone, or per (zone, regime) with `use_regimes`), M models:

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

Feedback arrives late: the truth for the prediction made at minute t is known `horizon` minutes
later. The online `DynamicEnsemble` is told about it when it arrives (`update`); the offline
`replay` applies the outcome of row j right before the prediction of row j + feedback_lag of the
same zone, which is what the online object sees when fed in time order.

The static weighted ensemble is `EnsembleParams.static(...)` (half_life = inf): weights never move.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fabray.ensemble.params import LOG_LOSS_EPS, EnsembleParams

logger = logging.getLogger(__name__)

STATE_VERSION = 1


# ---------------------------------------------------------------------------- the weight rule
# Shared by the online object and the offline replay, so both compute the same numbers.


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


# ---------------------------------------------------------------------------- online


@dataclass
class _Tracker:
    """The state of one (zone, regime): decayed errors, current weights, outcomes seen."""

    errors: np.ndarray  # [M]
    weights: np.ndarray  # [M]
    updates: int = 0


class DynamicEnsemble:
    """The online ensemble: `combine` for each prediction, `update` when its truth arrives.

    Serving keeps one per model version: `combine(zone, scores)` gives the probability and the
    weights it used; ten minutes later `/v1/feedback` brings the outcome and the caller passes
    `update(zone, scores_used_then, outcome)`. `to_state()` / `from_state()` persist it as JSON.

    Args:
        params: the ensemble's hyper-parameters (M base weights).
        model_names: the M model names, in the order of the scores.
    """

    def __init__(self, params: EnsembleParams, model_names: Sequence[str]) -> None:
        model_names = tuple(str(name) for name in model_names)
        if len(model_names) != params.n_models:
            raise ValueError(
                f"one base weight per model is needed. Received: {params.n_models} base weights "
                f"for models {list(model_names)}"
            )
        if len(set(model_names)) != len(model_names):
            raise ValueError(f"model names must be unique. Received: {list(model_names)}")
        self._params = params
        self._names = model_names
        self._base = initial_weights(params)  # [M]
        self._trackers: dict[tuple[str, int], _Tracker] = {}

    @property
    def params(self) -> EnsembleParams:
        return self._params

    @property
    def model_names(self) -> tuple[str, ...]:
        return self._names

    # ------------------------------------------------------------------ helpers

    def _key(self, zone: str, regime: int) -> tuple[str, int]:
        regime = int(regime)
        if regime < 0:
            raise ValueError(f"regime must be a small integer >= 0. Received: regime={regime}")
        return str(zone), (regime if self._params.use_regimes else 0)

    def _scores(self, scores: Sequence[float] | Mapping[str, float] | np.ndarray) -> np.ndarray:
        """Scores as [M] float64 in model order; NaN marks a model with no score."""
        if isinstance(scores, Mapping):
            unknown = sorted(set(scores) - set(self._names))
            if unknown:
                raise ValueError(f"scores for unknown models {unknown}; models are {list(self._names)}")
            arr = np.array([scores.get(name, math.nan) for name in self._names], dtype=np.float64)
        else:
            arr = np.asarray(scores, dtype=np.float64).reshape(-1)
            if arr.size != len(self._names):
                raise ValueError(
                    f"expected one score per model ({len(self._names)}: {list(self._names)}). "
                    f"Received: {arr.size} scores"
                )
        if np.isinf(arr).any():
            raise ValueError(f"scores must be finite (NaN marks a missing model). Received: {arr.tolist()}")
        if self._params.loss == "log" and ((arr < 0) | (arr > 1)).any():
            raise ValueError(
                f"scores must be probabilities in [0, 1] for loss='log'. Received: {arr.tolist()}"
            )
        return arr

    def _tracker(self, key: tuple[str, int]) -> _Tracker:
        tracker = self._trackers.get(key)
        if tracker is None:
            m = len(self._names)
            tracker = _Tracker(errors=np.zeros(m), weights=self._base.copy())
            self._trackers[key] = tracker
        return tracker

    # ------------------------------------------------------------------ API

    def errors(self, zone: str, regime: int = 0) -> np.ndarray:
        """[M] the decayed per-model errors of this zone (and regime) so far; 0 before any outcome."""
        tracker = self._trackers.get(self._key(zone, regime))
        return np.zeros(len(self._names)) if tracker is None else tracker.errors.copy()

    def weights(self, zone: str, regime: int = 0) -> dict[str, float]:
        """The weights the next prediction for this zone (and regime) would use."""
        tracker = self._trackers.get(self._key(zone, regime))
        weights = self._base if tracker is None else tracker.weights
        return dict(zip(self._names, weights.tolist()))

    def combine(
        self, zone: str, scores: Sequence[float] | Mapping[str, float] | np.ndarray, regime: int = 0
    ) -> tuple[float, dict[str, float]]:
        """Ensemble probability of one window's model scores, and the weights used.

        A model whose score is NaN (or missing from a mapping) is left out: its weight is spread
        over the others in proportion (reported as 0.0). All models missing is an error.
        """
        key = self._key(zone, regime)
        arr = self._scores(scores)  # [M]
        tracker = self._trackers.get(key)
        weights = self._base if tracker is None else tracker.weights  # [M]
        present = ~np.isnan(arr)
        if not present.all():
            if not present.any() or weights[present].sum() <= 0:
                raise ValueError(f"no model with a score and a weight. Received: scores={arr.tolist()}")
            weights = np.where(present, weights, 0.0)
            weights = weights / weights.sum()
            arr = np.where(present, arr, 0.0)
        return float(pool(weights, arr)), dict(zip(self._names, weights.tolist()))

    def update(
        self,
        zone: str,
        scores: Sequence[float] | Mapping[str, float] | np.ndarray,
        outcome: float,
        regime: int = 0,
    ) -> None:
        """Feed back the truth of an earlier prediction: the scores the models gave then, its
        outcome (0/1 event, or delay for loss 'brier' on the delay task) and the regime then.

        A NaN outcome (undefined target) is ignored. A model with a NaN score keeps its error.
        """
        outcome = float(outcome)
        if math.isnan(outcome):
            return
        if math.isinf(outcome):
            raise ValueError(f"outcome must be finite or NaN. Received: outcome={outcome}")
        key = self._key(zone, regime)
        arr = self._scores(scores)  # [M]
        tracker = self._tracker(key)
        tracker.updates += 1
        if self._params.is_static:
            return
        p = self._params
        losses = model_losses(arr, np.float64(outcome), p.loss)  # [M]
        stepped = p.decay * tracker.errors + (1.0 - p.decay) * losses
        tracker.errors = np.where(np.isnan(arr), tracker.errors, stepped)
        target = target_weights(self._base, tracker.errors, p.temperature, p.floor)
        tracker.weights = capped_step(tracker.weights, target, p.step_cap)

    # ------------------------------------------------------------------ persistence

    def to_state(self) -> dict[str, Any]:
        """JSON-able state: params, model names and every tracker (floats round-trip exactly)."""
        trackers = [
            {
                "zone": zone,
                "regime": regime,
                "errors": tr.errors.tolist(),
                "weights": tr.weights.tolist(),
                "updates": tr.updates,
            }
            for (zone, regime), tr in sorted(self._trackers.items())
        ]
        return {
            "version": STATE_VERSION,
            "params": self._params.to_dict(),
            "model_names": list(self._names),
            "trackers": trackers,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> DynamicEnsemble:
        """Rebuild the ensemble `to_state` described."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"unsupported ensemble state version. Received: {state.get('version')!r}, "
                f"expected {STATE_VERSION}"
            )
        ens = cls(EnsembleParams.from_dict(state["params"]), state["model_names"])
        m = len(ens._names)
        for entry in state["trackers"]:
            errors = np.asarray(entry["errors"], dtype=np.float64)
            weights = np.asarray(entry["weights"], dtype=np.float64)
            if errors.shape != (m,) or weights.shape != (m,):
                raise ValueError(
                    f"tracker {entry.get('zone')!r}/{entry.get('regime')!r} needs {m} errors and "
                    f"weights. Received: {errors.shape[0]} and {weights.shape[0]}"
                )
            key = (str(entry["zone"]), int(entry["regime"]))
            ens._trackers[key] = _Tracker(errors=errors, weights=weights, updates=int(entry["updates"]))
        return ens


# ---------------------------------------------------------------------------- offline replay


def _check_replay_inputs(
    scores: np.ndarray, outcomes: np.ndarray, zone_codes: np.ndarray, regimes: np.ndarray | None,
    params: EnsembleParams, feedback_lag: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != params.n_models:
        raise ValueError(
            f"scores must be [N, M] with M = {params.n_models} models. Received: shape {scores.shape}"
        )
    n = scores.shape[0]
    outcomes = np.asarray(outcomes, dtype=np.float64).reshape(-1)
    zone_codes = np.asarray(zone_codes).reshape(-1)
    if outcomes.size != n or zone_codes.size != n:
        raise ValueError(
            f"scores, outcomes and zone_codes need one row each. "
            f"Received: {n}, {outcomes.size} and {zone_codes.size} rows"
        )
    if regimes is None or not params.use_regimes:
        regimes = np.zeros(n, dtype=np.int64)
    else:
        regimes = np.asarray(regimes).reshape(-1)
        if regimes.size != n:
            raise ValueError(f"regimes need one row per score row. Received: {regimes.size} for {n}")
        if not np.issubdtype(regimes.dtype, np.integer) or (regimes < 0).any():
            raise ValueError("regimes must be integers >= 0. Received: " + str(regimes[:5].tolist()))
        regimes = regimes.astype(np.int64)
    if not np.isfinite(scores).all():
        raise ValueError(f"scores must be finite. Received: {int((~np.isfinite(scores)).sum())} NaN/inf")
    if params.loss == "log" and ((scores < 0) | (scores > 1)).any():
        raise ValueError("scores must be probabilities in [0, 1] for loss='log'. Received: values outside")
    if np.isinf(outcomes).any():
        raise ValueError("outcomes must be finite or NaN (undefined). Received: inf")
    if int(feedback_lag) != feedback_lag or feedback_lag < 1:
        raise ValueError(
            f"feedback_lag must be an integer >= 1 (an outcome is never known when its own "
            f"prediction is made). Received: feedback_lag={feedback_lag}"
        )
    return scores, outcomes, zone_codes, regimes


def replay(
    scores: np.ndarray,
    outcomes: np.ndarray,
    zone_codes: np.ndarray,
    regimes: np.ndarray | None,
    params: EnsembleParams,
    feedback_lag: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the ensemble over a scored series, as the online object would see it in time order.

    Each zone's rows are taken in the order they appear (that must be their time order; zones
    may be interleaved or in blocks). The outcome of a zone's row j is applied right before the
    prediction of that zone's row j + feedback_lag; NaN outcomes are skipped. Equal to a loop
    that, for each row i of a zone, first calls `update` with row i − feedback_lag and then
    `combine` with row i (see the tests).

    Args:
        scores: [N, M] each model's probability (finite).
        outcomes: [N] truth per row (0/1 events), NaN where undefined.
        zone_codes: [N] zone (or segment) id per row.
        regimes: [N] small integers >= 0, or None (ignored unless params.use_regimes).
        params: the ensemble's hyper-parameters.
        feedback_lag: rows between a prediction and its truth (the horizon: 10 minutes).

    Returns:
        prob [N] ensemble probability, weights [N, M] the weights each prediction used.

    Cost: vectorized except one numpy step per outcome of the busiest tracker (for the step
    cap), each step covering all trackers at once.
    """
    scores, outcomes, zone_codes, regimes = _check_replay_inputs(
        scores, outcomes, zone_codes, regimes, params, feedback_lag
    )
    n, m = scores.shape
    base = initial_weights(params)  # [M]
    if params.is_static or n == 0:
        weights = np.broadcast_to(base, (n, m)).copy()  # [N, M]
        return pool(weights, scores), weights

    upd, u_tracker, last = _feedback_schedule(outcomes, zone_codes, regimes, feedback_lag)
    history = _weight_history(scores[upd], outcomes[upd], u_tracker, params, base)  # [U, M]
    weights = np.where((last >= 0)[:, None], history[np.maximum(last, 0)], base)  # [N, M]
    return pool(weights, scores), weights


def lagged_errors(
    scores: np.ndarray,
    outcomes: np.ndarray,
    zone_codes: np.ndarray,
    half_life: float,
    loss: str,
    feedback_lag: int,
) -> np.ndarray:
    """[N, M] each model's decayed error on its zone as known when row i is predicted: the
    `DynamicEnsemble.errors(zone)` an online object with this half-life and loss would hold
    after the outcomes of the zone's rows <= i − feedback_lag (0 before any). Rows as `replay`."""
    params = EnsembleParams(base_weights=(1.0,) * np.asarray(scores).shape[-1], half_life=half_life,
                            floor=0.0, step_cap=1.0, temperature=1.0, loss=loss)
    scores, outcomes, zone_codes, regimes = _check_replay_inputs(
        scores, outcomes, zone_codes, None, params, feedback_lag
    )
    n, m = scores.shape
    if n == 0:
        return np.zeros((0, m))
    upd, u_tracker, last = _feedback_schedule(outcomes, zone_codes, regimes, feedback_lag)
    losses = model_losses(scores[upd], outcomes[upd], loss)  # [U, M]
    errors = _decayed_errors(losses, u_tracker, params.decay)  # [U, M]
    return np.where((last >= 0)[:, None], errors[np.maximum(last, 0)] if errors.size else 0.0, 0.0)


def _feedback_schedule(
    outcomes: np.ndarray, zone_codes: np.ndarray, regimes: np.ndarray, feedback_lag: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Who learns what when. Returns (upd [U] rows with an outcome, grouped by tracker in time
    order; u_tracker [U] their tracker; last [N] index into upd of the last outcome row i's
    tracker has received before row i is predicted, −1 if none)."""
    n = outcomes.size
    # Position of each row within its zone, and its tracker id (zone × regime).
    _, zone_idx = np.unique(zone_codes, return_inverse=True)  # [N]
    zone_idx = zone_idx.reshape(-1)
    by_zone = np.argsort(zone_idx, kind="stable")
    zone_sorted = zone_idx[by_zone]
    first = np.flatnonzero(np.r_[True, zone_sorted[1:] != zone_sorted[:-1]])
    counts = np.diff(np.r_[first, n])
    pos = np.empty(n, dtype=np.int64)
    pos[by_zone] = np.arange(n) - np.repeat(first, counts)  # [N]
    tracker = zone_idx.astype(np.int64) * (int(regimes.max()) + 1) + regimes  # [N]

    # Outcomes in (tracker, position) order: the order each tracker receives them.
    upd = np.flatnonzero(~np.isnan(outcomes))  # [U]
    upd = upd[np.lexsort((pos[upd], tracker[upd]))]
    u_tracker = tracker[upd]
    span = int(pos.max()) + 1
    u_key = u_tracker * span + pos[upd]  # [U] ascending

    # Row i has seen its tracker's outcomes whose row is <= pos_i − lag.
    row_key = tracker * span
    begin = np.searchsorted(u_key, row_key, side="left")
    end = np.searchsorted(u_key, row_key + pos - feedback_lag, side="right")
    last = np.where(end > begin, end - 1, -1)  # [N]
    return upd, u_tracker, last


def _decayed_errors(losses: np.ndarray, u_tracker: np.ndarray, d: float) -> np.ndarray:
    """E ← d·E + (1 − d)·ℓ from E = 0, per tracker. losses [U, M] grouped by tracker → [U, M]."""
    from scipy.signal import lfilter  # scipy comes with scikit-learn

    errors = np.empty_like(losses)
    if losses.shape[0] == 0:
        return errors
    seg_first = np.flatnonzero(np.r_[True, u_tracker[1:] != u_tracker[:-1]])  # [T]
    seg_len = np.diff(np.r_[seg_first, u_tracker.size])  # [T]
    for a, length in zip(seg_first.tolist(), seg_len.tolist()):
        errors[a:a + length] = lfilter([1.0 - d], [1.0, -d], losses[a:a + length], axis=0)
    return errors


def _weight_history(
    scores: np.ndarray, outcomes: np.ndarray, u_tracker: np.ndarray, params: EnsembleParams,
    base: np.ndarray,
) -> np.ndarray:
    """Weights of each tracker after each of its outcomes. Inputs grouped by tracker, in order.

    scores [U, M], outcomes [U], u_tracker [U] → [U, M].
    """
    if scores.shape[0] == 0:
        return np.empty_like(scores)
    losses = model_losses(scores, outcomes, params.loss)  # [U, M]
    seg_first = np.flatnonzero(np.r_[True, u_tracker[1:] != u_tracker[:-1]])  # [T]
    seg_len = np.diff(np.r_[seg_first, u_tracker.size])  # [T]
    errors = _decayed_errors(losses, u_tracker, params.decay)  # [U, M]
    targets = target_weights(base, errors, params.temperature, params.floor)  # [U, M]
    if params.step_cap >= 1.0:
        return targets

    # The cap makes each step depend on the previous one: step k of every tracker at once,
    # trackers sorted by length so the active ones are a prefix.
    order = np.argsort(-seg_len, kind="stable")
    starts, lengths = seg_first[order], seg_len[order]
    active = np.searchsorted(-lengths, -np.arange(int(lengths[0])), side="left")  # trackers with > k
    current = np.broadcast_to(base, (starts.size, base.size)).copy()  # [T, M]
    history = np.empty_like(targets)
    for k in range(int(lengths[0])):
        n_active = active[k]
        rows = starts[:n_active] + k
        current[:n_active] = capped_step(current[:n_active], targets[rows], params.step_cap)
        history[rows] = current[:n_active]
    return history
