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
