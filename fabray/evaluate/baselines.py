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
  `fabray[gbt]`; without it the baseline is skipped with a note (`gbt_available()`). The lag
  features and the fit are `fabray.models.gbt`'s, the one implementation the run's `gbt`
  member uses too (imported here under the names evaluate has always used).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from fabray.models.gbt import (  # the tree baseline is the gbt member's model
    GBT_MISSING,
    GBTConfig,
    LagSpec,
    fit_gbt,
    gbt_available,
    gbt_scores,
    lag_features,
    subsample_ends,
)
from fabray.numeric import sigmoid

logger = logging.getLogger(__name__)

__all__ = [
    "GBTConfig", "GBT_MISSING", "LagSpec", "fit_gbt", "gbt_available", "gbt_scores", "lag_features",
    "persistence_alarms", "rules_model", "rules_scores", "subsample_ends",
]



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
