"""What `fabray evaluate` produces: the scored `Candidate`s (models, ensembles, baselines) and the
`EvaluationResult` that ranks them by the headline (`HEADLINE`, then F1, then PR-AUC) and writes
them as JSON (DESIGN §8; NaN as null)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fabray.files import strict_json


KINDS = ("model", "static_ensemble", "ensemble", "baseline")
#: The metric the leaderboard ranks by (DESIGN §1: lead time is the headline).
HEADLINE = "lead_score"


@dataclass
class Candidate:
    """One predictor's test scores and metrics."""

    name: str
    kind: str  # one of KINDS
    prob: np.ndarray  # [W] score per test window
    policy: Any  # fabray.alarm.AlarmPolicy (a bare threshold is taken as the plain policy)
    metrics: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    lead_records: Any = None  # fabray.metrics.LeadEpisodes of its alarms on the test windows
    alarm: Any = None  # [W] bool: the policy over the test series (set by `score_candidate`)

    def __post_init__(self) -> None:
        from fabray.alarm import AlarmPolicy

        if not isinstance(self.policy, AlarmPolicy):
            self.policy = AlarmPolicy.from_dict(float(self.policy))

    @property
    def threshold(self) -> float:
        return float(self.policy.threshold)


@dataclass
class EvaluationResult:
    """Everything `fabray evaluate` measured, with the arrays the report draws."""

    run: str
    data: dict[str, Any]
    task: dict[str, Any]
    model_names: tuple[str, ...]
    candidates: dict[str, Candidate]  # insertion order: models, ensembles, baselines
    target: np.ndarray  # [W] delay_event
    future_delay_s: np.ndarray  # [W] mean delay of the next horizon minutes (the target's value)
    minute_delay_s: np.ndarray  # [W] this minute's transport time − nominal (carried over empty minutes)
    zone_codes: np.ndarray  # [W]
    zones: tuple[str, ...]
    segments: np.ndarray  # [W] segment id (zone change or gap)
    timestamps: np.ndarray  # [W] datetime64
    weights: np.ndarray  # [W, M] dynamic weights used per prediction
    roi: dict[str, Any]
    roi_by_candidate: dict[str, dict[str, Any]]
    ensemble_info: dict[str, Any]
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    cause: np.ndarray | None = None  # [W] the data's diagnostic cause ("" none); None without the column
    episode_causes: np.ndarray | None = None  # [E] cause of each delay episode (None without the column)
    run_dir: str | None = None  # the evaluated run's directory (its manifest feeds the model card)

    def by_kind(self, kind: str) -> dict[str, Candidate]:
        return {n: c for n, c in self.candidates.items() if c.kind == kind}

    def leaderboard(self) -> list[Candidate]:
        """Every candidate, best headline (`lead_score`) first; F1, then PR-AUC break ties."""
        return sorted(
            self.candidates.values(),
            key=lambda c: (_finite(c.metrics.get(HEADLINE)), _finite(c.metrics.get("f1")),
                           _finite(c.metrics.get("pr_auc"))),
            reverse=True,
        )

    def to_json(self) -> dict[str, Any]:
        """DESIGN §8: {"models", "ensemble", "baselines"} plus "static_ensemble", "roi", …"""
        ens = self.by_kind("ensemble")
        static = self.by_kind("static_ensemble")
        baselines: dict[str, Any] = {n: c.metrics for n, c in self.by_kind("baseline").items()}
        baselines.update({n: {"skipped": reason} for n, reason in self.skipped.items()})
        out = {
            "run": self.run,
            "data": self.data,
            "task": self.task,
            "models": {n: c.metrics for n, c in self.by_kind("model").items()},
            "ensemble": next(iter(ens.values())).metrics if ens else None,
            "static_ensemble": next(iter(static.values())).metrics if static else None,
            "baselines": baselines,
            "roi": self.roi,
            "roi_by_candidate": self.roi_by_candidate,
            "ensemble_info": self.ensemble_info,
            "headline": HEADLINE,
            "leaderboard": [_board_entry(c) for c in self.leaderboard()],
            "notes": self.notes,
        }
        return strict_json(out)


def _board_entry(c: Candidate) -> dict[str, Any]:
    lead = c.metrics.get("lead") or {}
    return {
        "name": c.name, "kind": c.kind, HEADLINE: c.metrics.get(HEADLINE),
        "episodes": lead.get("episodes"), "warned_at_start": lead.get("warned_at_start"),
        "warned_at_start_fraction": lead.get("warned_at_start_fraction"),
        "warned_before_onset": lead.get("warned_before_onset"),
        "warned_before_onset_fraction": lead.get("warned_before_onset_fraction"),
        "warned_5min_before_onset": lead.get("warned_5min_before_onset"),
        "median_lead_min": lead.get("median_lead_min"),
        "false_alarm_runs_per_zone_day": lead.get("false_alarm_runs_per_zone_day"),
        "f1": c.metrics.get("f1"), "pr_auc": c.metrics.get("pr_auc"),
    }


def _finite(value: Any, default: float = -math.inf) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return default
    return value if math.isfinite(value) else default
