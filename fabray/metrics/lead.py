"""Lead time: per-episode warning records of an alarm series, the `lead` object and the headline
NAB-style `lead_score` (DESIGN §1, the `lead` object of DESIGN §8); every term is defined in the
comment below."""

from __future__ import annotations

import math

import numpy as np

from fabray.metrics._inputs import _as_alarm, _check_lengths
from fabray.metrics.episodes import _event_mask, _next_true, _segment_bounds, episodes, observed_onsets


# ---------------------------------------------------------------------------------------------
# Lead time: warnings before the delay (DESIGN §1, the `lead` object of DESIGN §8)
# ---------------------------------------------------------------------------------------------
#
# Inputs are in (segment, time) order, one row per minute; `segments` [N] is an id that changes
# at a zone change and at a gap, so a segment is an unbroken run of one zone's minutes.
#
# - `event` [N] 0/1/NaN: the label of the window ending at row t (mean delay over t+1..t+H above
#   the SLA). An *episode* is a maximal run of event == 1 rows inside one segment (NaN is not an
#   event and breaks a run); start s, end e (inclusive).
# - `minute_delay_s` [N]: the minute's own transport delay (transport time carried forward minus
#   the zone's nominal), seconds. *Observed onset* o: the first row r in [s, min(e + H, segment
#   end)] with minute_delay_s[r] > sla_delay_s; if there is none, o = min(s + H, segment end).
#   No smoothing: one late minute is enough (NaN delays never exceed the SLA).
# - *Alarm runs*: maximal runs of alarm rows inside a segment.
# - *Credit window* of an episode: rows [s − W, o − 1] of its segment (clipped at the segment's
#   first row), W = `early_window` (default: the horizon). If an alarm row lies in it, the first
#   such row r gives the warning time a = max(start of r's alarm run, s − W), which is r itself
#   (a run reaching into the window from before is cut at the window's first row). Otherwise the
#   episode is *missed*.
# - Per episode: warned_at_start = a <= s; warned_before_onset = a exists (a < o always);
#   warned_5min_before_onset = o − a >= 5; lead_min = o − a (minutes of warning before the delay
#   is observed); lead_vs_start_min = s − a (negative when warned after the forecast start).
# - *False-alarm runs*: drop every alarm row lying in some episode's span [s − W, e + H] (same
#   segment) and every alarm row whose event is undefined (NaN: not scored); the alarm rows left
#   form maximal runs (consecutive rows, one segment), each one false-alarm run. Per zone-day:
#   runs / (rows scored / 1440), rows scored = rows whose event is defined.
# - Headline `lead_score`, NAB-style (Lavin & Ahmad 2015) adapted to forecasting: an episode
#   warned at or before s earns A_tp; warned at a with s < a < o earns A_tp·(o − a)/(o − s)
#   (linear decay to 0 at the observed onset); missed costs A_fn; each false-alarm *unit* costs
#   A_fp, where a false-alarm run of length m minutes counts ⌈m / H⌉ units (a standing alarm
#   re-demands the dispatcher's attention every horizon; NAB counts every flagged point outside
#   the windows, so an always-on detector must not pass for one false alarm between episodes).
#   raw = Σ A_tp·credit − A_fn·missed − A_fp·false_alarm_units, normalised as
#   100·(raw − raw_null)/(raw_perfect − raw_null) with raw_null = −A_fn·E (no alarm at all) and
#   raw_perfect = A_tp·E: the null detector scores 0, a perfect one 100, spam goes below 0; NaN
#   when there is no episode.

#: NAB-style application profiles: weight of a warned episode (tp), a missed one (fn) and a
#: false-alarm run (fp). "standard" is the headline.
LEAD_PROFILES: dict[str, dict[str, float]] = {
    "standard": {"tp": 1.0, "fn": 1.0, "fp": 0.25},
    "low_fp": {"tp": 1.0, "fn": 1.0, "fp": 0.5},
    "low_fn": {"tp": 1.0, "fn": 2.0, "fp": 0.25},
}
#: The headline metric's key in every metrics object (`lead_score` of the "standard" profile).
HEADLINE_METRIC = "lead_score"
#: Minutes of warning before the observed onset that count as "acting in time".
WARN_MINUTES = 5
MINUTES_PER_DAY = 1440


