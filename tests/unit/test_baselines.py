"""The three baselines on tiny, hand-built inputs."""

from __future__ import annotations

import numpy as np
import pytest

from fabray.evaluate import baselines as bl
from fabray.schema import FEATURES


# ---------------------------------------------------------------------------- persistence


def test_persistence_alarms_on_the_delay_of_the_last_horizon_minutes():
    # delay_s[i] = mean delay of minutes i+1 … i+H; at end t the last H minutes are delay_s[t − H]
    delay_s = np.array([0, 10, 70, 80, np.nan, 61, 59, 60, 100, 0, 0, 0], dtype=float)
    ends = np.arange(4, 12)
    alarms = bl.persistence_alarms(delay_s, ends, horizon=3, sla_delay_s=60.0, lookback=5)
    # delay_s[ends − 3] = [10, 70, 80, nan, 61, 59, 60, 100]; alarm where > 60, NaN → no alarm
    assert alarms.tolist() == [0, 1, 1, 0, 1, 0, 0, 1]


def test_persistence_needs_the_last_horizon_inside_the_window():
    with pytest.raises(ValueError, match="lookback > horizon"):
        bl.persistence_alarms(np.zeros(20), np.arange(9, 20), horizon=10, sla_delay_s=60, lookback=10)


# ---------------------------------------------------------------------------- rules


#: A calm zone-minute in raw units (FEATURES order): half-busy vehicles, nothing blocked.
CALM = np.array([5, 5, 2, 10, 0.5, 0, 0, 3.0, 120, 0.6, 0, 150], dtype=float)


OVERRIDES = {"lstm_units": 4, "head_units": [4]}


def test_rules_baseline_is_the_untrained_rule_model():
    overrides = OVERRIDES
    lookback = 30
    rng = np.random.default_rng(0)
    features = (CALM + rng.standard_normal((80, len(FEATURES)))).astype(np.float32)  # raw series
    ends = np.arange(lookback - 1, 80, 7)
    got = bl.rules_scores(features, ends, lookback, overrides, batch_size=4)
    model = bl.rules_model(lookback, len(FEATURES), overrides)
    from fabray.data.windows import gather_windows

    logit = model.predict(gather_windows(features, ends, lookback), verbose=0).reshape(-1)
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-logit)), rtol=1e-5, atol=1e-6)


def test_rules_raise_the_score_when_segments_block():
    overrides = OVERRIDES
    lookback = 30
    calm = np.tile(CALM, (lookback, 1))  # raw units
    blocked = calm.copy()
    blocked[-10:, FEATURES.index("blocked_segments")] = 3.0
    blocked[-10:, FEATURES.index("vehicle_util")] = 0.99
    raw = np.stack([calm, blocked])  # [2, L, F]
    series = raw.astype(np.float32).reshape(-1, len(FEATURES))  # [2L, F] raw, as prepare gives it
    ends = np.array([lookback - 1, 2 * lookback - 1])
    calm_p, blocked_p = bl.rules_scores(series, ends, lookback, overrides)
    assert blocked_p > calm_p + 0.3


# ---------------------------------------------------------------------------- lag features


def test_lag_features_match_a_direct_computation():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 2))
    spec = bl.LagSpec(lags=(1,), deltas=(2,), means=(3,), stds=(3,))
    lookback = 8
    ends = np.array([7, 20, 39])
    got = bl.lag_features(x, ends, lookback, spec)
    np.testing.assert_array_equal(bl.lag_features(x, ends, lookback, spec, chunk=2), got)  # chunked alike
    names = spec.names(["a", "b"])
    assert got.shape == (3, len(names)) == (3, 2 * 5)
    for i, t in enumerate(ends):
        for f, name in enumerate("ab"):
            window = x[t - 2:t + 1, f]
            expected = {
                f"{name}_last": x[t, f], f"{name}_lag1": x[t - 1, f], f"{name}_delta2": x[t, f] - x[t - 2, f],
                f"{name}_mean3": window.mean(), f"{name}_std3": window.std(),
            }
            for key, value in expected.items():
                assert got[i, names.index(key)] == pytest.approx(value, abs=1e-5), (t, key)


def test_lag_features_refuse_to_reach_past_the_window():
    with pytest.raises(ValueError, match="past the window"):
        bl.lag_features(np.zeros((200, 2)), np.array([150]), 50, bl.LagSpec(means=(100,)))


# ---------------------------------------------------------------------------- trees


def test_gbt_learns_a_lagged_rule():
    pytest.importorskip("lightgbm")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3000, 3))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0.8).astype(float)
    y[::50] = np.nan  # undefined targets are dropped
    model = bl.fit_gbt(x[:2000], y[:2000], x[2000:2500], y[2000:2500],
                       bl.GBTConfig(n_estimators=100, n_jobs=1, min_child_samples=10))
    prob = bl.gbt_scores(model, x[2500:])
    from fabray.metrics import event_metrics

    assert prob.shape == (500,)
    assert event_metrics(y[2500:], prob, 0.5)["f1"] > 0.85


def test_gbt_refuses_a_single_class():
    pytest.importorskip("lightgbm")
    x = np.zeros((50, 2))
    with pytest.raises(ValueError, match="both classes"):
        bl.fit_gbt(x, np.zeros(50), x, np.zeros(50))


def test_lag_features_of_the_raw_series_with_the_scaler_are_those_of_the_z_scores():
    """The trees see the inputs the models see (z-scores): LightGBM's bins are not scale-free."""
    from fabray.data.scaler import Scaler

    rng = np.random.default_rng(4)
    raw = (CALM + 3.0 * rng.standard_normal((150, len(FEATURES)))).astype(np.float32)  # [N, F] raw
    scaler = Scaler.fit(raw[:100], FEATURES)
    ends = np.arange(119, 150, 5)
    np.testing.assert_array_equal(bl.lag_features(raw, ends, 100, scaler=scaler),
                                  bl.lag_features(scaler.transform(raw), ends, 100))
