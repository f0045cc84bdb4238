"""`rule`: an engineer's rules turned into a score, plus a shallow learned correction (DESIGN §3).

    rule_score = bias + Σ_r weight_r · sigmoid(sign_r · (stat_r(window) − threshold_r) / softness_r)
    output     = rule_score + correction,   correction = Dense 64→32→1(LSTM(32)(window))

The rules are data (`Rule`, in the model's config and hence in YAML under
`train.model_overrides.rule.rules`), not code. Each looks at one feature over the window:
- `level`:  mean of the last `recent_minutes` minutes (e.g. vehicle_util above 0.9);
- `rise`:   that recent mean minus the mean of the minutes before it (e.g. queue growth);
- `excess`: that recent mean minus a fixed `reference` (e.g. transport time vs a nominal).
`direction="below"` fires when the statistic is under the threshold. `softness` (in the
feature's units) is the width of the sigmoid ramp: each rule contributes between 0 and `weight`.

The correction's last Dense is zero-initialized, so an UNTRAINED model outputs exactly the rule
score: it is the rules-only baseline, and training learns only what the rules miss.

Scaling: thresholds are in RAW units, so an engineer can read and set them, and windows reach
every model raw (`fabray.models.layers.scaling`): the rule score reads the raw window, the correction
LSTM the z-scores of the model's first layer, `FeatureScaling`. A `RuleScore` saved by run
format 1 (windows z-scored outside the models) carries the scaler's `feature_mean` /
`feature_scale` and un-scales its input; it still loads (`fabray.predictor` feeds such a model
z-scored windows), and nothing builds one any more.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import keras
import numpy as np
from keras import ops

from fabray.errors import BadInputError
from fabray.models._checks import check_dropout, check_input_dims, check_sizes
from fabray.models.layers.scaling import Scaling, scaled_window
from fabray.schema import FEATURES

STATISTICS = ("level", "rise", "excess")
DIRECTIONS = ("above", "below")


@dataclass(frozen=True)
class Rule:
    """One rule: `weight · sigmoid(±(statistic(feature) − threshold) / softness)`."""

    name: str
    feature: str  # a name from the model's feature_names (fabray.schema.FEATURES by default)
    threshold: float  # raw units of the feature (or of its change, for rise/excess)
    statistic: str = "level"  # "level" | "rise" | "excess"
    direction: str = "above"  # fires when the statistic is "above" or "below" the threshold
    weight: float = 1.0  # logit added when the rule fully fires
    softness: float = 1.0  # ramp width, raw units; smaller → closer to a hard step
    reference: float | None = None  # only for "excess": the fixed level to compare against

    def __post_init__(self) -> None:
        where = f"rule {self.name!r}"
        if self.statistic not in STATISTICS:
            raise BadInputError(f"{where}: statistic must be one of {STATISTICS}. Received: statistic={self.statistic!r}")
        if self.direction not in DIRECTIONS:
            raise BadInputError(f"{where}: direction must be one of {DIRECTIONS}. Received: direction={self.direction!r}")
        for key in ("threshold", "weight", "softness"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise BadInputError(f"{where}: {key} must be a finite number. Received: {key}={value!r}")
        if self.softness <= 0:
            raise BadInputError(f"{where}: softness must be > 0. Received: softness={self.softness!r}")
        if (self.statistic == "excess") != (self.reference is not None):
            raise BadInputError(
                f"{where}: 'reference' is required by statistic 'excess' and used by no other. "
                f"Received: statistic={self.statistic!r}, reference={self.reference!r}"
            )


#: A starting point from OHT practice; thresholds in raw units. Tune them in config, not here.
DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("high_utilization", "vehicle_util", 0.90, "level", weight=1.5, softness=0.02),
    Rule("queue_growth", "queue_len", 5.0, "rise", weight=1.5, softness=1.0),
    Rule("blocked_segments", "blocked_segments", 0.5, "level", weight=2.0, softness=0.1),
    Rule("vehicles_down", "vehicles_down", 0.5, "level", weight=1.0, softness=0.1),
    Rule("slow_transport", "transport_time_s", 30.0, "rise", weight=2.0, softness=5.0),
)


#: Overrides a run of format 1 stored for `rule` (the scaler's statistics, now in every model's
#: `FeatureScaling`): dropped when such a run's overrides are read again.
LEGACY_OVERRIDES = ("feature_mean", "feature_scale")


@dataclass(frozen=True)
class RuleModelConfig:
    """Hyper-parameters of `rule`: the rules (data) and the shallow correction network."""

    rules: tuple[Rule, ...] = DEFAULT_RULES
    bias: float = -4.0  # rule score when no rule fires (sigmoid(-4) ≈ 1.8%)
    recent_minutes: int = 10  # the "recent" part of the window the statistics look at
    feature_names: tuple[str, ...] = FEATURES  # the window's first columns (context columns may follow)
    lstm_units: int = 32
    head_units: tuple[int, ...] = (64, 32)  # Dense(relu) layers before the zero-init Dense(1)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        rules = tuple(r if isinstance(r, Rule) else _rule_from_dict(r) for r in self.rules)
        object.__setattr__(self, "rules", rules)
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        if not rules:
            raise BadInputError("rule: at least one rule is needed. Received: rules=()")
        names = [r.name for r in rules]
        if len(set(names)) != len(names):
            raise BadInputError(f"rule: rule names must be unique. Received: {names}")
        unknown = [r.feature for r in rules if r.feature not in self.feature_names]
        if unknown:
            raise BadInputError(
                f"rule: rules name features that are not in feature_names {list(self.feature_names)}. "
                f"Received: {unknown}"
            )
        check_sizes("rule", recent_minutes=(self.recent_minutes,), lstm_units=(self.lstm_units,),
                    head_units=self.head_units)
        check_dropout("rule", self.dropout)


def _rule_from_dict(raw: object) -> Rule:
    if not isinstance(raw, dict):
        raise BadInputError(f"rule: each rule must be a mapping of Rule fields. Received: {raw!r}")
    try:
        return Rule(**raw)
    except TypeError as err:
        raise BadInputError(f"rule: bad rule {raw!r}: {err}") from err


@keras.saving.register_keras_serializable(package="fabray")
class RuleScore(keras.layers.Layer):
    """Deterministic, weight-free rule score over the raw window: `[B, L, F]` → `[B, 1]` float32.

    `rules` are dicts of `Rule` fields (plain data, so they serialize with `get_config`).
    `feature_mean` / `feature_scale`: only in layers saved by run format 1, whose input was
    z-scored (it is un-scaled first, `raw = x * scale + mean`); None (every new layer): raw input.
    """

    def __init__(
        self,
        rules: list[dict],
        bias: float = -4.0,
        recent_minutes: int = 10,
        feature_names: list[str] | tuple[str, ...] = FEATURES,
        feature_mean: list[float] | None = None,
        feature_scale: list[float] | None = None,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")  # rules compare raw units: never in float16
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        parsed = RuleModelConfig(
            rules=tuple(_rule_from_dict(dict(r)) for r in rules), bias=float(bias),
            recent_minutes=int(recent_minutes), feature_names=tuple(feature_names),
        )  # validates everything in one place
        if (feature_mean is None) != (feature_scale is None) or (
            feature_mean is not None and not len(feature_mean) == len(feature_scale) == len(feature_names)
        ):
            raise ValueError("RuleScore: feature_mean and feature_scale (format 1) go together, one per "
                             f"feature. Received: feature_mean={feature_mean}, feature_scale={feature_scale}")
        self.rules = [asdict(r) for r in parsed.rules]
        self.bias = parsed.bias
        self.recent_minutes = parsed.recent_minutes
        self.feature_names = list(parsed.feature_names)
        self.feature_mean = None if feature_mean is None else [float(v) for v in feature_mean]
        self.feature_scale = None if feature_scale is None else [float(v) for v in feature_scale]
        r = parsed.rules
        self._index = np.array([parsed.feature_names.index(x.feature) for x in r], dtype="int32")
        self._is_rise = np.array([x.statistic == "rise" for x in r], dtype="float32")  # [R]
        self._reference = np.array([x.reference or 0.0 for x in r], dtype="float32")  # [R]
        self._threshold = np.array([x.threshold for x in r], dtype="float32")  # [R]
        self._sign = np.array([1.0 if x.direction == "above" else -1.0 for x in r], dtype="float32")
        self._softness = np.array([x.softness for x in r], dtype="float32")  # [R]
        self._weight = np.array([x.weight for x in r], dtype="float32")  # [R]
        self._needs_earlier = bool(self._is_rise.any())

    def build(self, input_shape):
        lookback, n_features = input_shape[-2], input_shape[-1]
        if n_features is not None and n_features < len(self.feature_names):
            raise ValueError(
                f"RuleScore: the window has {n_features} features but feature_names names "
                f"{len(self.feature_names)}. Received: input_shape={tuple(input_shape)}"
            )
        if self._needs_earlier and lookback is not None and lookback <= self.recent_minutes:
            raise ValueError(
                "RuleScore: 'rise' rules compare the last recent_minutes with the minutes before "
                f"them, so lookback must exceed recent_minutes={self.recent_minutes}. "
                f"Received: lookback={lookback}"
            )

    def rule_activations(self, inputs):
        """How much each rule fires, in [0, 1]: `[B, L, F]` → `[B, R]` (rule order of `rules`)."""
        x = ops.cast(inputs, "float32")  # [B, L, F] raw
        if self.feature_mean is not None:  # a format-1 layer: its input was z-scored
            x = x * np.array(self.feature_scale, "float32") + np.array(self.feature_mean, "float32")
        k = self.recent_minutes
        recent = ops.take(ops.mean(x[:, -k:, :], axis=1), self._index, axis=1)  # [B, R]
        baseline = self._reference  # [R]
        if self._needs_earlier:
            earlier = ops.take(ops.mean(x[:, :-k, :], axis=1), self._index, axis=1)  # [B, R]
            baseline = baseline + self._is_rise * earlier
        statistic = recent - baseline  # [B, R]
        return ops.sigmoid(self._sign * (statistic - self._threshold) / self._softness)  # [B, R]

    def call(self, inputs):
        fired = self.rule_activations(inputs)  # [B, R]
        return self.bias + ops.sum(fired * self._weight, axis=1, keepdims=True)  # [B, 1]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)

    def get_config(self):
        config = super().get_config()
        config.update(
            rules=[dict(r) for r in self.rules], bias=self.bias, recent_minutes=self.recent_minutes,
            feature_names=list(self.feature_names),
        )
        if self.feature_mean is not None:  # format 1 only
            config.update(feature_mean=self.feature_mean, feature_scale=self.feature_scale)
        return config


def rule_score_layer(cfg: RuleModelConfig, name: str = "rule_score") -> RuleScore:
    """The config's rules as a `RuleScore` layer (also usable alone, as the rules-only baseline)."""
    return RuleScore(
        rules=[asdict(r) for r in cfg.rules], bias=cfg.bias, recent_minutes=cfg.recent_minutes,
        feature_names=list(cfg.feature_names), name=name,
    )


