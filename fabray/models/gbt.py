"""The `gbt` member (issue 12 item 2): LightGBM on lag features, a member of the run beside the
Keras zoo, so the ensemble mixes model families. Pure: no Ray, no run-directory layout.

This module is also the tree baseline's one implementation (`fabray.evaluate.baselines` imports
it): `LagSpec` and `lag_features` (z-scored with the run's scaler: the inputs the neural models see, the 12 observed
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
import inspect
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from fabray.errors import BadInputError

logger = logging.getLogger(__name__)

GBT_MISSING = "LightGBM is not installed: pip install 'fabray[gbt]' to add the tree baseline"

GBT = "gbt"  # the member's name in train.models and in the run
KIND = "lightgbm"  # the manifest entry's "kind" (Keras entries have none)
MODEL_FILE = "model.txt"  # LightGBM's text format


# ---------------------------------------------------------------------------- trees on lag features


@dataclass(frozen=True)
class LagSpec:
    """Which lag features to take per input feature (all within the window)."""

    lags: tuple[int, ...] = (1,)  # x[t − k]
    deltas: tuple[int, ...] = (5, 10, 30)  # x[t] − x[t − k]
    means: tuple[int, ...] = (10, 30, 100)  # mean of the last k minutes
    stds: tuple[int, ...] = (10,)  # std of the last k minutes

    @property
    def span(self) -> int:
        """Minutes of history needed (the window must be at least this long)."""
        return max((*self.means, *self.stds, *(k + 1 for k in (*self.lags, *self.deltas)), 1))

    def names(self, features: Sequence[str]) -> list[str]:
        out = []
        for f in features:
            out += [f"{f}_last"] + [f"{f}_lag{k}" for k in self.lags]
            out += [f"{f}_delta{k}" for k in self.deltas] + [f"{f}_mean{k}" for k in self.means]
            out += [f"{f}_std{k}" for k in self.stds]
        return out


def lag_features(
    features: np.ndarray, ends: np.ndarray, lookback: int, spec: LagSpec = LagSpec(), chunk: int = 65_536,
    scaler: Any = None,
) -> np.ndarray:
    """[W, F × per-feature count] float32 lag features of the windows ending at `ends`.

    `scaler` (the run's `Scaler`): the raw series is z-scored first, as every model z-scores its
    input in its first layer; the trees' histogram bins depend on it (LightGBM's bin boundaries
    hold 0 apart), so the baseline sees the inputs the models see.

    Rolling means and spreads come from cumulative sums over the series, so the cost is
    O(N·F + W·K), never a materialized window; `chunk` ends are computed at a time. Every statistic stays inside the window
    (`spec.span` <= lookback), hence inside one segment. Column order: `spec.names(features)`.
    """
    x = np.asarray(features if scaler is None else scaler.transform(features), dtype=np.float64)  # [N, F]
    ends = np.asarray(ends, dtype=np.int64)  # [W]
    if spec.span > lookback:
        raise ValueError(f"lag features reach {spec.span} minutes back, past the window of {lookback}. Received: {spec}")
    if ends.size and (ends.min() < lookback - 1 or ends.max() >= len(x)):
        raise ValueError(
            f"window ends must lie in [{lookback - 1}, {len(x) - 1}]. Received: min {ends.min()}, max {ends.max()}"
        )
    zeros = np.zeros((1, x.shape[1]))
    cs = np.concatenate([zeros, np.cumsum(x, axis=0)])  # [N + 1, F]
    cs2 = np.concatenate([zeros, np.cumsum(x * x, axis=0)])

    per_feature = len(spec.names(["x"]))
    out = np.empty((len(ends), x.shape[1] * per_feature), dtype=np.float32)  # [W, F·K]
    for start in range(0, len(ends), chunk):
        e = ends[start:start + chunk]  # [C]

        def mean(k: int, s: np.ndarray = cs, e: np.ndarray = e) -> np.ndarray:
            return (s[e + 1] - s[e + 1 - k]) / k  # [C, F]

        last = x[e]  # [C, F]
        blocks = [last] + [x[e - k] for k in spec.lags] + [last - x[e - k] for k in spec.deltas]
        blocks += [mean(k) for k in spec.means]
        blocks += [np.sqrt(np.maximum(mean(k, cs2) - mean(k) ** 2, 0.0)) for k in spec.stds]
        out[start:start + len(e)] = np.stack(blocks, axis=2).reshape(len(e), -1)  # [C, F, K] by feature
    return out


def subsample_ends(ends: np.ndarray, max_rows: int, seed: int = 0) -> np.ndarray:
    """At most `max_rows` of `ends`, drawn at random without replacement, kept in order."""
    ends = np.asarray(ends, dtype=np.int64)
    if len(ends) <= max_rows:
        return ends
    return np.sort(np.random.default_rng(seed).choice(ends, max_rows, replace=False))


@dataclass(frozen=True)
class GBTConfig:
    """LightGBM settings of the tree baseline (sane defaults for a binary, imbalanced target)."""

    n_estimators: int = 400
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_child_samples: int = 50
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    early_stopping_rounds: int = 30
    max_train_rows: int = 300_000  # random subsample of training windows beyond this
    n_jobs: int = 2
    seed: int = 0


def gbt_available() -> bool:
    try:
        import lightgbm  # noqa: F401
    except ImportError:
        return False
    return True


def fit_gbt(
    x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
    config: GBTConfig = GBTConfig(),
) -> Any:
    """A fitted `lightgbm.LGBMClassifier`, early-stopped on validation average precision.
    NaN targets are dropped. ImportError when LightGBM is missing (see `gbt_available`)."""
    import lightgbm

    keep = ~np.isnan(y_train)
    x_train, y_train = x_train[keep], y_train[keep]
    if len(y_train) > config.max_train_rows:
        rows = np.sort(np.random.default_rng(config.seed).choice(len(y_train), config.max_train_rows, replace=False))
        x_train, y_train = x_train[rows], y_train[rows]
    if len(np.unique(y_train)) < 2:
        raise ValueError(f"the tree baseline needs both classes in training. Received: only {np.unique(y_train).tolist()}")
    keep_val = ~np.isnan(y_val)
    params = asdict(config)
    stop = params.pop("early_stopping_rounds")
    params.pop("max_train_rows")
    seed = params.pop("seed")
    model = lightgbm.LGBMClassifier(
        objective="binary", subsample_freq=1, random_state=seed, verbose=-1, **params
    )
    x_eval, y_eval = x_val[keep_val], y_val[keep_val].astype(np.int32)
    # LightGBM >= 4.7 takes eval_X/eval_y (eval_set is deprecated there); older ones eval_set.
    if "eval_X" in inspect.signature(model.fit).parameters:
        evals: dict[str, Any] = {"eval_X": (x_eval,), "eval_y": (y_eval,)}
    else:
        evals = {"eval_set": [(x_eval, y_eval)]}
    model.fit(
        x_train, y_train.astype(np.int32), **evals,
        eval_metric="average_precision",
        callbacks=[lightgbm.early_stopping(stop, first_metric_only=True, verbose=False)],
    )
    logger.info("gbt baseline: %d trees (best iteration %s) on %d windows", config.n_estimators,
                getattr(model, "best_iteration_", None), len(y_train))
    return model


def gbt_scores(model: Any, x: np.ndarray) -> np.ndarray:
    """[W] event probability of the fitted tree model."""
    return np.asarray(model.predict_proba(x)[:, 1], dtype=np.float64)


# ---------------------------------------------------------------------------- the run's member

def is_gbt_entry(entry: Mapping[str, Any]) -> bool:
    """Whether a manifest model entry is a LightGBM member (entries without "kind" are Keras)."""
    return entry.get("kind") == KIND


def require_lightgbm(names: Sequence[str]) -> None:
    """BadInputError when "gbt" is among `names` and LightGBM is not installed."""
    if GBT in names and not gbt_available():
        raise BadInputError(
            "train.models includes 'gbt', the LightGBM member, but LightGBM is not installed: "
            f"pip install 'fabray[gbt]' (the gbt extra), or drop 'gbt'. Received: models={list(names)}"
        )


def gbt_config(overrides: Mapping[str, Any], *, n_jobs: int, seed: int) -> GBTConfig:
    """The member's `GBTConfig`: `train.model_overrides["gbt"]` (fields of `GBTConfig`) over the
    defaults, with `n_jobs` from the member's CPUs and the run's seed unless overridden."""
    known = {f.name for f in fields(GBTConfig)}
    stray = sorted(set(overrides) - known)
    if stray:
        raise BadInputError(f"model_overrides for 'gbt': unknown field(s) {stray}; known: {sorted(known)}")
    try:
        return GBTConfig(**{"n_jobs": n_jobs, "seed": seed, **dict(overrides)})
    except (TypeError, ValueError) as err:
        raise BadInputError(f"model_overrides for 'gbt': {err}") from err


def window_lag_features(windows: np.ndarray, spec: LagSpec, scaler: Any) -> np.ndarray:
    """[B, K] float32 lag features of raw windows [B, L, F] (see the module docstring)."""
    x = np.asarray(windows, dtype=np.float64)
    b, lookback, n_features = x.shape
    ends = np.arange(b, dtype=np.int64) * lookback + lookback - 1  # [B] last row of each window
    return lag_features(x.reshape(b * lookback, n_features), ends, lookback, spec, scaler=scaler)


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
    lookback: int, scaler: Any, config: GBTConfig, spec: LagSpec = LagSpec(),
    event_threshold: float = 0.5,
) -> FittedMember:
    """Fit the member on the training windows, early-stopped on the validation windows, exactly
    as the tree baseline is fitted (`subsample_ends` + `lag_features` + `fit_gbt`)."""
    from fabray.metrics.events import event_metrics

    train = subsample_ends(train_ends, config.max_train_rows, config.seed)
    val = np.asarray(val_ends, dtype=np.int64)
    x_val = lag_features(features, val, lookback, spec, scaler=scaler)
    y_val = np.asarray(target, dtype=np.float64)[val]
    model = fit_gbt(lag_features(features, train, lookback, spec, scaler=scaler),
                       np.asarray(target, dtype=np.float64)[train], x_val, y_val, config)
    best = int(getattr(model, "best_iteration_", 0) or 0)
    text = model.booster_.model_to_string(num_iteration=best if best > 0 else None)
    rounds = next(iter((getattr(model, "evals_result_", None) or {}).values()), {})
    n_rounds = max((len(v) for v in rounds.values()), default=0)
    history = [{"epoch": i + 1, **{f"val_{k}": float(v[i]) for k, v in rounds.items()}} for i in range(n_rounds)]
    val_metrics = event_metrics(y_val, gbt_scores(model, x_val), event_threshold)
    return FittedMember(text, asdict(config), asdict(spec), history, best if best > 0 else n_rounds,
                        int(len(train)), {k: float(v) for k, v in val_metrics.items()})


class GBTMember:
    """A stored `gbt` member ready to score raw windows [B, L, F] → [B] probabilities."""

    is_tree_member = True  # how `RunPredictor` tells it from a Keras model (scored outside the graph)

    def __init__(self, booster: Any, spec: LagSpec, scaler: Any, lookback: int, n_features: int) -> None:
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

        lag = LagSpec(**{k: tuple(v) for k, v in spec.items()})
        return cls(lightgbm.Booster(model_str=model_text), lag, scaler, lookback, n_features)

    @classmethod
    def load(cls, model_path: Any, config_path: Any, scaler: Any, lookback: int, n_features: int) -> GBTMember:
        """The member of a run: its `model.txt` and `config.json` (whose "lag_spec" it reads);
        BadInputError naming the file when LightGBM is missing or a file is damaged."""
        if not gbt_available():
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
