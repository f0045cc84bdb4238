"""When a probability becomes an alarm: a threshold with hysteresis and a minimum hold.

A bare threshold (`prob >= threshold`) flickers around it: each flicker outside a delay episode
is one more false-alarm run for a dispatcher, and each drop inside a rising episode hides the
warning already given. An `AlarmPolicy` is the rule every scorer's alarm follows, offline
(`evaluate`, ensemble fitting) and online (serving, one zone-minute at a time), with one
definition:

- **raise** at minute t when `prob[t] >= threshold`;
- **keep** it while `prob >= threshold · clear_ratio` (hysteresis: `clear_ratio` 1 = none);
- **hold** it at least `hold_min` minutes after the last raise, whatever the probability.

    alarm[t] = hyst[t] or (t − last_raise[t] <= hold_min)
    hyst[t]  = prob[t] >= threshold·clear_ratio and (prob[t] >= threshold or hyst[t − 1])

The state restarts at each segment (a zone change or a gap in the minutes). `AlarmPolicy.alarms`
computes a whole series at once (vectorised, in `fabray.metrics.policy_alarms`); `AlarmState.step` one minute at a time; a unit test
keeps them equal. `fit_alarm_policy` chooses the policy on validation by the lead score
(`fabray.metrics.lead_score`), preferring the plain threshold on ties, within the site's
false-alarm budget when one is set (`ensemble.max_false_alarms_per_zone_day`). Pure numpy, no Ray.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from fabray.errors import BadInputError

CLEAR_RATIOS = (1.0, 0.8, 0.6)  # the hysteresis grid `fit_alarm_policy` searches
HOLD_MINUTES = (0, 3, 5)  # the hold grid


@dataclass(frozen=True)
class AlarmPolicy:
    """Raise at `threshold`, keep above `threshold · clear_ratio`, hold `hold_min` minutes."""

    threshold: float
    clear_ratio: float = 1.0
    hold_min: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.threshold) and 0.0 <= self.threshold <= 1.0):
            raise BadInputError(f"alarm threshold must be in [0, 1]. Received: {self.threshold}")
        if not (0.0 < self.clear_ratio <= 1.0):
            raise BadInputError(f"alarm clear_ratio must be in (0, 1]. Received: {self.clear_ratio}")
        if int(self.hold_min) != self.hold_min or self.hold_min < 0:
            raise BadInputError(f"alarm hold_min must be a whole number >= 0. Received: {self.hold_min}")

    @property
    def clear_at(self) -> float:
        return self.threshold * self.clear_ratio

    @property
    def plain(self) -> bool:
        """True when the policy is a bare threshold (no hysteresis, no hold)."""
        return self.clear_ratio == 1.0 and self.hold_min == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | float) -> AlarmPolicy:
        """A policy from its dict, or from a bare threshold (what older runs stored)."""
        if isinstance(data, (int, float)):
            return cls(float(data))
        try:
            return cls(float(data["threshold"]), float(data.get("clear_ratio", 1.0)), int(data.get("hold_min", 0)))
        except (KeyError, TypeError, ValueError) as err:
            raise BadInputError(f"invalid alarm policy: {err}. Received: {data!r}") from err

    def alarms(self, prob: np.ndarray, segments: np.ndarray | None = None) -> np.ndarray:
        """[N] bool alarm of a probability series [N] in (segment, time) order; `segments` [N]
        restarts the state where it changes (None: one segment). NaN probabilities never raise.
        Vectorised in `fabray.metrics.policy_alarms` (which the metrics' threshold search uses
        too, so metrics need not import this module)."""
        from fabray.metrics import policy_alarms

        return policy_alarms(prob, segments, self.threshold, self.clear_ratio, self.hold_min)


class AlarmState:
    """One zone's alarm, minute by minute (serving): `step(prob)` → the alarm of this minute.
    `reset()` where the minutes are not consecutive (a gap restarts the state, as offline)."""

    def __init__(self, policy: AlarmPolicy) -> None:
        self.policy = policy
        self.reset()

    def reset(self) -> None:
        self.hyst = False
        self.since_raise: int | None = None  # minutes since the last raise, None: none yet
        self.last = False  # the alarm of the last step

    def step(self, prob: float) -> bool:
        p = -math.inf if prob is None or not math.isfinite(float(prob)) else float(prob)
        raised = p >= self.policy.threshold
        self.since_raise = 0 if raised else (None if self.since_raise is None else self.since_raise + 1)
        self.hyst = p >= self.policy.clear_at and (raised or self.hyst)
        held = self.since_raise is not None and self.since_raise <= self.policy.hold_min
        self.last = bool(self.hyst or held)
        return self.last

    def to_dict(self) -> dict[str, Any]:
        return {"hyst": self.hyst, "since_raise": self.since_raise, "last": self.last}

    def load(self, data: Mapping[str, Any]) -> AlarmState:
        self.hyst = bool(data.get("hyst", False))
        since = data.get("since_raise")
        self.since_raise = None if since is None else int(since)
        self.last = bool(data.get("last", False))
        return self


def fit_alarm_policy(
    event: np.ndarray,
    prob: np.ndarray,
    segments: np.ndarray,
    minute_delay_s: np.ndarray,
    sla_delay_s: float,
    horizon: int,
    *,
    clear_ratios: Sequence[float] = CLEAR_RATIOS,
    hold_minutes: Sequence[int] = HOLD_MINUTES,
    profile: str = "standard",
    max_false_alarms_per_zone_day: float | None = None,
) -> tuple[AlarmPolicy, float]:
    """The lead-score-best policy on (validation) series and its score: for each (clear_ratio,
    hold_min) of the grid, the best threshold (`fabray.metrics.best_lead_threshold`); the plain
    threshold (1.0, 0) is tried first and kept on ties. With no episode: (AlarmPolicy(0.5), NaN).

    `max_false_alarms_per_zone_day`: the site's false-alarm budget (None: none). A policy within
    it always beats one over it; when none is within, the one with the fewest false-alarm runs
    per zone-day is chosen (each threshold search then returns its highest threshold)."""
    from fabray.metrics import best_lead_threshold, lead_metrics

    best: tuple[tuple[bool, float], AlarmPolicy, float] | None = None
    budget = math.inf if max_false_alarms_per_zone_day is None else float(max_false_alarms_per_zone_day)
    grid = [(1.0, 0)] + [(float(r), int(h)) for r in clear_ratios for h in hold_minutes if (r, h) != (1.0, 0)]
    for ratio, hold in grid:
        thr, score = best_lead_threshold(event, prob, segments, minute_delay_s, sla_delay_s, horizon,
                                         profile=profile, clear_ratio=ratio, hold_min=hold,
                                         max_false_alarms_per_zone_day=max_false_alarms_per_zone_day)
        policy = AlarmPolicy(float(min(max(thr, 0.0), 1.0)), ratio, hold)
        if not math.isfinite(score):
            return AlarmPolicy(policy.threshold), math.nan
        if math.isinf(budget):
            key = (True, float(score))
        else:
            fa = lead_metrics(event, policy.alarms(prob, segments), segments, minute_delay_s, sla_delay_s,
                              horizon)["false_alarm_runs_per_zone_day"]
            key = (True, float(score)) if fa <= budget else (False, -float(fa))
        if best is None or key > best[0]:
            best = (key, policy, float(score))
    assert best is not None
    return best[1], best[2]
