"""The outputs of `fabray evaluate`: the fixed-width leaderboard it prints, `--json` and
`--report` (report.md, its plots and the model card)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from fabray.evaluate.result import HEADLINE, EvaluationResult, _finite

logger = logging.getLogger(__name__)


def leaderboard_text(result: EvaluationResult) -> str:
    """A fixed-width leaderboard, best headline (`lead_score`) first, F1 and PR-AUC beside it."""
    head = ["rank", "name", "kind", HEADLINE, "at_start", "before_onset", "5min_before", "median_lead_min",
            "fa_runs/zone_day", "f1", "f1_ci95", "pr_auc", "precision", "recall", "threshold"]
    rows = [head]
    for i, c in enumerate(result.leaderboard(), 1):
        m, lead = c.metrics, c.metrics.get("lead") or {}
        ci = m.get("f1_ci95") or [None, None]
        episodes = lead.get("episodes", 0)
        rows.append([
            str(i), c.name, c.kind, _fmt(m.get(HEADLINE), 1),
            *(f"{lead.get(k, 0)}/{episodes}" for k in ("warned_at_start", "warned_before_onset",
                                                          "warned_5min_before_onset")),
            _fmt(lead.get("median_lead_min"), 1), _fmt(lead.get("false_alarm_runs_per_zone_day"), 2),
            _fmt(m.get("f1")), f"{_fmt(ci[0], 3)}–{_fmt(ci[1], 3)}",
            *(_fmt(m.get(k)) for k in ("pr_auc", "precision", "recall")), _fmt(m.get("threshold"), 3),
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(
        f"headline: {HEADLINE} (NAB-style, standard profile: 100 = every episode warned at or before its "
        "start and no false alarm, 0 = never alarming); lead = minutes before the delay is first observed"
    )
    lines += [f"skipped {n}: {why}" for n, why in result.skipped.items()]
    r = result.roi
    lines.append(
        f"ROI (dynamic ensemble): {_fmt(r['delays_caught_per_day'], 1)} of {r['delays_per_day']:.0f} delays/day "
        f"warned at or before their start, {_fmt(r['false_alarms_per_day'], 1)} false alarms/day, net "
        f"{_krw(r['net_value_per_month_krw'])}/month ({_fmt(r['roi_multiple'], 1)}× the GPU cost; "
        f"seed claimed {r['seed_claim_roi_multiple']:.0f}×); stricter (≥ 5 min before the delay is "
        f"observed): net {_krw(r['net_value_per_month_5min_krw'])}/month"
    )
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


def _fmt(value: Any, digits: int = 4) -> str:
    v = _finite(value, math.nan)
    return "—" if not math.isfinite(v) else f"{v:.{digits}f}"


def _krw(value: Any) -> str:
    v = _finite(value, math.nan)
    if not math.isfinite(v):
        return "—"
    return f"{v / 1e6:,.1f}M KRW"


def write_outputs(result: EvaluationResult, *, json_path: str | Path | None = None,
                  report_dir: str | Path | None = None) -> None:
    """`--json` (written atomically) and `--report` (report.md + PNGs, and the model card)."""
    from fabray.files import atomic_write_json

    if json_path is not None:
        path = Path(json_path)
        atomic_write_json(path, result.to_json())
        logger.info("wrote %s", path)
    if report_dir is not None:
        from fabray.evaluate.report import write_report

        out = write_report(result, Path(report_dir))
        logger.info("wrote %s", out)
        if result.run_dir is not None:
            from fabray.evaluate.model_card import write_model_card

            write_model_card(result, result.run_dir, report_dir)  # model_card.md, appended to report.md
