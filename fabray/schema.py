"""The data contract (DESIGN §2): column names and what each may hold.

One place that says which columns a zone-minute row has; the simulator writes them, the validator
checks them, the windows read them. The window contract's checks are one function each, which
every checker calls: the value ranges `range_violations` (data files: `fabray.data.validate`;
served windows, feed rows and batch files: `fabray.serve.validation`), each reporting a violation
in its own way; a window's shape `window_shape_problem` (the predictor, served windows, the
serving batcher, neighbours' windows).
"""

from __future__ import annotations

import numpy as np

TIMESTAMP = "timestamp"
ZONE = "zone"
TRANSPORT_TIME = "transport_time_s"

#: The 12 features per zone-minute, in the order the models (and the HTTP API) expect.
FEATURES: tuple[str, ...] = (
    "requests",
    "completions",
    "queue_len",
    "vehicles_idle",
    "vehicle_util",
    "vehicles_down",
    "blocked_segments",
    "mean_speed",
    "wip_lots",
    "stocker_fill",
    "hot_lots",
    TRANSPORT_TIME,
)

#: Counts: must be >= 0.
COUNT_FEATURES: tuple[str, ...] = (
    "requests",
    "completions",
    "queue_len",
    "vehicles_idle",
    "vehicles_down",
    "blocked_segments",
    "wip_lots",
    "hot_lots",
)

#: Fractions: must lie in [0, 1].
FRACTION_FEATURES: tuple[str, ...] = ("vehicle_util", "stocker_fill")

#: Measurements: must be >= 0 (with COUNT_FEATURES and FRACTION_FEATURES: every feature).
MEASUREMENT_FEATURES: tuple[str, ...] = ("mean_speed", TRANSPORT_TIME)

#: The largest value each feature can physically take in one zone-minute (raw units), far above
#: any real fab (the simulated ones stay below 300 lots, 2 m/s-ish vehicles, 20-minute
#: transports) yet small enough that float32 and the models' arithmetic stay finite. Features not
#: named here are bounded by DEFAULT_UPPER_BOUND.
UPPER_BOUNDS: dict[str, float] = {
    "vehicle_util": 1.0,
    "stocker_fill": 1.0,
    "mean_speed": 100.0,  # m/s
    TRANSPORT_TIME: 86_400.0,  # one day
}
DEFAULT_UPPER_BOUND = 100_000.0  # counts per zone-minute (requests, lots, vehicles, ...)

#: Columns that may be empty (NaN): transport time in a minute with zero completions.
NULLABLE_FEATURES: tuple[str, ...] = (TRANSPORT_TIME,)

COLUMNS: tuple[str, ...] = (TIMESTAMP, ZONE, *FEATURES)

# ---------------------------------------------------------------------------- optional columns
#: Optional *known-ahead* plan columns (DESIGN §1 "Inputs known ahead"): what the site's MES knows
#: before it happens, so their values for t+1 … t+H are known at t. Counts (>= 0, never empty):
#: `lots_planned` = lots the release plan sends into the zone in that minute (they arrive there as
#: transport requests in that minute); `pm_planned` = the zone's tools scheduled to be under
#: preventive maintenance in that minute.
PLAN_COLUMNS: tuple[str, ...] = ("lots_planned", "pm_planned")

#: Optional diagnostic column: what drove the zone's congestion in that minute. Never a model
#: input; evaluation uses it to break results down by cause. One of CAUSES on congested minutes,
#: "" (or empty / null) elsewhere.
CAUSE = "cause"
CAUSES: tuple[str, ...] = ("shift_change", "lot_release", "pm", "breakdown", "blockage", "spillover")
#: Causes a fab could see coming from its calendar and plans.
FORESEEABLE_CAUSES: tuple[str, ...] = ("shift_change", "lot_release", "pm")

#: Columns a file may have beyond COLUMNS (not "extra columns"); validated when present.
OPTIONAL_COLUMNS: tuple[str, ...] = (*PLAN_COLUMNS, CAUSE)


# ---------------------------------------------------------------------------- value ranges


def upper_bound(name: str) -> float:
    """The largest value `name` may physically take (see UPPER_BOUNDS)."""
    return UPPER_BOUNDS.get(name, DEFAULT_UPPER_BOUND)


def range_violations(name: str, values: np.ndarray, *, physical: bool = True) -> dict[str, np.ndarray]:
    """The one range rule of the data contract, for column `name` (a feature or a plan column):
    every value >= 0, a fraction <= 1, and (with `physical`) at most `upper_bound(name)`.

    Returns {"below_zero", "above_one" (fractions only), "above_bound" (with `physical`)}: [N]
    bool masks of the values [N] that break each part. NaN (a missing value) breaks none."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        out = {"below_zero": v < 0}
        if name in FRACTION_FEATURES:
            out["above_one"] = v > 1
        if physical:
            out["above_bound"] = v > upper_bound(name)
    return out


# ---------------------------------------------------------------------------- window shape


def window_shape_problem(shape: tuple[int, ...], lookback: int, n_features: int, *, batch: bool | None = None) -> str | None:
    """The one shape rule of a window: `lookback` minutes (oldest first) × `n_features` columns,
    one window [L, F] or a batch [B, L, F] (`batch` True/False: only that one). None when
    `shape` fits, else what is wrong, ending with the shape received."""
    ranks = {None: (2, 3), True: (3,), False: (2,)}[batch]
    shape = tuple(int(s) for s in shape)
    if len(shape) in ranks and shape[-2:] == (int(lookback), int(n_features)):
        return None
    form = " or ".join(f"[{'batch, ' if r == 3 else ''}{lookback}, {n_features}]" for r in ranks)
    return (f"expected windows of {lookback} minutes × {n_features} features ({form}). "
            f"Received: shape {list(shape)}")
