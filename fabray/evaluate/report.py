"""`fabray evaluate --report DIR`: report.md and its PNG plots (matplotlib, Agg backend).

Plots, each saying in its title what it shows:
- `leaderboard.png`: the headline lead score, F1 and PR-AUC of every model, both ensembles and
  the baselines;
- `pr_curves.png`: precision–recall curves on the test windows, each with its operating point;
- `timeline.png`: one zone (the one with the most delay episodes in the test span), the 24 hours
  with the most delay: transport delay and the SLA, delay events, ensemble probability, alarms;
- `weights.png`: the dynamic ensemble's weights over that zone's whole test span;
- `lead_times.png`: minutes of warning before each delay episode's observed onset (the first
  minute whose own delay exceeds the SLA), ensemble vs best model; missed episodes counted;
- `reliability.png`: the served (calibrated) probability's reliability on test, beside the best model's;
- `alarm_tradeoff.png`: episodes warned at or before their start against false-alarm runs per
  zone-day over every threshold (ensemble, best model, trees), each operating point marked.

Tables in report.md: the leaderboard (ranked by the headline `lead_score`), a lead-time table
per candidate, and, when the test data has a `cause` column, the warned fractions per episode
cause for the ensemble, the best model and the tree baseline.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

KIND_COLORS = {"model": "#4C72B0", "static_ensemble": "#8172B3", "ensemble": "#C44E52", "baseline": "#8C8C8C"}
TIMELINE_MINUTES = 24 * 60


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> Path:
    """Lay out, write (PNG, 110 dpi) and close a figure; returns `path`."""
    plt = pyplot()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _label(cand: Any) -> str:
    return {"ensemble": "ensemble (dynamic, served)", "static_ensemble": "static ensemble"}.get(
        cand.kind, f"{cand.name} ({cand.kind})")


def _colors(result: Any) -> dict[str, str]:
    """One color per candidate: red for the served ensemble, purple for the static one, a
    palette without either for the rest (in leaderboard order)."""
    palette = ["#1f77b4", "#2ca02c", "#ff7f0e", "#17becf", "#bcbd22", "#8c564b", "#e377c2",
               "#7f7f7f", "#9edae5", "#393b79", "#637939"]
    out, i = {}, 0
    for cand in result.leaderboard():
        if cand.kind in ("ensemble", "static_ensemble"):
            out[cand.name] = KIND_COLORS[cand.kind]
        else:
            out[cand.name] = palette[i % len(palette)]
            i += 1
    return out


def _f(value: Any, digits: int = 3) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "—"
    return f"{v:.{digits}f}" if math.isfinite(v) else "—"


# ---------------------------------------------------------------------------- plots


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def plot_leaderboard(result: Any, path: Path) -> Path:
    plt = pyplot()
    board = result.leaderboard()[::-1]  # best at the top
    f1 = [np.nan_to_num(_num(c.metrics.get("f1"))) for c in board]
    pr = [np.nan_to_num(_num(c.metrics.get("pr_auc"))) for c in board]
    score = [_num(c.metrics.get("lead_score")) for c in board]
    y = np.arange(len(board))
    fig, (a0, ax) = plt.subplots(1, 2, figsize=(12, 0.45 * len(board) + 1.6), sharey=True,
                                 gridspec_kw={"width_ratios": [1, 1.4]})
    a0.barh(y, np.nan_to_num(score), height=0.6, color=[KIND_COLORS[c.kind] for c in board])
    for yi, v in zip(y, score):
        a0.text(max(np.nan_to_num(v), 0) + 1, yi, _f(v, 1), va="center", fontsize=8)
    a0.axvline(0, color="black", lw=0.8)
    a0.set_xlim(min(0.0, np.nanmin([*score, 0.0]) * 1.1), 110)
    a0.set_yticks(y, [_label(c) for c in board], fontsize=9)
    a0.set_xlabel("lead score (0: never alarming, 100: every episode warned at its start, no false alarm)")
    a0.set_title("Headline: lead score (ranks the board)", fontsize=10)
    a0.grid(axis="x", alpha=0.3)
    ax.barh(y + 0.2, f1, height=0.4, color=[KIND_COLORS[c.kind] for c in board], label="F1")
    ax.barh(y - 0.2, pr, height=0.4, color=[KIND_COLORS[c.kind] for c in board], alpha=0.45, hatch="//",
            label="PR-AUC")
    for yi, a, b in zip(y, f1, pr):
        ax.text(a + 0.005, yi + 0.2, f"{a:.3f}", va="center", fontsize=8)
        ax.text(b + 0.005, yi - 0.2, f"{b:.3f}", va="center", fontsize=8, color="#555555")
    ax.set_xlim(0, min(1.0, max([*f1, *pr, 0.1]) * 1.18))
    ax.set_xlabel("test score")
    ax.set_title("Minute-level F1 (solid) and PR-AUC (hatched)", fontsize=10)
    fig.suptitle(f"Leaderboard on {result.data['windows']:,} test windows")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in KIND_COLORS.values()]
    ax.legend(handles, [k.replace("_", " ") for k in KIND_COLORS], loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, path)


def plot_pr_curves(result: Any, path: Path) -> Path:
    from sklearn.metrics import precision_recall_curve

    plt = pyplot()
    keep = ~np.isnan(result.target)
    y = result.target[keep] == 1
    fig, ax = plt.subplots(figsize=(11, 6))
    if y.any() and (~y).any():
        colors = _colors(result)
        styles = {"ensemble": ("-", 2.2, 5), "static_ensemble": ("-", 4.0, 4), "model": ("-", 1.2, 3),
                  "baseline": ("--", 1.4, 3)}
        for cand in result.leaderboard():
            prob = cand.prob[keep]
            style, width, z = styles[cand.kind]
            label = f"{_label(cand)}: AP {_f(cand.metrics.get('pr_auc'))}"
            point = dict(marker="o", ms=8, mec="black", mew=0.8, color=colors[cand.name], zorder=10)
            if len(np.unique(prob)) <= 2:  # a binary scorer has one operating point, no curve
                ax.plot([cand.metrics["recall"]], [cand.metrics["precision"]], ls="", **{**point, "marker": "s"},
                        label=label + " (binary: one point)")
                continue
            precision, recall, _ = precision_recall_curve(y, prob)
            ax.step(recall, precision, where="post", color=colors[cand.name], lw=width, ls=style,
                    label=label, zorder=z, alpha=0.6 if cand.kind == "static_ensemble" else 1.0)
            ax.plot([cand.metrics["recall"]], [cand.metrics["precision"]], **point)
        ax.axhline(y.mean(), color="black", lw=0.8, ls=":", label=f"event rate {y.mean():.3f}")
    else:
        ax.text(0.5, 0.5, "the test windows hold one class only: no PR curve", ha="center")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision–recall on test windows (dots: each one's operating threshold)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def timeline_zone(result: Any) -> int:
    """Zone code with the most delay episodes in the test span (ties: most event minutes)."""
    from fabray.metrics import episode_starts

    starts = episode_starts(result.target, result.segments)
    codes = result.zone_codes
    best, best_key = int(codes[0]), (-1, -1)
    for code in np.unique(codes):
        key = (int(np.sum(codes[starts] == code)), int(np.nansum(result.target[codes == code])))
        if key > best_key:
            best, best_key = int(code), key
    return best


def _zone_rows(result: Any, code: int) -> np.ndarray:
    return np.flatnonzero(result.zone_codes == code)


def _busiest_span(rows: np.ndarray, target: np.ndarray, length: int) -> np.ndarray:
    """The `length` consecutive rows (of `rows`) holding the most event minutes."""
    if len(rows) <= length:
        return rows
    events = np.nan_to_num(target[rows], nan=0.0)
    sums = np.convolve(events, np.ones(length), mode="valid")  # [len(rows) − length + 1]
    start = int(np.argmax(sums))
    return rows[start:start + length]


def _shade_events(ax: Any, t: np.ndarray, event: np.ndarray, label: str | None) -> None:
    event = np.nan_to_num(event, nan=0.0) == 1
    edges = np.flatnonzero(np.diff(np.r_[0, event.astype(int), 0]))
    first = True
    for a, b in zip(edges[::2], edges[1::2]):
        ax.axvspan(t[a], t[min(b, len(t) - 1)], color="#F2B134", alpha=0.3, lw=0,
                   label=label if first else None)
        first = False


def plot_timeline(result: Any, path: Path) -> Path:
    plt = pyplot()
    code = timeline_zone(result)
    rows = _busiest_span(_zone_rows(result, code), result.target, TIMELINE_MINUTES)
    t = result.timestamps[rows].astype("datetime64[m]").astype("O")
    ens = result.candidates["ensemble"]
    sla = result.task["sla_delay_s"]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    _shade_events(a1, t, result.target[rows], "delay event (next 10 min above SLA)")
    a1.plot(t, result.minute_delay_s[rows], color="#9A9A9A", lw=0.7, label="transport delay this minute")
    a1.plot(t, result.future_delay_s[rows], color="#1F3B73", lw=1.4,
            label=f"mean delay of the next {result.task['horizon']} min (target)")
    a1.axhline(sla, color="#C44E52", ls="--", lw=1, label=f"SLA {sla:g} s")
    a1.set_ylabel("delay vs nominal (s)")
    a1.legend(fontsize=8, loc="upper left")
    a1.grid(alpha=0.3)
    _shade_events(a2, t, result.target[rows], None)
    a2.plot(t, ens.prob[rows], color=KIND_COLORS["ensemble"], lw=1.2, label="ensemble probability")
    a2.axhline(ens.threshold, color="black", ls="--", lw=0.9, label=f"threshold {ens.threshold:.3f}")
    alarm = ens.alarm[rows]
    a2.fill_between(t, 0, -0.08, where=alarm, color=KIND_COLORS["ensemble"], step="mid", label="alarm raised")
    a2.set_ylim(-0.1, 1.02)
    a2.set_ylabel("probability")
    a2.legend(fontsize=8, loc="upper left")
    a2.grid(alpha=0.3)
    zone = result.zones[code]
    a1.set_title(f"Zone {zone}: the {len(rows) / 60:.0f} test hours with the most delay — "
                 f"transport delay, delay events (shaded) and the ensemble's alarms")
    fig.autofmt_xdate()
    return save_figure(fig, path)


def plot_weights(result: Any, path: Path) -> Path:
    plt = pyplot()
    code = timeline_zone(result)
    rows = _zone_rows(result, code)
    t = result.timestamps[rows].astype("datetime64[m]").astype("O")
    w = result.weights[rows]  # [R, M]
    static = bool(np.allclose(w, w[:1]))
    fig, ax = plt.subplots(figsize=(11, 4))
    ax.stackplot(t, w.T, labels=list(result.model_names), alpha=0.85)
    ax.set_ylim(0, 1)
    ax.set_ylabel("weight (stacked, sums to 1)")
    title = f"Dynamic ensemble weights over zone {result.zones[code]}'s test span"
    if static:
        title += " — constant: the fitted ensemble is static (infinite half-life)"
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    return save_figure(fig, path)


def plot_reliability(result: Any, path: Path) -> Path:
    """Reliability diagram on the test windows: mean predicted probability vs observed event rate
    per probability bin, for the served ensemble (calibrated on validation) and the best model."""
    from fabray.ensemble.calibrate import brier, reliability

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="#8C8C8C", linestyle="--", linewidth=1, label="perfectly calibrated")
    calibrator = (result.ensemble_info.get("served") or {}).get("calibrator", "identity")
    for cand, label in ((result.candidates["ensemble"], f"ensemble (calibration: {calibrator})"),
                        (_best_model(result), f"best model {_best_model(result).name} (raw)")):
        rel = reliability(cand.prob, result.target)
        ax.plot(rel["mean_prob"], rel["event_rate"], marker="o",
                label=f"{label}, Brier {brier(cand.prob, result.target):.4f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability (bin mean)")
    ax.set_ylabel("observed delay-event rate")
    ax.set_title("Reliability on the test windows (10 bins)")
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


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


def _best_model(result: Any) -> Any:
    """The model ranked highest on the leaderboard (headline first)."""
    return next(c for c in result.leaderboard() if c.kind == "model")


def plot_lead_times(result: Any, path: Path) -> Path:
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    ens = result.candidates["ensemble"]
    best = _best_model(result)
    series = [(ens, KIND_COLORS["ensemble"], True), (best, KIND_COLORS["model"], False)]
    leads = [c.lead_records.lead_min for c, _, _ in series]
    finite = np.concatenate([x[~np.isnan(x)] for x in leads])
    high = int(finite.max()) if finite.size else 10
    width = max(1, math.ceil((high + 1) / 60))  # at most ~60 bars
    bins = np.arange(0, max(high, 10) + 2 * width, width) - 0.5
    fig, ax = plt.subplots(figsize=(9, 4.8))
    for (cand, color, filled), lead in zip(series, leads):
        rec = cand.lead_records
        hit = lead[~np.isnan(lead)]
        label = (f"{_label(cand)}: {int(rec.warned_at_start.sum())}/{rec.n_episodes} warned at or before the "
                 f"start, {hit.size} before the onset, {int(rec.warned_5min_before_onset.sum())} ≥ 5 min before, "
                 f"{rec.n_episodes - hit.size} missed")
        ax.hist(hit, bins=bins, color=color, alpha=0.6 if filled else 1.0,
                histtype="stepfilled" if filled else "step", lw=1.8, label=label)
    ax.axvline(5, color="black", lw=1, ls="--", label="5 minutes: time to act")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.35)  # room for the legend above the bars
    ax.set_xlabel("warning before the delay is first observed, minutes (observed onset − alarm)")
    ax.set_ylabel("delay episodes")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("How long before each delay episode's observed onset the alarm came")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_alarm_tradeoff(result: Any, path: Path) -> Path:
    """Episodes warned at or before their start against false-alarm runs per zone-day on test,
    over every threshold (each candidate's hysteresis and hold kept), for the served ensemble, the
    best model and the tree baseline: what a site gets for each false-alarm rate it tolerates.
    Each operating point (the policy fitted on validation) is marked, with the site's budget."""
    from fabray.metrics import lead_tradeoff

    plt = pyplot()
    series = [result.candidates["ensemble"], _best_model(result)]
    if "gbt" in result.candidates:
        series.append(result.candidates["gbt"])
    colors = [KIND_COLORS["ensemble"], KIND_COLORS["model"], KIND_COLORS["baseline"]]
    sla, horizon = float(result.task["sla_delay_s"]), int(result.task["horizon"])
    fig, ax = plt.subplots(figsize=(8, 5))
    for cand, color in zip(series, colors):
        pol = cand.policy
        curve = lead_tradeoff(result.target, cand.prob, result.segments, result.minute_delay_s, sla, horizon,
                              clear_ratio=pol.clear_ratio, hold_min=pol.hold_min)
        ax.plot(curve["false_alarm_runs_per_zone_day"], curve["warned_at_start_fraction"], color=color, lw=1.6,
                label=f"{_label(cand)} (clear ×{pol.clear_ratio:g}, hold {pol.hold_min} min)")
        lead = cand.metrics.get("lead") or {}
        ax.plot([_num(lead.get("false_alarm_runs_per_zone_day"))], [_num(lead.get("warned_at_start_fraction"))],
                "o", color=color, ms=7, mec="black")
    budget = (result.ensemble_info or {}).get("max_false_alarms_per_zone_day")
    if budget is not None:
        ax.axvline(float(budget), color="black", ls="--", lw=1, label=f"site budget: {float(budget):g} per zone-day")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=0)
    ax.set_xlabel("false-alarm runs per zone-day (test)")
    ax.set_ylabel("episodes warned at or before their start")
    ax.set_ylim(0, 1.02)
    ax.set_title("Early warning vs false alarms over thresholds (dots: thresholds fitted on validation)",
                 fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


# ---------------------------------------------------------------------------- report.md


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