class LeadEpisodes:
    """Per-episode lead-time records of one alarm series (see the definitions above).

    Attributes (arrays of length E, the number of episodes, in row order):
        start, end, onset: int rows s, e, o.
        warned_at: int row a of the warning, −1 where missed.
        warned_at_start, warned_before_onset, warned_5min_before_onset: bool flags.
        lead_min: o − a (float, NaN where missed); lead_vs_start_min: s − a (NaN where missed).
        credit: NAB credit in [0, 1] of a warned episode (1 at or before s, linear to 0 at o),
            NaN where missed.
    And scalars: false_alarm_runs, false_alarm_minutes, false_alarm_units (Σ ⌈run length / H⌉),
    rows_scored, horizon, early_window.
    """

    def __init__(self, *, start, end, onset, warned_at, false_alarm_runs, rows_scored, horizon, early_window,
                 false_alarm_minutes=None, false_alarm_units=None):
        self.start = np.asarray(start, dtype=np.int64)  # [E]
        self.end = np.asarray(end, dtype=np.int64)  # [E]
        self.onset = np.asarray(onset, dtype=np.int64)  # [E]
        self.warned_at = np.asarray(warned_at, dtype=np.int64)  # [E]
        self.false_alarm_runs = int(false_alarm_runs)
        self.false_alarm_minutes = int(false_alarm_runs if false_alarm_minutes is None else false_alarm_minutes)
        self.false_alarm_units = int(false_alarm_runs if false_alarm_units is None else false_alarm_units)
        self.rows_scored = int(rows_scored)
        self.horizon = int(horizon)
        self.early_window = int(early_window)
        warned = self.warned_at >= 0
        a = self.warned_at.astype(np.float64)
        self.warned_before_onset = warned  # [E] bool
        self.warned_at_start = warned & (self.warned_at <= self.start)
        self.lead_min = np.where(warned, self.onset - a, np.nan)  # [E]
        self.lead_vs_start_min = np.where(warned, self.start - a, np.nan)  # [E]
        self.warned_5min_before_onset = warned & (self.lead_min >= WARN_MINUTES)
        span = np.maximum(self.onset - self.start, 1).astype(np.float64)
        decay = np.clip((self.onset - a) / span, 0.0, 1.0)
        self.credit = np.where(self.warned_at_start, 1.0, np.where(warned, decay, np.nan))  # [E]

    @property
    def n_episodes(self) -> int:
        return int(self.start.size)

    @property
    def zone_days(self) -> float:
        return self.rows_scored / MINUTES_PER_DAY

    def __repr__(self) -> str:
        return (
            f"LeadEpisodes(episodes={self.n_episodes}, warned_at_start={int(self.warned_at_start.sum())}, "
            f"warned_before_onset={int(self.warned_before_onset.sum())}, false_alarm_runs={self.false_alarm_runs})"
        )


