"""The Markdown tables of `fabray evaluate --report` (report.md) and the text helpers they share
with the plots (number formatting, candidate labels, the best model).

Tables in report.md: the leaderboard (ranked by the headline `lead_score`), a lead-time table
per candidate, and, when the test data has a `cause` column, the warned fractions per episode
cause for the ensemble, the best model and the tree baseline.
"""

from __future__ import annotations

import math
from typing import Any


def _label(cand: Any) -> str:
    return {"ensemble": "ensemble (dynamic, served)", "static_ensemble": "static ensemble"}.get(
        cand.kind, f"{cand.name} ({cand.kind})")


def _f(value: Any, digits: int = 3) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "—"
    return f"{v:.{digits}f}" if math.isfinite(v) else "—"


def _best_model(result: Any) -> Any:
    """The model ranked highest on the leaderboard (headline first)."""
    return next(c for c in result.leaderboard() if c.kind == "model")


def _table(rows: list[list[str]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def _krw(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "—"
    return f"{v:,.0f}" if math.isfinite(v) else "—"


LEAD_DEFINITIONS = (
    "An *episode* is a maximal run of one zone's delay-event minutes (the next horizon minutes late on "
    "average); its *start* s is its first minute, its *observed onset* o the first minute from s "
    "(up to the episode's end + horizon) whose own transport delay exceeds the SLA, unsmoothed "
    "(s + horizon if none). An alarm warns an episode if it is up somewhere in [s − horizon, o − 1]; "
    "the warning time a is the first such minute. *At start*: a ≤ s; *before onset*: any warning; "
    "*≥ 5 min*: o − a ≥ 5. *Lead* = o − a, minutes before the delay is observed (median over warned "
    "episodes). *False-alarm runs*: runs of alarm minutes left after removing every minute within "
    "[s − horizon, e + horizon] of an episode, per zone-day of test windows. *Lead score* (NAB-style, "
    "Lavin & Ahmad 2015, adapted to forecasting): +1 per episode warned at or before s, linearly "
    "less to 0 at o when warned later, −1 per missed episode, −0.25 per false-alarm unit (a "
    "false-alarm run of m minutes is ⌈m / horizon⌉ units: a standing alarm counts again every "
    "horizon) (standard profile; low-FP: −0.5 per unit; low-FN: −2 per miss), normalised so never "
    "alarming scores 0 and a perfect forecaster 100."
)
CAUSE_NOTE = (
    "Episode cause = the most common non-empty `cause` value over the episode's minutes from s to "
    "its observed onset (`unknown` if none). The `cause` column is diagnostic only, never a model "
    "input. Each cell: warned at start / before onset / ≥ 5 min before onset, as fractions of the "
    "cause's episodes."
)


def lead_table(result: Any) -> list[list[str]]:
    """One row per candidate (leaderboard order): the `lead` object."""
    rows = [["name", "episodes", "warned at start", "before onset", "≥ 5 min before onset",
             "median lead (min)", "median lead vs start (min)", "false-alarm runs", "per zone-day",
             "false-alarm units", "lead score", "low FP", "low FN"]]

    def count(lead: dict, key: str) -> str:
        return f"{lead.get(key, 0)} ({_f(lead.get(key + '_fraction'), 2)})"

    for c in result.leaderboard():
        lead = c.metrics.get("lead") or {}
        rows.append([c.name, str(lead.get("episodes", 0)), count(lead, "warned_at_start"),
                     count(lead, "warned_before_onset"), count(lead, "warned_5min_before_onset"),
                     _f(lead.get("median_lead_min"), 1), _f(lead.get("median_lead_vs_start_min"), 1),
                     str(lead.get("false_alarm_runs", 0)), _f(lead.get("false_alarm_runs_per_zone_day"), 2),
                     str(lead.get("false_alarm_units", "—")), _f(lead.get("lead_score"), 1),
                     _f(lead.get("lead_score_low_fp"), 1), _f(lead.get("lead_score_low_fn"), 1)])
    return rows


def cause_candidates(result: Any) -> list[Any]:
    """The candidates the per-cause table shows: the served ensemble, the best model, gbt."""
    out = [result.candidates["ensemble"], _best_model(result)]
    if "gbt" in result.candidates:
        out.append(result.candidates["gbt"])
    return out


def cause_table(result: Any) -> list[list[str]]:
    """Episodes and warned fractions per episode cause ([] when the data has no `cause`)."""
    if getattr(result, "episode_causes", None) is None:
        return []
    cands = [c for c in cause_candidates(result) if c.metrics.get("lead_by_cause")]
    if not cands:
        return []
    causes = sorted({k for c in cands for k in c.metrics["lead_by_cause"]})
    rows = [["cause", "episodes", *[_label(c) for c in cands]]]
    for cause in causes:
        cells = []
        for c in cands:
            t = c.metrics["lead_by_cause"].get(cause) or {}
            cells.append(" / ".join(_f(t.get(k), 2) for k in (
                "warned_at_start_fraction", "warned_before_onset_fraction", "warned_5min_before_onset_fraction")))
        episodes = (cands[0].metrics["lead_by_cause"].get(cause) or {}).get("episodes", 0)
        rows.append([cause, str(episodes), *cells])
    return rows


def diversity_tables(result: Any) -> list[str]:
    """Markdown lines: the members' error correlation and leave-one-out on validation (from
    `ensemble.json`'s "diversity"); empty before `fabray ensemble` stored them."""
    div = (result.ensemble_info or {}).get("diversity")
    if not div:
        return []
    names = div["model_names"]
    corr = [["", *names]] + [[n, *(_f(v, 2) for v in row)] for n, row in zip(names, div["error_correlation"])]
    loo = div["leave_one_out"]
    base = loo["base"]
    rows = [["without", "lead score", "F1", "lead score lost", "F1 lost"]]
    rows += [[n, _f(v["lead_score"], 1), _f(v["f1"]), _f(v["delta_lead_score"], 1), _f(v["delta_f1"])]
             for n, v in loo["without"].items()]
    return [
        "## What each member adds (validation)",
        "",
        "Correlation of the members' errors (score − outcome): members whose errors move together "
        "cannot cover for each other.",
        "",
        _table(corr),
        "",
        f"Leave one out of the {base['form']} ensemble of {', '.join(base['members'])} (lead score "
        f"{_f(base['lead_score'], 1)}, F1 {_f(base['f1'])}; same hyper-parameters, threshold re-solved):",
        "",
        _table(rows),
        "",
    ]
