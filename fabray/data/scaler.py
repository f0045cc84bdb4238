"""Per-feature z-score scaling, fitted on the training split and stored with the model (DESIGN §1).

Pure numpy. `Scaler.fit` learns a mean and a scale per feature; `to_dict` / `from_dict` turn it
into JSON-able data and back exactly (Python floats round-trip through JSON without loss).

A feature that is (nearly) constant over the training rows (std below `std_floor`, e.g.
`hot_lots` always 0) is only centred, with scale 1.0, as scikit-learn's StandardScaler does.
Flooring the std at a tiny epsilon instead would turn a later change of 1 into 1/epsilon.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from fabray import schema
from fabray.errors import BadInputError

DEFAULT_STD_FLOOR = 1e-6


@dataclass(frozen=True)
class Scaler:
    """x_scaled = (x − mean) / scale, per feature (the last axis)."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]  # the std, or 1.0 where the std was below the floor

    def __post_init__(self) -> None:
        n = len(self.features)
        if len(self.mean) != n or len(self.scale) != n:
            raise ValueError(
                "Scaler needs one mean and one scale per feature. Received: "
                f"{n} features, {len(self.mean)} means, {len(self.scale)} scales"
            )
        bad = [
            name for name, m, s in zip(self.features, self.mean, self.scale)
            if not (math.isfinite(m) and math.isfinite(s) and s > 0)
        ]
        if bad:
            raise ValueError(
                f"Scaler means must be finite and scales finite and > 0. Received bad values for: {bad}"
            )

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        features: Sequence[str] = schema.FEATURES,
        *,
        std_floor: float = DEFAULT_STD_FLOOR,
    ) -> Scaler:
        """Fit on rows `x` [N, F] (finite values, N >= 1)."""
        x = np.asarray(x, dtype=np.float64)  # [N, F]
        if x.ndim != 2 or x.shape[1] != len(features):
            raise ValueError(
                f"Scaler.fit expects an [N, {len(features)}] array. Received: shape={x.shape}"
            )
        if x.shape[0] == 0:
            raise BadInputError("cannot fit the feature scaler: no rows (is the training split empty?)")
        if not np.isfinite(x).all():
            cols = [features[j] for j in np.flatnonzero(~np.isfinite(x).all(axis=0))]
            raise ValueError(f"Scaler.fit needs finite values. Received NaN/inf in: {cols}")
        mean = x.mean(axis=0)  # [F]
        std = x.std(axis=0)  # [F]
        scale = np.where(std < std_floor, 1.0, std)
        return cls(
            features=tuple(features),
            mean=tuple(float(v) for v in mean),
            scale=tuple(float(v) for v in scale),
        )

    @cached_property
    def _mean(self) -> np.ndarray:
        return np.asarray(self.mean, dtype=np.float64)  # [F]

    @cached_property
    def _scale(self) -> np.ndarray:
        return np.asarray(self.scale, dtype=np.float64)  # [F]

    def transform(self, x: np.ndarray) -> np.ndarray:
        """[..., F] raw values → [..., F] float32 z-scores."""
        x = np.asarray(x)
        if x.ndim == 0 or x.shape[-1] != len(self.features):
            raise ValueError(
                f"expected {len(self.features)} features on the last axis. Received: shape={x.shape}"
            )
        return ((x - self._mean) / self._scale).astype(np.float32)

    def inverse_transform(self, x: np.ndarray) -> np.ndarray:
        """[..., F] z-scores → [..., F] raw values (float64)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 0 or x.shape[-1] != len(self.features):
            raise ValueError(
                f"expected {len(self.features)} features on the last axis. Received: shape={x.shape}"
            )
        return x * self._scale + self._mean

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: {"features": [...], "mean": [...], "scale": [...]}."""
        return {"features": list(self.features), "mean": list(self.mean), "scale": list(self.scale)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scaler:
        """Inverse of `to_dict`; a malformed dict (e.g. a damaged model file) → BadInputError."""
        if not isinstance(data, Mapping):
            raise BadInputError(f"scaler: expected a mapping. Received: {type(data).__name__}")
        missing = [key for key in ("features", "mean", "scale") if key not in data]
        if missing:
            raise BadInputError(
                f"scaler: missing keys {missing}. Received keys: {sorted(map(str, data))}"
            )
        try:
            return cls(
                features=tuple(str(name) for name in data["features"]),
                mean=tuple(float(v) for v in data["mean"]),
                scale=tuple(float(v) for v in data["scale"]),
            )
        except (TypeError, ValueError) as err:
            raise BadInputError(f"scaler: invalid values: {err}") from err
