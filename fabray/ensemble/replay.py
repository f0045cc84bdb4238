"""The dynamic ensemble run offline over a scored series, vectorized (`replay`), and the lagged
per-model errors it tracks (`lagged_errors`): the weight rule of `fabray.ensemble.weight_rule`
with the outcome of row j applied right before the prediction of row j + feedback_lag of the same
zone, which is what the online `fabray.ensemble.dynamic.DynamicEnsemble` sees when fed in time
order."""

from __future__ import annotations

import numpy as np

from fabray.ensemble.params import EnsembleParams
from fabray.ensemble.weight_rule import capped_step, initial_weights, model_losses, pool, target_weights


def _check_replay_inputs(
    scores: np.ndarray, outcomes: np.ndarray, zone_codes: np.ndarray, params: EnsembleParams,
    feedback_lag: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    return scores, outcomes, zone_codes


def replay(
    scores: np.ndarray,
    outcomes: np.ndarray,
    zone_codes: np.ndarray,
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
        params: the ensemble's hyper-parameters.
        feedback_lag: rows between a prediction and its truth (the horizon: 10 minutes).

    Returns:
        prob [N] ensemble probability, weights [N, M] the weights each prediction used.

    Cost: vectorized except one numpy step per outcome of the busiest tracker (for the step
    cap), each step covering all trackers at once.
    """
    scores, outcomes, zone_codes = _check_replay_inputs(scores, outcomes, zone_codes, params, feedback_lag)
    n, m = scores.shape
    base = initial_weights(params)  # [M]
    if params.is_static or n == 0:
        weights = np.broadcast_to(base, (n, m)).copy()  # [N, M]
        return pool(weights, scores), weights

    upd, u_tracker, last = _feedback_schedule(outcomes, zone_codes, feedback_lag)
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
    scores, outcomes, zone_codes = _check_replay_inputs(scores, outcomes, zone_codes, params, feedback_lag)
    n, m = scores.shape
    if n == 0:
        return np.zeros((0, m))
    upd, u_tracker, last = _feedback_schedule(outcomes, zone_codes, feedback_lag)
    losses = model_losses(scores[upd], outcomes[upd], loss)  # [U, M]
    errors = _decayed_errors(losses, u_tracker, params.decay)  # [U, M]
    return np.where((last >= 0)[:, None], errors[np.maximum(last, 0)] if errors.size else 0.0, 0.0)


def _feedback_schedule(
    outcomes: np.ndarray, zone_codes: np.ndarray, feedback_lag: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Who learns what when. Returns (upd [U] rows with an outcome, grouped by tracker in time
    order; u_tracker [U] their tracker; last [N] index into upd of the last outcome row i's
    tracker has received before row i is predicted, −1 if none)."""
    n = outcomes.size
    # Position of each row within its zone, and its tracker id (its zone's index).
    _, zone_idx = np.unique(zone_codes, return_inverse=True)  # [N]
    zone_idx = zone_idx.reshape(-1)
    by_zone = np.argsort(zone_idx, kind="stable")
    zone_sorted = zone_idx[by_zone]
    first = np.flatnonzero(np.r_[True, zone_sorted[1:] != zone_sorted[:-1]])
    counts = np.diff(np.r_[first, n])
    pos = np.empty(n, dtype=np.int64)
    pos[by_zone] = np.arange(n) - np.repeat(first, counts)  # [N]
    tracker = zone_idx.astype(np.int64)  # [N]

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
