"""`FeatureScaling`: the training split's z-scoring as the first layer of every model (issue 10).

Windows are raw at every boundary (training pipeline, serving, batch prediction, evaluation);
each model z-scores its own input with the statistics `fabray.data.scaler.Scaler` fitted on the
training rows, stored in the layer's config, so a saved model scores raw windows by itself.

    z = (x − mean) / scale     per feature (the last axis), computed in float32

The layer's dtype policy is float32 even under mixed precision (a raw `wip_lots` of 130 or a
`transport_time_s` of 180 is not to be subtracted in float16); its output is cast to
`output_dtype` (the compute dtype of the layers after it: the global policy's when built).
It has no weights: the statistics are config, so parameter counts and weight lists (warm starts
copy weights by position) are those of the model without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

#: `(mean, scale)` per input column, raw units; or None (identity: mean 0, scale 1).
Scaling = tuple[Sequence[float], Sequence[float]] | None


@keras.saving.register_keras_serializable(package="fabray")
class FeatureScaling(keras.layers.Layer):
    """Per-feature z-score with fixed statistics: `[B, L, F]` raw → `[B, L, F]` z-scores."""

    def __init__(
        self,
        mean: Sequence[float],
        scale: Sequence[float],
        output_dtype: str | None = None,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")  # raw units: never in float16
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        mean = [float(v) for v in mean]
        scale = [float(v) for v in scale]
        if len(mean) != len(scale) or not mean:
            raise ValueError(
                "FeatureScaling needs one mean and one scale per feature. "
                f"Received: {len(mean)} means, {len(scale)} scales"
            )
        if not all(np.isfinite(mean)) or not all(np.isfinite(scale)) or min(scale) <= 0:
            raise ValueError(f"FeatureScaling: means must be finite and scales finite and > 0. "
                             f"Received: mean={mean}, scale={scale}")
        self.mean = mean
        self.scale = scale
        self.output_dtype = output_dtype or keras.mixed_precision.global_policy().compute_dtype
        self._mean = np.asarray(mean, dtype="float32")  # [F]
        self._scale = np.asarray(scale, dtype="float32")  # [F]

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] != len(self.mean):
            raise ValueError(
                f"FeatureScaling: the window has {input_shape[-1]} features, the statistics "
                f"{len(self.mean)}. Received: input_shape={tuple(input_shape)}"
            )

    def call(self, inputs):
        x = ops.cast(inputs, "float32")  # [B, L, F] raw
        z = (x - self._mean) / self._scale  # [B, L, F] z-scores, float32
        return ops.cast(z, self.output_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(inputs.shape, dtype=self.output_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(mean=list(self.mean), scale=list(self.scale), output_dtype=self.output_dtype)
        return config


def scaling_stats(scaler: Any) -> Scaling:
    """`(mean, scale)` of a fitted `Scaler`, of its `to_dict()`, or a `(mean, scale)` pair; None
    stays None (identity scaling)."""
    if scaler is None:
        return None
    if isinstance(scaler, Mapping):
        return tuple(scaler["mean"]), tuple(scaler["scale"])
    if hasattr(scaler, "mean") and hasattr(scaler, "scale"):
        return tuple(scaler.mean), tuple(scaler.scale)
    mean, scale = scaler
    return tuple(mean), tuple(scale)


def scaled_window(lookback: int, n_features: int, scaling: Scaling = None) -> tuple[Any, Any]:
    """A model's input and its first layer: `(window, x)`, the raw window `[B, L, F]` (a
    `keras.Input` named "window") and its z-scores `[B, L, F]` in the compute dtype."""
    mean, scale = scaling if scaling is not None else ([0.0] * n_features, [1.0] * n_features)
    window = keras.Input(shape=(lookback, n_features), name="window")  # [B, L, F] raw
    x = FeatureScaling(mean, scale, name="feature_scaling")(window)  # [B, L, F] z-scores
    return window, x


def prepend_scaling(model: Any, scaling: Scaling) -> Any:
    """`model` (which takes z-scored windows: a model saved by run format 1) behind a
    `FeatureScaling` of `scaling`: a model of raw windows `[B, L, F]` with the same outputs."""
    lookback, n_features = model.input_shape[1:]
    window, x = scaled_window(lookback, n_features, scaling)  # raw [B, L, F] → z-scores
    return keras.Model(window, model(x), name=model.name)
