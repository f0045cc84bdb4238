"""The model zoo (DESIGN §3): an explicit registry of the six models, no directory scan.

Every model maps a RAW window `[B, lookback, n_features]` to `[B, 1]` (a logit: task "event",
the only task); its first layer z-scores the window with the training split's statistics
(`fabray.models.layers.scaling.FeatureScaling`, from the run's fitted `Scaler`). Each has a frozen
dataclass of hyper-parameters (`ModelSpec.config_cls`) and a pure builder
`build(cfg, lookback, n_features, scaling) -> keras.Model`; `build_model` applies per-model
overrides (from the config's `train.model_overrides`) to the defaults.

Importing this package registers the custom layers (package "fabray"), so
`keras.saving.load_model(path)` works after `import fabray.models`.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from fabray.errors import BadInputError
from fabray.models.cnn_lstm import CNNLSTMConfig, build_cnn_lstm
from fabray.models.gru import GRUConfig, build_gru
from fabray.models.lstm import LSTMConfig, build_lstm
from fabray.models.patchtst import PatchTSTConfig, build_patchtst
from fabray.models.rule import RuleModelConfig, build_rule
from fabray.models.layers.scaling import FeatureScaling, scaling_stats
from fabray.models.spike import SpikeConfig, build_spike

logger = logging.getLogger(__name__)

__all__ = [
    "MODELS",
    "FeatureScaling",
    "ModelSpec",
    "build_model",
    "forward_latency_ms",
    "get_spec",
    "make_config",
    "model_loss",
    "model_table",
]

TASKS = ("event",)


@dataclass(frozen=True)
class ModelSpec:
    """One entry of the zoo."""

    name: str
    config_cls: type  # the frozen dataclass of hyper-parameters
    build: Callable[..., keras.Model]  # build(cfg, lookback, n_features, scaling) -> keras.Model
    seed_param_claim: int | None  # the seed document's parameter estimate, if it gave one
    description: str


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("lstm", LSTMConfig, build_lstm, 340_000,
                  "stacked LSTM 128→128→64 + Dense 128→64→1"),
        ModelSpec("gru", GRUConfig, build_gru, 280_000,
                  "residual GRU 128→128→64 (projection where widths differ) + Dense 64→1"),
        ModelSpec("cnn_lstm", CNNLSTMConfig, build_cnn_lstm, 450_000,
                  "multi-scale Conv1D 64×(3,5,7) + LSTM 128→64 + Dense 64→1"),
        ModelSpec("spike", SpikeConfig, build_spike, 520_000,
                  "Conv1D + 4-head self-attention + BiLSTM(128) + Dense 64→1; focal loss"),
        ModelSpec("rule", RuleModelConfig, build_rule, 85_000,
                  "domain-rule score + LSTM(32) + Dense 64→32→1 correction (zero at init)"),
        ModelSpec("patchtst", PatchTSTConfig, build_patchtst, None,
                  "PatchTST: 10 patches of 10 minutes, channel-independent, RevIN"),
    )
}


def get_spec(name: str) -> ModelSpec:
    """The registry entry for `name`; an unknown name → BadInputError listing the known ones."""
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise BadInputError(
            f"unknown model {name!r}; known models: {', '.join(MODELS)}. Received: name={name!r}"
        ) from None


def _freeze(value: Any) -> Any:
    """YAML/JSON lists → tuples (the dataclasses hold tuples); mappings are left to the config."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def make_config(name: str, overrides: Mapping[str, Any] | None = None) -> Any:
    """The model's hyper-parameter dataclass: its defaults with `overrides` applied.

    Unknown keys or invalid values → BadInputError naming the model and the field.
    """
    spec = get_spec(name)
    overrides = dict(overrides or {})
    known = [f.name for f in dataclasses.fields(spec.config_cls) if f.init]
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise BadInputError(
            f"{name}: unknown hyper-parameter(s) {unknown}; known: {known}. Received: {overrides}"
        )
    try:
        return spec.config_cls(**{key: _freeze(value) for key, value in overrides.items()})
    except BadInputError:
        raise
    except (TypeError, ValueError) as err:
        raise BadInputError(f"{name}: invalid hyper-parameters: {err}") from err


