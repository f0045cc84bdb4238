"""What the models must beat (DESIGN §1, issue 5): three baselines, pure (no Ray, no files).

- **persistence** ("event now → event next"): at minute t, alarm when the zone's mean transport
  delay over the last `horizon` minutes (t−H+1 … t, the same quantity the target measures over
  the next H minutes) is above the SLA. It is exactly the target of the window that ended H
  minutes earlier, known by now. Binary: one operating point, no threshold to tune. Minutes with
  no completed transport in the last H minutes give no evidence: no alarm.
- **rules**: the untrained `rule` model, i.e. its rule score alone (the correction LSTM's output
  layer is zero-initialized, so an untrained model outputs exactly the rule score). The rules'
  thresholds are in raw units and the rule score reads the raw window.
- **gbt**: gradient-boosted trees (LightGBM) on lag features of the same 100-minute window the
  models see (last value, lags, differences, rolling means and spread): what a fab engineer
  would build instead of a deep model zoo. No time-of-day or other input the models do not get,
  so the comparison is about the model, not the information. LightGBM is the optional extra
  `fabray[gbt]`; without it the baseline is skipped with a note (`gbt_available()`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fabray.numeric import sigmoid

logger = logging.getLogger(__name__)

GBT_MISSING = "LightGBM is not installed: pip install 'fabray[gbt]' to add the tree baseline"


# ---------------------------------------------------------------------------- persistence


def persistence_alarms(
    delay_s: np.ndarray, ends: np.ndarray, horizon: int, sla_delay_s: float, lookback: int
) -> np.ndarray:
    """[W] 0/1: the event of the last `horizon` minutes, as the forecast of the next ones.

    Args:
        delay_s: [N] mean delay of the `horizon` minutes AFTER each row (`PreparedData.delay_s`),
            NaN where undefined. Its value at row t − H is the delay over t−H+1 … t.
        ends: [W] window end rows; each window holds `lookback` > `horizon` minutes of one
            segment, so row t − H belongs to the same zone and has its H minutes inside it.
        horizon, sla_delay_s: the task's.
    """
    if lookback <= horizon:
        raise ValueError(
            f"persistence needs lookback > horizon so the last horizon minutes lie in the window. "
            f"Received: lookback={lookback}, horizon={horizon}"
        )
    ends = np.asarray(ends, dtype=np.int64)  # [W]
    if ends.size and ends.min() < lookback - 1:
        raise ValueError(f"window ends must be >= lookback − 1 = {lookback - 1}. Received: min {ends.min()}")
    recent = np.asarray(delay_s, dtype=np.float64)[ends - horizon]  # [W] delay over t−H+1 … t
    return np.where(np.isnan(recent), 0.0, (recent > sla_delay_s).astype(np.float64))


# ---------------------------------------------------------------------------- rules


def rules_model(lookback: int, n_features: int, overrides: Mapping[str, Any] | None = None) -> Any:
    """The untrained `rule` model (its output is the rule score, a logit)."""
    from fabray.models import build_model

    return build_model("rule", lookback, n_features, overrides)


def rules_scores(
    features: np.ndarray,
    ends: np.ndarray,
    lookback: int,
    overrides: Mapping[str, Any] | None = None,
    batch_size: int = 8192,
) -> np.ndarray:
    """[W] probability (sigmoid of the rule score) for the windows of the raw series
    `features` [N, F] ending at `ends` [W]. Only the model's weight-free `rule_score` layer is
    run: for an untrained model that is its whole output, without the idle correction LSTM."""
    import keras

    from fabray.data.windows import gather_windows

    model = rules_model(lookback, features.shape[1], overrides)
    layer = model.get_layer("rule_score")
    ends = np.asarray(ends, dtype=np.int64)
    out = np.empty(len(ends), dtype=np.float64)
    for start in range(0, len(ends), batch_size):
        x = gather_windows(features, ends[start:start + batch_size], lookback)  # [C, L, F]
        logit = keras.ops.convert_to_numpy(layer(x)).reshape(-1)  # [C]
        out[start:start + len(x)] = sigmoid(logit)
    return out


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
