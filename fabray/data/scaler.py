"""Per-feature z-score statistics, fitted on the training split and stored with the model (DESIGN §1).

The scaling itself is the first layer of every model (`fabray.models.layers.scaling.FeatureScaling`,
built from a fitted `Scaler`): windows are raw at every boundary. `Scaler.transform` remains for
the models of run format 1, which take z-scored windows (`fabray.predictor`).

Pure numpy. `Scaler.fit` learns a mean and a scale per feature; `to_dict` / `from_dict` turn it
into JSON-able data and back exactly (Python floats round-trip through JSON without loss).

A feature that is (nearly) constant over the training rows (std below `std_floor`, e.g.
`hot_lots` always 0) is only centred, with scale 1.0, as scikit-learn's StandardScaler does.
Flooring the std at a tiny epsilon instead would turn a later change of 1 into 1/epsilon.

Memory: `column_stats` fits one feature at a time and `stack_columns` builds the [N, F] float32
raw series from columns given one by one, so data preparation never holds the raw series as an
[N, F] float64 array (`fabray.data.windows.prepare`). The statistics are bit for bit what
`Scaler.fit` gives on the stacked columns: the sums run in row order (numpy's reduction along
the rows of an [N, F] array, F > 1, is that sequential sum).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
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
        stats = [column_stats(x[:, j], std_floor=std_floor) for j in range(x.shape[1])]
        return cls(
            features=tuple(features),
            mean=tuple(m for m, _ in stats),
            scale=tuple(s for _, s in stats),
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


def column_stats(values: np.ndarray, *, std_floor: float = DEFAULT_STD_FLOOR) -> tuple[float, float]:
    """(mean, scale) of one feature's finite values [M], M >= 1: the population std, or 1.0
    below `std_floor`. Summed in row order (`np.cumsum`), so an [M, F] array's column gives
    what `x.mean(axis=0)` / `x.std(axis=0)` give it (F > 1). Holds two [M] float64 temporaries."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)  # [M]
    count = len(x)
    mean = np.cumsum(x)[-1] / count
    dev = x - mean  # [M]
    np.multiply(dev, dev, out=dev)
    std = np.sqrt(np.cumsum(dev)[-1] / count)
    return float(mean), float(1.0 if std < std_floor else std)


def stack_columns(
    columns: Iterable[np.ndarray],
    n_rows: int,
    features: Sequence[str],
    *,
    fit_rows: np.ndarray | None = None,
    scaler: Scaler | None = None,
    std_floor: float = DEFAULT_STD_FLOOR,
) -> tuple[np.ndarray, Scaler]:
    """The [n_rows, F] float32 raw series of feature columns given one at a time ([n_rows]
    each, `features` order), and the scaler: `scaler`, or fitted on the rows `fit_rows` ([N]
    bool) of each column (equal to `Scaler.fit(x[fit_rows])` of the stacked float64 x), while
    holding only the output and one column (plus its temporaries)."""
    if scaler is None and fit_rows is None:
        raise ValueError("stack_columns needs fit_rows= to fit a scaler, or a fitted scaler=")
    if scaler is not None and tuple(scaler.features) != tuple(features):
        raise ValueError(f"the scaler's features {list(scaler.features)} are not {list(features)}")
    out = np.empty((n_rows, len(features)), dtype=np.float32)  # [N, F]
    means: list[float] = []
    scales: list[float] = []
    j = -1
    for j, values in enumerate(columns):
        if j >= len(features):
            raise ValueError(f"more columns than the {len(features)} features {list(features)}")
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (n_rows,):
            raise ValueError(f"column {features[j]!r}: expected shape ({n_rows},). Received: {values.shape}")
        if scaler is None:
            fit = values[fit_rows]  # [M]
            if len(fit) == 0:
                raise BadInputError("cannot fit the feature scaler: no rows (is the training split empty?)")
            if not np.isfinite(fit).all():
                raise ValueError(f"Scaler.fit needs finite values. Received NaN/inf in: {[features[j]]}")
            mean, scale = column_stats(fit, std_floor=std_floor)
            del fit
            means.append(mean)
            scales.append(scale)
        out[:, j] = values  # cast to float32 here
        del values
    if j + 1 != len(features):
        raise ValueError(f"expected {len(features)} columns {list(features)}. Received: {j + 1}")
    if scaler is None:
        scaler = Scaler(features=tuple(features), mean=tuple(means), scale=tuple(scales))
    return out, scaler
