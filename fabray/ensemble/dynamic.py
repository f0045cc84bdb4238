"""The dynamic weighted ensemble (DESIGN §5): weights that follow each model's recent error.

The online `DynamicEnsemble`, one tracker per zone, each applying the weight rule of `fabray.ensemble.weight_rule` (error, target, floor, cap; the
linear opinion pool).

Feedback arrives late: the truth for the prediction made at minute t is known `horizon` minutes
later. The online `DynamicEnsemble` is told about it when it arrives (`update`); the offline
`fabray.ensemble.replay` applies the outcome of row j right before the prediction of row j + feedback_lag of the
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

from fabray.ensemble.params import EnsembleParams
from fabray.ensemble.weight_rule import capped_step, initial_weights, model_losses, pool, target_weights

logger = logging.getLogger(__name__)


STATE_VERSION = 1


@dataclass
class _Tracker:
    """The state of one zone: decayed errors, current weights, outcomes seen."""

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
        self._trackers: dict[str, _Tracker] = {}

    @property
    def params(self) -> EnsembleParams:
        return self._params

    @property
    def model_names(self) -> tuple[str, ...]:
        return self._names

    # ------------------------------------------------------------------ helpers

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

    def _tracker(self, key: str) -> _Tracker:
        tracker = self._trackers.get(key)
        if tracker is None:
            m = len(self._names)
            tracker = _Tracker(errors=np.zeros(m), weights=self._base.copy())
            self._trackers[key] = tracker
        return tracker

    # ------------------------------------------------------------------ API

    def errors(self, zone: str) -> np.ndarray:
        """[M] the decayed per-model errors of this zone so far; 0 before any outcome."""
        tracker = self._trackers.get(str(zone))
        return np.zeros(len(self._names)) if tracker is None else tracker.errors.copy()

    def weights(self, zone: str) -> dict[str, float]:
        """The weights the next prediction for this zone would use."""
        tracker = self._trackers.get(str(zone))
        weights = self._base if tracker is None else tracker.weights
        return dict(zip(self._names, weights.tolist()))

    def combine(
        self, zone: str, scores: Sequence[float] | Mapping[str, float] | np.ndarray
    ) -> tuple[float, dict[str, float]]:
        """Ensemble probability of one window's model scores, and the weights used.

        A model whose score is NaN (or missing from a mapping) is left out: its weight is spread
        over the others in proportion (reported as 0.0). All models missing is an error.
        """
        arr = self._scores(scores)  # [M]
        tracker = self._trackers.get(str(zone))
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
    ) -> None:
        """Feed back the truth of an earlier prediction: the scores the models gave then and its
        outcome (0/1 event).

        A NaN outcome (undefined target) is ignored. A model with a NaN score keeps its error.
        """
        outcome = float(outcome)
        if math.isnan(outcome):
            return
        if math.isinf(outcome):
            raise ValueError(f"outcome must be finite or NaN. Received: outcome={outcome}")
        arr = self._scores(scores)  # [M]
        tracker = self._tracker(str(zone))
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
                "errors": tr.errors.tolist(),
                "weights": tr.weights.tolist(),
                "updates": tr.updates,
            }
            for zone, tr in sorted(self._trackers.items())
        ]
        return {
            "version": STATE_VERSION,
            "params": self._params.to_dict(),
            "model_names": list(self._names),
            "trackers": trackers,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> DynamicEnsemble:
        """Rebuild the ensemble `to_state` described. A tracker entry of a state written before
        may carry `"regime": 0` (the only value ever written); it is ignored."""
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
                    f"tracker {entry.get('zone')!r} needs {m} errors and "
                    f"weights. Received: {errors.shape[0]} and {weights.shape[0]}"
                )
            if int(entry.get("regime", 0)) != 0:
                raise ValueError(f"tracker {entry['zone']!r} has regime {entry['regime']!r}: per-regime "
                                 "trackers were removed (one tracker per zone)")
            ens._trackers[str(entry["zone"])] = _Tracker(errors=errors, weights=weights, updates=int(entry["updates"]))
        return ens