def build_model(
    name: str,
    lookback: int,
    n_features: int,
    overrides: Mapping[str, Any] | None = None,
    scaler: Any = None,
) -> keras.Model:
    """Build model `name` for raw windows `[B, lookback, n_features]` → `[B, 1]`.

    `scaler`: the training split's statistics its first layer z-scores with (a fitted
    `fabray.data.scaler.Scaler`, its `to_dict()`, or a `(mean, scale)` pair); None: identity."""
    spec = get_spec(name)
    cfg = make_config(name, overrides)
    scaling = scaling_stats(scaler)
    if scaling is not None and not len(scaling[0]) == len(scaling[1]) == int(n_features):
        raise BadInputError(f"{name}: the scaler has {len(scaling[0])} features, the windows "
                            f"{n_features}. Received: n_features={n_features}")
    try:
        return spec.build(cfg, int(lookback), int(n_features), scaling)
    except BadInputError:
        raise
    except ValueError as err:  # e.g. a window shorter than a patch
        raise BadInputError(f"{name}: cannot build for lookback={lookback}, "
                            f"n_features={n_features}: {err}") from err


def model_loss(
    name: str,
    task: str,
    overrides: Mapping[str, Any] | None = None,
) -> keras.losses.Loss:
    """The training loss of model `name` for `task` ("event", the only task).

    Binary cross-entropy on logits; `spike` uses a class-balanced binary focal loss on logits
    (its config's `focal_alpha` weights the delay class, `focal_gamma` focuses).
    """
    if task not in TASKS:
        raise BadInputError(f"task must be one of {TASKS}. Received: task={task!r}")
    cfg = make_config(name, overrides)
    if name == "spike":
        return keras.losses.BinaryFocalCrossentropy(
            apply_class_balancing=True, alpha=cfg.focal_alpha, gamma=cfg.focal_gamma,
            from_logits=True, name="focal",
        )
    return keras.losses.BinaryCrossentropy(from_logits=True, name="bce")


# ---------------------------------------------------------------------------- the zoo's table


def forward_latency_ms(
    model: keras.Model, batch_size: int, repeats: int = 20, warmup: int = 3, seed: int = 0
) -> float:
    """Median wall time (ms) of one forward pass of `batch_size` windows through the model's
    compiled predict function (`predict_on_batch`); the `warmup` calls (tracing) are excluded."""
    if repeats < 1 or batch_size < 1:
        raise BadInputError(f"repeats and batch_size must be >= 1. Received: repeats={repeats}, "
                            f"batch_size={batch_size}")
    x = np.random.default_rng(seed).standard_normal(
        (batch_size, *model.input_shape[1:])
    ).astype("float32")  # [B, L, F]
    for _ in range(max(warmup, 1)):
        model.predict_on_batch(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict_on_batch(x)
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def model_table(
    lookback: int,
    n_features: int,
    overrides_by_model: Mapping[str, Mapping[str, Any]] | None = None,
    names: Sequence[str] | None = None,
    repeats: int = 20,
    batch_size: int = 256,
) -> list[dict[str, Any]]:
    """One row per model: exact parameters, the seed's claim and their ratio, and the forward
    latency (ms) of a single window and of a batch. `repeats=0` skips the latency."""
    overrides_by_model = overrides_by_model or {}
    rows = []
    for name in names or list(MODELS):
        spec = get_spec(name)
        model = build_model(name, lookback, n_features, overrides_by_model.get(name))
        params = int(model.count_params())
        row: dict[str, Any] = {
            "name": name,
            "params": params,
            "trainable_params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
            "seed_param_claim": spec.seed_param_claim,
            "ratio_to_claim": None if not spec.seed_param_claim else params / spec.seed_param_claim,
            "latency_single_ms": None,
            f"latency_batch{batch_size}_ms": None,
            "description": spec.description,
        }
        if repeats > 0:
            row["latency_single_ms"] = forward_latency_ms(model, 1, repeats)
            row[f"latency_batch{batch_size}_ms"] = forward_latency_ms(
                model, batch_size, max(1, repeats // 4)
            )
        logger.debug("model %s: %s", name, row)
        rows.append(row)
        del model
    return rows
