"""Hyper-parameters of the dynamic weighted ensemble: a frozen, validated dataclass.

Pure code receives this object (config → `EnsembleConfig.to_params` → here); Ray Tune samples
it (`fabray.ensemble.search_space`); a run stores it with `to_dict` and reloads it with
`from_dict`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

#: Per-model losses the error trackers can follow. "brier" is the squared error (on probabilities
#: the Brier score); "log" is the log-loss of a
#: probability clipped to [LOG_LOSS_EPS, 1 − LOG_LOSS_EPS], so one confident miss costs at most ~9.2.
LOSSES: tuple[str, ...] = ("brier", "log")
LOG_LOSS_EPS = 1e-4


def _check_float(
    name: str, value: Any, low: float, high: float, *, low_open: bool, high_open: bool = False
) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"EnsembleParams.{name} must be a number. Received: {name}={value!r}") from None
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if math.isnan(value) or too_low or too_high:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"EnsembleParams.{name} must lie in {lo}{low}, {high}{hi}. Received: {name}={value}")
    return value


@dataclass(frozen=True)
class EnsembleParams:
    """How the dynamic weighted ensemble weighs its M models.

    Attributes:
        base_weights: [M] prior weight of each model (same order as the model names), >= 0, any
            scale: normalized to sum 1, then floored like every weight (see `floor`).
        half_life: steps (outcomes received by one tracker, i.e. minutes of one zone) after which
            an error's influence halves. `inf` = the errors never move: the static ensemble.
        floor: every weight stays >= floor (0 <= floor <= 1/M); raised weights are taken from the
            others in proportion, weights renormalized.
        step_cap: no weight moves by more than this per step (> 0; >= 1 means no cap).
        threshold: the ensemble raises an alarm where its probability >= threshold.
        temperature: weights ∝ base × exp(−error / temperature) (> 0; `inf` = static). In units
            of the loss: with "brier", 0.05 makes a model whose decayed error is 0.05 higher weigh
            e times less.
        loss: "brier" or "log" (see `LOSSES`).
    """

    base_weights: tuple[float, ...]
    half_life: float = 60.0
    floor: float = 0.02
    step_cap: float = 0.05
    threshold: float = 0.5
    temperature: float = 0.05
    loss: str = "brier"

    def __post_init__(self) -> None:
        weights = tuple(self.base_weights) if isinstance(self.base_weights, Sequence | np.ndarray) else None
        if not weights:
            raise ValueError(
                f"EnsembleParams.base_weights must be a non-empty sequence. Received: {self.base_weights!r}"
            )
        try:
            weights = tuple(float(w) for w in weights)
        except (TypeError, ValueError):
            raise ValueError(f"EnsembleParams.base_weights must be numbers. Received: {weights!r}") from None
        if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(
                f"EnsembleParams.base_weights must be finite, >= 0 and not all 0. Received: {weights}"
            )
        set_ = object.__setattr__  # frozen: normalize the stored values once, here
        set_(self, "base_weights", weights)
        set_(self, "half_life", _check_float("half_life", self.half_life, 0.0, math.inf, low_open=True))
        set_(self, "floor", _check_float("floor", self.floor, 0.0, 1.0 / len(weights), low_open=False))
        set_(self, "step_cap", _check_float("step_cap", self.step_cap, 0.0, math.inf, low_open=True))
        set_(self, "threshold", _check_float("threshold", self.threshold, 0.0, 1.0, low_open=False))
        set_(self, "temperature", _check_float("temperature", self.temperature, 0.0, math.inf, low_open=True))
        if self.loss not in LOSSES:
            raise ValueError(f"EnsembleParams.loss must be one of {LOSSES}. Received: loss={self.loss!r}")

    # ------------------------------------------------------------------ derived values

    @property
    def n_models(self) -> int:
        return len(self.base_weights)

    @property
    def decay(self) -> float:
        """Per-step multiplier of the old error: 0.5 ** (1 / half_life); 1.0 for an infinite one."""
        return 0.5 ** (1.0 / self.half_life)

    @property
    def is_static(self) -> bool:
        """True when the weights never move from the (floored) base weights."""
        return math.isinf(self.half_life) or math.isinf(self.temperature)

    # ------------------------------------------------------------------ (de)serialization

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (strict JSON: an infinite value is written as the string "inf")."""
        out = asdict(self)
        out["base_weights"] = list(self.base_weights)
        for key, value in out.items():
            if isinstance(value, float) and math.isinf(value):
                out[key] = "inf"
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnsembleParams:
        """Inverse of `to_dict`; unknown keys are an error (a typo must not be ignored).
        `use_regimes: false`, which runs written before store, is dropped (it was a no-op)."""
        data = dict(data)
        if "use_regimes" in data:
            value = data.pop("use_regimes")
            if value is not False:
                raise ValueError("EnsembleParams.use_regimes was removed (nothing supplies regimes; "
                                 f"the weights are kept per zone). Received: use_regimes={value!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown EnsembleParams fields {unknown}; expected {sorted(known)}")
        values = {k: (math.inf if v == "inf" else v) for k, v in data.items()}
        return cls(**values)

    @classmethod
    def static(cls, base_weights: Sequence[float], threshold: float = 0.5) -> EnsembleParams:
        """The static weighted ensemble: fixed weights ∝ base_weights."""
        return cls(base_weights=tuple(base_weights), half_life=math.inf, floor=0.0, step_cap=1.0,
                   threshold=threshold)
