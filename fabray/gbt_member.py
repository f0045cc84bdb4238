"""The `gbt` member (issue 12 item 2): LightGBM on lag features, a member of the run beside the
Keras zoo, so the ensemble mixes model families. Pure: no Ray, no run-directory layout.

It reuses the tree baseline's one implementation (`fabray.evaluate.baselines`): `LagSpec` and
`lag_features` (z-scored with the run's scaler: the inputs the neural models see, the 12 observed
features plus the context columns), `GBTConfig` and `fit_gbt` (early-stopped on validation average
precision). What is added here: scoring raw WINDOWS [B, L, F] (the predictor's input) instead of
a series and window ends, and the stored form (LightGBM's text model + the lag spec).

Windows → lag features: the B windows are laid end to end as one series of B·L rows and
`lag_features` takes the last row of each as an end; every statistic stays inside its window
(`LagSpec.span` <= lookback), so each window's features are those `lag_features` gives on the
original series (up to float rounding of the cumulative sums, far below float32's resolution).

LightGBM is the optional extra `fabray[gbt]`: `require_lightgbm` refuses a run that lists "gbt"
without it, naming the extra.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from fabray.errors import BadInputError
from fabray.evaluate import baselines as bl

logger = logging.getLogger(__name__)

GBT = "gbt"  # the member's name in train.models and in the run
KIND = "lightgbm"  # the manifest entry's "kind" (Keras entries have none)
MODEL_FILE = "model.txt"  # LightGBM's text format


def is_gbt_entry(entry: Mapping[str, Any]) -> bool:
    """Whether a manifest model entry is a LightGBM member (entries without "kind" are Keras)."""
    return entry.get("kind") == KIND


def require_lightgbm(names: Sequence[str]) -> None:
    """BadInputError when "gbt" is among `names` and LightGBM is not installed."""
    if GBT in names and not bl.gbt_available():
        raise BadInputError(
            "train.models includes 'gbt', the LightGBM member, but LightGBM is not installed: "
            f"pip install 'fabray[gbt]' (the gbt extra), or drop 'gbt'. Received: models={list(names)}"
        )


def gbt_config(overrides: Mapping[str, Any], *, n_jobs: int, seed: int) -> bl.GBTConfig:
    """The member's `GBTConfig`: `train.model_overrides["gbt"]` (fields of `GBTConfig`) over the
    defaults, with `n_jobs` from the member's CPUs and the run's seed unless overridden."""
    known = {f.name for f in fields(bl.GBTConfig)}
    stray = sorted(set(overrides) - known)
    if stray:
        raise BadInputError(f"model_overrides for 'gbt': unknown field(s) {stray}; known: {sorted(known)}")
    try:
        return bl.GBTConfig(**{"n_jobs": n_jobs, "seed": seed, **dict(overrides)})
    except (TypeError, ValueError) as err:
        raise BadInputError(f"model_overrides for 'gbt': {err}") from err


def window_lag_features(windows: np.ndarray, spec: bl.LagSpec, scaler: Any) -> np.ndarray:
    """[B, K] float32 lag features of raw windows [B, L, F] (see the module docstring)."""
    x = np.asarray(windows, dtype=np.float64)
    b, lookback, n_features = x.shape
    ends = np.arange(b, dtype=np.int64) * lookback + lookback - 1  # [B] last row of each window
    return bl.lag_features(x.reshape(b * lookback, n_features), ends, lookback, spec, scaler=scaler)


@dataclass(frozen=True)
class FittedMember:
    """What `fit_member` returns (picklable: it comes back from a Ray task)."""

    model_text: str  # LightGBM's text format, the best iteration's trees only
    config: dict[str, Any]  # asdict(GBTConfig)
    spec: dict[str, Any]  # asdict(LagSpec)
    history: list[dict[str, Any]]  # per boosting round: validation metrics
    best_iteration: int
    n_train: int
    val_metrics: dict[str, float]


def fit_member(
    features: np.ndarray, target: np.ndarray, train_ends: np.ndarray, val_ends: np.ndarray,
    lookback: int, scaler: Any, config: bl.GBTConfig, spec: bl.LagSpec = bl.LagSpec(),
    event_threshold: float = 0.5,
) -> FittedMember:
    """Fit the member on the training windows, early-stopped on the validation windows, exactly
    as the tree baseline is fitted (`subsample_ends` + `lag_features` + `fit_gbt`)."""
    from fabray.metrics.events import event_metrics

    train = bl.subsample_ends(train_ends, config.max_train_rows, config.seed)
    val = np.asarray(val_ends, dtype=np.int64)
    x_val = bl.lag_features(features, val, lookback, spec, scaler=scaler)
    y_val = np.asarray(target, dtype=np.float64)[val]
    model = bl.fit_gbt(bl.lag_features(features, train, lookback, spec, scaler=scaler),
                       np.asarray(target, dtype=np.float64)[train], x_val, y_val, config)
    best = int(getattr(model, "best_iteration_", 0) or 0)
    text = model.booster_.model_to_string(num_iteration=best if best > 0 else None)
    rounds = next(iter((getattr(model, "evals_result_", None) or {}).values()), {})
    n_rounds = max((len(v) for v in rounds.values()), default=0)
    history = [{"epoch": i + 1, **{f"val_{k}": float(v[i]) for k, v in rounds.items()}} for i in range(n_rounds)]
    val_metrics = event_metrics(y_val, bl.gbt_scores(model, x_val), event_threshold)
    return FittedMember(text, asdict(config), asdict(spec), history, best if best > 0 else n_rounds,
                        int(len(train)), {k: float(v) for k, v in val_metrics.items()})


class GBTMember:
    """A stored `gbt` member ready to score raw windows [B, L, F] → [B] probabilities."""

    is_tree_member = True  # how `RunPredictor` tells it from a Keras model (scored outside the graph)

    def __init__(self, booster: Any, spec: bl.LagSpec, scaler: Any, lookback: int, n_features: int) -> None:
        self.booster = booster
        self.spec = spec
        self.scaler = scaler
        self.lookback = int(lookback)
        self.n_features = int(n_features)
        expected = len(spec.names(["x"])) * self.n_features
        if int(booster.num_feature()) != expected:
            raise BadInputError(f"gbt member: the trees take {booster.num_feature()} features, the lag spec "
                                f"gives {expected} for {self.n_features} inputs")

    @classmethod
    def from_text(cls, model_text: str, spec: Mapping[str, Any], scaler: Any, lookback: int,
                  n_features: int) -> GBTMember:
        import lightgbm

        lag = bl.LagSpec(**{k: tuple(v) for k, v in spec.items()})
        return cls(lightgbm.Booster(model_str=model_text), lag, scaler, lookback, n_features)

    @classmethod
    def load(cls, model_path: Any, config_path: Any, scaler: Any, lookback: int, n_features: int) -> GBTMember:
        """The member of a run: its `model.txt` and `config.json` (whose "lag_spec" it reads);
        BadInputError naming the file when LightGBM is missing or a file is damaged."""
        if not bl.gbt_available():
            raise BadInputError(f"{model_path}: a LightGBM member needs LightGBM: pip install 'fabray[gbt]'")
        try:
            spec = json.loads(open(config_path).read())["lag_spec"]
            return cls.from_text(open(model_path).read(), spec, scaler, lookback, n_features)
        except BadInputError:
            raise
        except Exception as err:  # noqa: BLE001 - a damaged file is bad input, not a crash
            raise BadInputError(f"gbt member: cannot load {model_path}: {err}") from err

    @property
    def input_shape(self) -> tuple[None, int, int]:
        return (None, self.lookback, self.n_features)

    def score(self, windows: np.ndarray) -> np.ndarray:
        """[B] float64 event probability of raw windows [B, L, F]."""
        x = window_lag_features(windows, self.spec, self.scaler)
        return np.asarray(self.booster.predict(x), dtype=np.float64).reshape(-1)