class _LeadFrame:
    """What does not depend on the alarm: episodes, onsets, credit windows, episode spans."""

    def __init__(self, event, segments, minute_delay_s, sla_delay_s, horizon, early_window):
        if horizon < 1:
            raise ValueError(f"horizon must be at least 1 minute. Received: horizon={horizon}")
        w = horizon if early_window is None else int(early_window)
        if w < 0:
            raise ValueError(f"early_window must be >= 0 minutes. Received: early_window={early_window}")
        self.is_event, self.defined = _event_mask(event)
        n = self.is_event.size
        self.segments = np.asarray(segments).reshape(-1)
        delay = np.asarray(minute_delay_s, dtype=np.float64).reshape(-1)
        _check_lengths(n, segments=self.segments, minute_delay_s=delay)
        self.n = n
        self.horizon, self.early_window = int(horizon), w
        self.seg_first, self.seg_last = _segment_bounds(self.segments)
        self.start, self.end = episodes(self.is_event.astype(np.float64), self.segments)
        self.onset = observed_onsets(self.start, self.end, self.segments, delay, sla_delay_s, horizon)
        first = self.seg_first[self.start] if self.start.size else self.start
        last = self.seg_last[self.start] if self.start.size else self.start
        self.window_lo = np.maximum(self.start - w, first)  # [E] credit window [lo, hi]
        self.window_hi = self.onset - 1  # [E]
        # [N] rows inside some episode's span [s − W, e + H] (clipped to the segment)
        span_hi = np.minimum(self.end + horizon, last)
        cover = np.zeros(n + 1, dtype=np.int64)
        np.add.at(cover, self.window_lo, 1)
        np.add.at(cover, span_hi + 1, -1)
        self.in_span = np.cumsum(cover[:n]) > 0
        self.new_seg = np.ones(n, dtype=bool)
        self.new_seg[1:] = self.segments[1:] != self.segments[:-1]
        self.rows_scored = int(self.defined.sum())

    def score(self, alarm: np.ndarray) -> LeadEpisodes:
        alarm = _as_alarm(alarm)
        _check_lengths(self.n, alarm=alarm)
        nxt = _next_true(alarm)  # [N + 1]
        r = nxt[self.window_lo] if self.start.size else self.start  # [E] first alarm row >= lo
        warned_at = np.where(r <= self.window_hi, r, -1)
        fa = alarm & self.defined & ~self.in_span  # [N]
        prev = np.zeros(self.n, dtype=bool)
        prev[1:] = fa[:-1]
        run_begins = fa & (self.new_seg | ~prev)  # [N]
        runs = int(np.sum(run_begins))
        lengths = np.bincount(np.cumsum(run_begins)[fa] - 1, minlength=runs) if runs else np.zeros(0, np.int64)
        return LeadEpisodes(
            start=self.start, end=self.end, onset=self.onset, warned_at=warned_at,
            false_alarm_runs=runs, false_alarm_minutes=int(fa.sum()),
            false_alarm_units=int(np.sum(-(-lengths // self.horizon))), rows_scored=self.rows_scored,
            horizon=self.horizon, early_window=self.early_window,
        )


def lead_episodes(
    event: np.ndarray,
    alarm: np.ndarray,
    segments: np.ndarray,
    minute_delay_s: np.ndarray,
    sla_delay_s: float,
    horizon: int,
    early_window: int | None = None,
) -> LeadEpisodes:
    """Per-episode warning records of `alarm` (definitions in the comment block above).

    Args:
        event: [N] delay_event, 0/1/NaN.
        alarm: [N] bool (or 0/1) alarm of each row, e.g. `prob >= threshold`.
        segments: [N] segment id, rows in (segment, time) order.
        minute_delay_s: [N] each minute's own transport delay, seconds.
        sla_delay_s: SLA delay, seconds.
        horizon: H, minutes the label looks ahead.
        early_window: W, minutes before the start that still earn credit (default H).

    Returns:
        `LeadEpisodes`: start, end, onset, warned_at, flags, lead_min, lead_vs_start_min, credit,
        false_alarm_runs, rows_scored.
    """
    return _LeadFrame(event, segments, minute_delay_s, sla_delay_s, horizon, early_window).score(alarm)


def lead_score(records: LeadEpisodes, profile: str = "standard") -> float:
    """NAB-style normalised lead score of `records` under `profile` (a key of `LEAD_PROFILES`):
    100·(raw − raw_null)/(raw_perfect − raw_null); null detector 0, perfect 100; NaN with no
    episode. raw = Σ A_tp·credit (warned) − A_fn·missed − A_fp·false_alarm_units."""
    if profile not in LEAD_PROFILES:
        raise ValueError(f"profile must be one of {sorted(LEAD_PROFILES)}. Received: profile={profile!r}")
    weights = LEAD_PROFILES[profile]
    e = records.n_episodes
    if e == 0:
        return math.nan
    warned = records.warned_before_onset
    raw = (
        weights["tp"] * float(np.sum(records.credit[warned]))
        - weights["fn"] * float(np.sum(~warned))
        - weights["fp"] * records.false_alarm_units
    )
    raw_null = -weights["fn"] * e
    raw_perfect = weights["tp"] * e
    return 100.0 * (raw - raw_null) / (raw_perfect - raw_null)


def _median(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(np.median(x)) if x.size else math.nan


def lead_summary(records: LeadEpisodes) -> dict[str, float]:
    """The `lead` object (DESIGN §8) of `records`, with the lead scores of every profile."""
    e = records.n_episodes
    counts = {
        "warned_at_start": int(records.warned_at_start.sum()),
        "warned_before_onset": int(records.warned_before_onset.sum()),
        "warned_5min_before_onset": int(records.warned_5min_before_onset.sum()),
    }
    out: dict[str, float] = {"episodes": e, **counts}
    for key, count in counts.items():
        out[f"{key}_fraction"] = count / e if e else math.nan
    out["median_lead_min"] = _median(records.lead_min)
    out["median_lead_vs_start_min"] = _median(records.lead_vs_start_min)
    out["false_alarm_runs"] = records.false_alarm_runs
    out["false_alarm_minutes"] = records.false_alarm_minutes
    out["false_alarm_units"] = records.false_alarm_units
    out["zone_days"] = records.zone_days
    out["false_alarm_runs_per_zone_day"] = (
        records.false_alarm_runs / records.zone_days if records.rows_scored else math.nan
    )
    out["lead_score"] = lead_score(records, "standard")
    for profile in LEAD_PROFILES:
        if profile != "standard":
            out[f"lead_score_{profile}"] = lead_score(records, profile)
    out["horizon"] = records.horizon
    out["early_window"] = records.early_window
    return out


def lead_metrics(
    event: np.ndarray,
    alarm: np.ndarray,
    segments: np.ndarray,
    minute_delay_s: np.ndarray,
    sla_delay_s: float,
    horizon: int,
    early_window: int | None = None,
) -> dict[str, float]:
    """The `lead` object (DESIGN §8) of an alarm series: episodes, warned_at_start,
    warned_before_onset, warned_5min_before_onset (counts) and their `_fraction`s,
    median_lead_min (median o − a over warned episodes, NaN if none), median_lead_vs_start_min
    (s − a), false_alarm_runs, zone_days, false_alarm_runs_per_zone_day, lead_score (standard
    profile), lead_score_low_fp, lead_score_low_fn, horizon, early_window.
    Arguments as `lead_episodes`."""
    return lead_summary(lead_episodes(event, alarm, segments, minute_delay_s, sla_delay_s, horizon, early_window))


def lead_by_cause(records: LeadEpisodes, episode_causes: np.ndarray) -> dict[str, dict[str, float]]:
    """Warned counts and fractions per episode cause: {cause: {episodes, warned_at_start,
    warned_before_onset, warned_5min_before_onset, *_fraction}}, causes sorted by name.

    Args:
        records: from `lead_episodes`.
        episode_causes: [E] cause of each episode (e.g. from `episode_causes`).
    """
    causes = np.asarray(episode_causes, dtype=object).reshape(-1)
    if causes.size != records.n_episodes:
        raise ValueError(
            f"episode_causes must have one value per episode. Received: {causes.size} for {records.n_episodes} episodes"
        )
    out: dict[str, dict[str, float]] = {}
    for cause in sorted({str(c) for c in causes}):
        sel = np.array([str(c) == cause for c in causes], dtype=bool)
        e = int(sel.sum())
        row: dict[str, float] = {"episodes": e}
        for key in ("warned_at_start", "warned_before_onset", "warned_5min_before_onset"):
            row[key] = int(getattr(records, key)[sel].sum())
        for key in ("warned_at_start", "warned_before_onset", "warned_5min_before_onset"):
            row[f"{key}_fraction"] = row[key] / e
        out[cause] = row
    return out
