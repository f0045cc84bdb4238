"""The PNG plots of `fabray evaluate --report` (matplotlib, Agg backend).

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
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from fabray.evaluate.report_tables import _best_model, _f, _label


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
