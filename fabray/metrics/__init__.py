"""Every metric fabray reports (DESIGN §1), in one place: training, ensemble fitting, evaluation
and serving all call these functions, so a number means the same thing everywhere.

Conventions shared by every function here:

- **Undefined targets are skipped.** A target is NaN where it is undefined (fewer than `horizon`
  minutes follow the row, or none of them completed a transport). Such rows are dropped before
  anything is counted; `n` says how many rows were scored. A NaN or inf *prediction* for a row
  whose target is defined is a bug upstream and raises `ValueError`.
- **Events** are 0/1 targets (`delay_event`); scores are probabilities in [0, 1]; a row is an
  alarm where `prob >= threshold`.
- **0/0 ratios** (precision with no alarm, recall with no event, …) are 0.0, as scikit-learn's
  `zero_division=0`. **AUCs** need both classes: with only one class present (or no row at all)
  `pr_auc` and `roc_auc` are NaN. With no scored row at all every ratio is NaN.
- `pr_auc` is average precision (the step-wise area under the precision-recall curve,
  scikit-learn's `average_precision_score`), not the trapezoid, which overstates it.

Lead time: `lead_episodes`, `lead_metrics` and the headline `lead_score` are defined in the comment
block before `LEAD_PROFILES` (`fabray.metrics.lead`); the older strict `lead_times` in its docstring
(`fabray.metrics.strict_lead`).

The package re-exports every public name of its modules: `_inputs` (shared input checks),
`events` (event and delay metrics, the F1-best threshold), `strict_lead`, `alarm_policy`
(`policy_alarms`), `episodes` (episodes, onsets, causes), `lead` (lead records, summary, score)
and `lead_threshold` (the lead-score threshold search).
"""

from __future__ import annotations

from fabray.metrics.alarm_policy import policy_alarms
from fabray.metrics.episodes import episode_causes, episodes, observed_onsets
from fabray.metrics.events import (
    EVENT_METRICS,
    best_threshold,
    event_metrics,
    probability_losses,
)
from fabray.metrics.lead import (
    HEADLINE_METRIC,
    LEAD_PROFILES,
    LeadEpisodes,
    lead_by_cause,
    lead_episodes,
    lead_metrics,
    lead_score,
    lead_summary,
)
from fabray.metrics.lead_threshold import best_lead_threshold, lead_tradeoff
from fabray.metrics.strict_lead import episode_starts, lead_time_summary, lead_times

__all__ = [
    "EVENT_METRICS",
    "event_metrics",
    "probability_losses",
    "best_threshold",
    "episode_starts",
    "lead_times",
    "lead_time_summary",
]
__all__ += [
    "LEAD_PROFILES",
    "HEADLINE_METRIC",
    "LeadEpisodes",
    "episodes",
    "observed_onsets",
    "episode_causes",
    "lead_episodes",
    "lead_score",
    "lead_summary",
    "lead_metrics",
    "best_lead_threshold",
    "lead_tradeoff",
    "policy_alarms",
    "lead_by_cause",
]
