"""`fabray evaluate --report DIR`: report.md and its PNG plots (matplotlib, Agg backend).

The plots are drawn by `fabray.evaluate.report_plots` (each saying in its title what it shows),
the tables by `fabray.evaluate.report_tables`; `write_report` puts them together.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fabray.evaluate.report_plots import (
    plot_alarm_tradeoff,
    plot_lead_times,
    plot_leaderboard,
    plot_pr_curves,
    plot_reliability,
    plot_timeline,
    plot_weights,
)
from fabray.evaluate.report_tables import (
    CAUSE_NOTE,
    LEAD_DEFINITIONS,
    _f,
    _krw,
    _table,
    cause_table,
    diversity_tables,
    lead_table,
)

logger = logging.getLogger(__name__)


def write_report(result: Any, out_dir: Path) -> Path:
    """Write report.md and its PNGs into `out_dir`; returns report.md's path."""
    from fabray.files import atomic_write_text, utc_now

    out_dir.mkdir(parents=True, exist_ok=True)
    plots = {
        "leaderboard": plot_leaderboard(result, out_dir / "leaderboard.png"),
        "pr_curves": plot_pr_curves(result, out_dir / "pr_curves.png"),
        "timeline": plot_timeline(result, out_dir / "timeline.png"),
        "weights": plot_weights(result, out_dir / "weights.png"),
        "lead_times": plot_lead_times(result, out_dir / "lead_times.png"),
        "alarm_tradeoff": plot_alarm_tradeoff(result, out_dir / "alarm_tradeoff.png"),
        "reliability": plot_reliability(result, out_dir / "reliability.png"),
    }
    board = [["#", "name", "kind", "**lead score**", "warned at start", "median lead (min)",
              "false-alarm runs / zone-day", "F1", "F1 95% CI", "PR-AUC", "precision", "recall", "accuracy",
              "balanced acc.", "ROC-AUC", "threshold"]]
    for i, c in enumerate(result.leaderboard(), 1):
        m, lead = c.metrics, c.metrics.get("lead") or {}
        ci = m.get("f1_ci95") or [None, None]
        board.append([str(i), f"**{c.name}**" if c.kind == "ensemble" else c.name, c.kind.replace("_", " "),
                      f"**{_f(m.get('lead_score'), 1)}**",
                      f"{lead.get('warned_at_start', 0)}/{lead.get('episodes', 0)}",
                      _f(lead.get("median_lead_min"), 1), _f(lead.get("false_alarm_runs_per_zone_day"), 2),
                      _f(m.get("f1")), f"{_f(ci[0])}–{_f(ci[1])}",
                      *(_f(m.get(k)) for k in ("pr_auc", "precision", "recall", "accuracy",
                                                "balanced_accuracy", "roc_auc", "threshold"))])
    lead_rows = lead_table(result)
    cause_rows = cause_table(result)
    r = result.roi
    p = r["parameters"]
    roi_rows = [
        ["quantity", "value", "from"],
        ["recall (test, dynamic ensemble)", _f(r["recall"]), "measured"],
        ["precision (test, dynamic ensemble)", _f(r["precision"]), "measured"],
        ["delays per day", f"{r['delays_per_day']:g}", "config `roi.delays_per_day` (seed: 37)"],
        ["delays warned at or before their start, per day", _f(r["delays_caught_per_day"], 1),
         "delays/day × episodes warned at or before their start / episodes"],
        ["false alarms per day", _f(r["false_alarms_per_day"], 1),
         "delays/day × false-alarm units / episodes"],
        ["value per month (KRW)", _krw(r["value_per_month_krw"]),
         f"warned × {p['avoidable_fraction']:g} avoided × {p['cost_per_delay_krw']:,.0f} − false alarms × "
         f"{p['false_alarm_cost_krw']:,.0f}, × {p['days_per_month']:g} days"],
        ["GPU cost per month (KRW)", _krw(r["gpu_cost_per_month_krw"]),
         f"{p['gpus']:g} × {p['gpu_cost_per_month_krw']:,.0f}"],
        ["**net value per month (KRW)**", f"**{_krw(r['net_value_per_month_krw'])}**", "value − GPU cost"],
        ["value ÷ GPU cost", _f(r["roi_multiple"], 1) + "×",
         f"seed claimed {r['seed_claim_roi_multiple']:.0f}× (every delay avoided)"],
        ["stricter: delays warned ≥ 5 min before they are observed, per day",
         _f(r["delays_warned_5min_per_day"], 1), "delays/day × episodes warned ≥ 5 min before the onset / episodes"],
        ["stricter: net value per month (KRW)", _krw(r["net_value_per_month_5min_krw"]),
         "as above, counting only those"],
        ["lenient (per minute): delays caught per day", _f(r["delays_caught_minute_recall_per_day"], 1),
         "minute recall × delays/day (counts alarms after the delay started)"],
        ["lenient (per minute): net value per month (KRW)", _krw(r["net_value_per_month_minute_krw"]),
         "minute recall, false alarms = delays/day × FP / (TP + FN)"],
    ]
    per_cand = [["name", "warned at start/day", "false alarms/day", "net value/month (KRW)",
                 "warned ≥ 5 min/day", "net value/month, ≥ 5 min (KRW)", "net value/month, per minute (KRW)"]]
    for c in result.leaderboard():
        b = result.roi_by_candidate[c.name]
        per_cand.append([c.name, _f(b["delays_caught_per_day"], 1), _f(b["false_alarms_per_day"], 1),
                         _krw(b["net_value_per_month_krw"]), _f(b["delays_warned_5min_per_day"], 1),
                         _krw(b["net_value_per_month_5min_krw"]), _krw(b["net_value_per_month_minute_krw"])])
    info = result.ensemble_info
    params = info.get("params", {})
    d = result.data
    text = [
        f"# fabray evaluation: run `{result.run}`",
        "",
        f"Written {utc_now()}. Test data: `{d['path']}` ({d['windows_used']}: {d['windows']:,} windows, "
        f"{d['events']:,} delay-event windows, zones {', '.join(d['zones'])}, "
        f"{d['first_timestamp']} … {d['last_timestamp']}). Task: delay event = mean transport delay of the "
        f"next {result.task['horizon']} minutes above {result.task['sla_delay_s']:g} s.",
        "",
        *[f"- {n}" for n in result.notes],
        *[f"- baseline `{n}` skipped: {why}" for n, why in result.skipped.items()],
        "",
        "## Leaderboard",
        "",
        "Ranked by the headline **lead score** (below), then F1, then PR-AUC. Every threshold was "
        "chosen on the run's validation split by that lead score (`fabray.metrics.best_lead_threshold`), "
        "never on test. `ensemble` is the dynamic weighted ensemble fabray serves. The F1 interval "
        "is a block bootstrap (60-minute blocks of one zone, 1,000 resamples): entries whose "
        "intervals overlap widely are not told apart by this test set.",
        "",
        _table(board),
        "",
        "![leaderboard](leaderboard.png)",
        "",
        "![precision-recall curves](pr_curves.png)",
        "",
        "## One zone over time",
        "",
        "![timeline](timeline.png)",
        "",
        "![ensemble weights](weights.png)",
        "",
        "## Calibration",
        "",
        "The served probability is calibrated on the validation split (Platt or isotonic, or none, "
        "whichever has the lowest cross-fitted Brier score there); the diagram shows how it holds on test.",
        "",
        "![reliability diagram](reliability.png)",
        "",
        *diversity_tables(result),
        "## Lead time",
        "",
        LEAD_DEFINITIONS,
        "",
        _table(lead_rows),
        "",
        "![lead times](lead_times.png)",
        "",
        "What each false-alarm rate buys: the share of episodes warned at or before their start "
        "over every threshold on test (the policy's hysteresis and hold kept); the dots are the "
        "thresholds fitted on validation, the ones served. A site sets its false-alarm budget with "
        "`ensemble.max_false_alarms_per_zone_day` (then `fabray ensemble` fits every policy within it).",
        "",
        "![alarm trade-off](alarm_tradeoff.png)",
        "",
        *(["### By cause", "", CAUSE_NOTE, "", _table(cause_rows), ""] if cause_rows else
          ["The test data has no `cause` column: no per-cause table.", ""]),
        "",
        "## ROI (seed §6), from the measured metrics",
        "",
        _table(roi_rows),
        "",
        "Only delays warned at or before their start count as caught; false alarms are false-alarm "
        "units (a run counts once per started horizon it stays up). The measured ratios (warned "
        "episodes and false alarms per episode) are carried over to the seed's count of delays. The stricter rows count only episodes warned at least 5 "
        "minutes before the delay is observed; the lenient rows are the older per-minute reading, "
        "which counts an alarm raised after the delay started. Catching a delay is not avoiding it: "
        "`roi.avoidable_fraction` states how many caught delays dispatchers prevent, and "
        "`roi.false_alarm_cost_krw` (default 0) what a needless intervention costs.",
        "",
        _table(per_cand),
        "",
        "## The fitted ensemble",
        "",
        f"Fitted: {info.get('fitted')}; winner on validation: {info.get('winner', '—')}; search: "
        f"{(info.get('search') or {}).get('algorithm', '—')}, {(info.get('search') or {}).get('trials', '—')} trials. "
        f"Base weights {dict(zip(result.model_names, [round(w, 3) for w in params.get('base_weights', [])]))}, "
        f"half-life {params.get('half_life')}, floor {_f(params.get('floor'))}, step cap {_f(params.get('step_cap'))}, "
        f"temperature {_f(params.get('temperature'))}, loss {params.get('loss')}, threshold {_f(params.get('threshold'))}; "
        f"feedback after {info.get('feedback_lag')} minutes. On test the weights start from the base "
        "weights in every zone and move with each outcome as it arrives.",
        "",
    ]
    path = out_dir / "report.md"
    atomic_write_text(path, "\n".join(text))
    logger.info("report: %s (%s)", path, ", ".join(p.name for p in plots.values()))
    return path