def build_rule(cfg: RuleModelConfig, lookback: int, n_features: int, scaling: Scaling = None) -> keras.Model:
    check_input_dims("rule", lookback, n_features)
    if n_features < len(cfg.feature_names):
        raise BadInputError(
            f"rule: the window must hold the {len(cfg.feature_names)} columns of feature_names first. "
            f"Received: n_features={n_features}"
        )
    if any(r.statistic == "rise" for r in cfg.rules) and lookback <= cfg.recent_minutes:
        raise BadInputError(
            f"rule: 'rise' rules need lookback > recent_minutes={cfg.recent_minutes}. "
            f"Received: lookback={lookback}"
        )
    window, x = scaled_window(lookback, n_features, scaling)  # raw [B, L, F] → z-scores [B, L, F]
    rule_score = rule_score_layer(cfg)(window)  # [B, 1] float32 from the RAW window, no weights
    h = keras.layers.LSTM(cfg.lstm_units, name="correction_lstm")(x)  # [B, lstm_units]
    for i, units in enumerate(cfg.head_units):
        if cfg.dropout > 0:
            h = keras.layers.Dropout(cfg.dropout, name=f"correction_dropout_{i}")(h)
        h = keras.layers.Dense(units, activation="relu", name=f"correction_dense_{i}")(h)
    correction = keras.layers.Dense(
        1, kernel_initializer="zeros", bias_initializer="zeros", dtype="float32",
        name="correction_out",
    )(h)  # [B, 1], exactly 0 until trained
    out = keras.layers.Add(dtype="float32", name="score")([rule_score, correction])  # [B, 1]
    return keras.Model(window, out, name="rule")
