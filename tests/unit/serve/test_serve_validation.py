"""One served window: shape and value checks, gaps, stuck sensors (fabray.serve.validation)."""

from __future__ import annotations

import numpy as np
import pytest

from fabray import schema
from fabray.config import DegradedRules
from fabray.errors import BadInputError
from fabray.serve.validation import check_window

L = 30
F = len(schema.FEATURES)
RULES = DegradedRules(max_gap_minutes=3, stuck_minutes=10)
col = schema.FEATURES.index


def good_window(seed: int = 0) -> np.ndarray:
    """A plausible raw window [L, F] whose continuous sensors never repeat."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(1.0, 20.0, size=(L, F))
    for name in schema.FRACTION_FEATURES:
        x[:, col(name)] = rng.uniform(0.1, 0.9, size=L)
    return x


def check(values, **kw):
    return check_window(values, lookback=L, rules=RULES, **kw)


def test_a_clean_window_passes_unchanged_as_float32():
    x = good_window()
    out = check(x.tolist())
    assert out.values.dtype == np.float32 and out.values.shape == (L, F)
    np.testing.assert_allclose(out.values, x.astype(np.float32))
    assert not out.degraded and out.degraded_reasons == ()


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda rows: rows[:-1], "expected 30 rows"),
        (lambda rows: rows[:5] + [rows[5][:-1]] + rows[6:], "row 5 must have 12 values"),
        (lambda rows: rows[:2] + [rows[2][:3] + [float("inf")] + rows[2][4:]] + rows[3:], "must be finite"),
    ],
    ids=["rows", "values-per-row", "inf"],
)
def test_wrong_shape_or_infinite_value_is_refused_with_its_position(mutate, expected):
    rows = good_window().tolist()
    with pytest.raises(BadInputError, match=expected):
        check(mutate(rows), where="windows[2]")


def test_errors_name_the_window():
    with pytest.raises(BadInputError, match=r"^windows\[7\]: expected 30 rows"):
        check(good_window().tolist()[:3], where="windows[7]")


def test_negative_count_and_fraction_above_one_are_refused():
    x = good_window()
    x[4, col("queue_len")] = -1
    with pytest.raises(BadInputError, match="'queue_len' is a count.*row 4"):
        check(x)
    x = good_window()
    x[9, col("vehicle_util")] = 1.5
    with pytest.raises(BadInputError, match="'vehicle_util' is a fraction.*row 9"):
        check(x)


def test_empty_transport_time_is_carried_forward_and_not_degraded():
    x = good_window()
    tt = col(schema.TRANSPORT_TIME)
    x[0, tt] = np.nan  # leading: filled from the first value
    x[10:13, tt] = np.nan
    out = check(x)
    assert not out.degraded
    assert out.values[0, tt] == np.float32(x[1, tt])
    assert (out.values[10:13, tt] == np.float32(x[9, tt])).all()


def test_a_short_gap_is_filled_forward_and_flags_the_window_degraded():
    rows = good_window().tolist()
    rows[20] = [None] * F  # a missing minute
    rows[21][col("requests")] = None
    out = check(rows)
    assert out.degraded
    assert "gap: 2 minute(s)" in out.degraded_reasons[0] and "[20, 21]" in out.degraded_reasons[0]
    assert np.isfinite(out.values).all()
    np.testing.assert_array_equal(out.values[20], out.values[19])


def test_a_long_gap_is_refused():
    rows = good_window().tolist()
    for i in range(5, 9):
        rows[i] = [None] * F
    with pytest.raises(BadInputError, match="4 minutes have missing values.*at most 3"):
        check(rows)


def test_a_feature_missing_everywhere_is_refused():
    x = good_window()
    x[:, col("mean_speed")] = np.nan
    with pytest.raises(BadInputError, match=r"no value in any minute for feature\(s\) \['mean_speed'\]"):
        check(x)


def test_a_stuck_sensor_flags_the_window_degraded():
    x = good_window()
    x[-10:, col("mean_speed")] = 2.5
    out = check(x)
    assert out.degraded and "stuck sensor: mean_speed" in out.degraded_reasons[0]
    x = good_window()
    x[-9:, col("mean_speed")] = 2.5  # one minute short of stuck_minutes
    assert not check(x).degraded


def test_features_not_in_the_stuck_list_may_repeat():
    x = good_window()
    x[:, col("vehicle_util")] = 1.0  # saturated utilization is normal
    x[:, col("hot_lots")] = 0.0
    assert not check(x).degraded
