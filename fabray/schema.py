"""The data contract (DESIGN §2): column names and what each may hold.

One place that says which columns a zone-minute row has; the simulator writes them, the validator
checks them, the windows read them.
"""

from __future__ import annotations

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

#: Columns that may be empty (NaN): transport time in a minute with zero completions.
NULLABLE_FEATURES: tuple[str, ...] = (TRANSPORT_TIME,)

COLUMNS: tuple[str, ...] = (TIMESTAMP, ZONE, *FEATURES)
