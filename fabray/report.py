"""`fabray evaluate --report DIR`: report.md and its PNG plots (matplotlib, Agg backend).

Plots, each saying in its title what it shows:
- `leaderboard.png`: F1 and PR-AUC of every model, both ensembles and the baselines;
- `pr_curves.png`: precision–recall curves on the test windows, each with its operating point;
- `timeline.png`: one zone (the one with the most delay episodes in the test span), the 24 hours
  with the most delay: transport delay and the SLA, delay events, ensemble probability, alarms;
- `weights.png`: the dynamic ensemble's weights over that zone's whole test span;
- `lead_times.png`: when the alarm came for each delay episode, relative to its start (lead
  time when early, lateness when not; ensemble vs best model).
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


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


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


def plot_leaderboard(result: Any, path: Path) -> Path:
    plt = _plt()
    board = result.leaderboard()[::-1]  # best at the top
    f1 = [np.nan_to_num(float(c.metrics.get("f1", np.nan))) for c in board]
    pr = [np.nan_to_num(float(c.metrics.get("pr_auc", np.nan))) for c in board]
    y = np.arange(len(board))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(board) + 1.6))
    ax.barh(y + 0.2, f1, height=0.4, color=[KIND_COLORS[c.kind] for c in board], label="F1")
    ax.barh(y - 0.2, pr, height=0.4, color=[KIND_COLORS[c.kind] for c in board], alpha=0.45, hatch="//",
            label="PR-AUC")
    for yi, a, b in zip(y, f1, pr):
        ax.text(a + 0.005, yi + 0.2, f"{a:.3f}", va="center", fontsize=8)
        ax.text(b + 0.005, yi - 0.2, f"{b:.3f}", va="center", fontsize=8, color="#555555")
    ax.set_yticks(y, [_label(c) for c in board], fontsize=9)
    ax.set_xlim(0, min(1.0, max([*f1, *pr, 0.1]) * 1.18))
    ax.set_xlabel("test score")
    ax.set_title(f"Leaderboard on {result.data['windows']:,} test windows (solid: F1, hatched: PR-AUC)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in KIND_COLORS.values()]
    ax.legend(handles, [k.replace("_", " ") for k in KIND_COLORS], loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_pr_curves(result: Any, path: Path) -> Path:
    from sklearn.metrics import precision_recall_curve

    plt = _plt()
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
    plt = _plt()
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_weights(result: Any, path: Path) -> Path:
    plt = _plt()
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def alarm_offsets(target: np.ndarray, alarm: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Per delay episode, when the alarm came relative to the episode's start, in minutes:
    the lead time (>= 0, `fabray.metrics.lead_times`) when the alarm was up at the start, else
    minus the minutes until the first alarm inside the episode (late), NaN if none came."""
    from fabray.metrics import episode_starts, lead_times

    leads = lead_times(target, alarm, segments)  # [E]
    starts = episode_starts(target, segments)  # [E]
    event = np.nan_to_num(np.asarray(target, dtype=np.float64)) == 1
    alarm = np.asarray(alarm, dtype=bool)
    out = leads.copy()
    for i in np.flatnonzero(np.isnan(leads)):
        s = int(starts[i])
        e = s
        while e + 1 < len(event) and event[e + 1] and segments[e + 1] == segments[s]:
            e += 1
        hits = np.flatnonzero(alarm[s:e + 1])
        if hits.size:
            out[i] = -float(hits[0])
    return out


def plot_lead_times(result: Any, path: Path) -> Path:
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    ens = result.candidates["ensemble"]
    models = {n: c for n, c in result.candidates.items() if c.kind == "model"}
    best = max(models.values(), key=lambda c: np.nan_to_num(float(c.metrics.get("f1", 0.0))))
    series = []
    for cand, color, filled in ((ens, KIND_COLORS["ensemble"], True), (best, KIND_COLORS["model"], False)):
        series.append((cand, alarm_offsets(result.target, cand.alarm, result.segments), color, filled))
    finite = np.concatenate([o[~np.isnan(o)] for _, o, _, _ in series])
    low = int(finite.min()) if finite.size else -10
    high = int(finite.max()) if finite.size else 10
    width = max(1, math.ceil((high - low + 1) / 60))  # at most ~60 bars
    bins = np.arange(min(low, -10), max(high, 10) + 2 * width, width) - 0.5
    fig, ax = plt.subplots(figsize=(9, 4.8))
    for cand, offsets, color, filled in series:
        hit = offsets[~np.isnan(offsets)]
        early = int(np.sum(hit >= 0))
        label = (f"{_label(cand)}: {early}/{offsets.size} warned at or before the start, "
                 f"{int(np.sum(hit < 0))} late, {int(np.isnan(offsets).sum())} never alarmed")
        ax.hist(hit, bins=bins, color=color, alpha=0.6 if filled else 1.0,
                histtype="stepfilled" if filled else "step", lw=1.8, label=label)
    ax.axvline(0, color="black", lw=1, ls="--")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.3)  # room for the legend above the bars
    ax.set_xlabel("alarm time relative to the episode's start, minutes (≥ 0: lead time; < 0: late)")
    ax.set_ylabel("delay episodes")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("When the alarm came for each delay episode")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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


def write_report(result: Any, out_dir: Path) -> Path:
    """Write report.md and the five PNGs into `out_dir`; returns report.md's path."""
    from fabray.train.run_dir import atomic_write_text, utc_now

    out_dir.mkdir(parents=True, exist_ok=True)
    plots = {
        "leaderboard": plot_leaderboard(result, out_dir / "leaderboard.png"),
        "pr_curves": plot_pr_curves(result, out_dir / "pr_curves.png"),
        "timeline": plot_timeline(result, out_dir / "timeline.png"),
        "weights": plot_weights(result, out_dir / "weights.png"),
        "lead_times": plot_lead_times(result, out_dir / "lead_times.png"),
    }
    board = [["#", "name", "kind", "F1", "F1 95% CI", "PR-AUC", "precision", "recall", "accuracy",
              "balanced acc.", "ROC-AUC", "threshold", "episodes caught", "median lead (min)"]]
    for i, c in enumerate(result.leaderboard(), 1):
        m, lead = c.metrics, c.metrics.get("lead_time", {})
        ci = m.get("f1_ci95") or [None, None]
        board.append([str(i), f"**{c.name}**" if c.kind == "ensemble" else c.name, c.kind.replace("_", " "),
                      _f(m.get("f1")), f"{_f(ci[0])}–{_f(ci[1])}",
                      *(_f(m.get(k)) for k in ("pr_auc", "precision", "recall", "accuracy",
                                                "balanced_accuracy", "roc_auc", "threshold")),
                      f"{lead.get('caught', 0)}/{lead.get('episodes', 0)}", _f(lead.get("median_lead_min"), 1)])
    r = result.roi
    p = r["parameters"]
    roi_rows = [
        ["quantity", "value", "from"],
        ["recall (test, dynamic ensemble)", _f(r["recall"]), "measured"],
        ["precision (test, dynamic ensemble)", _f(r["precision"]), "measured"],
        ["delays per day", f"{r['delays_per_day']:g}", "config `roi.delays_per_day` (seed: 37)"],
        ["delays caught per day", _f(r["delays_caught_per_day"], 1), "recall × delays/day"],
        ["false alarms per day", _f(r["false_alarms_per_day"], 1), "delays/day × FP / (TP + FN)"],
        ["value per month (KRW)", _krw(r["value_per_month_krw"]),
         f"caught × {p['avoidable_fraction']:g} avoided × {p['cost_per_delay_krw']:,.0f} − false alarms × "
         f"{p['false_alarm_cost_krw']:,.0f}, × {p['days_per_month']:g} days"],
        ["GPU cost per month (KRW)", _krw(r["gpu_cost_per_month_krw"]),
         f"{p['gpus']:g} × {p['gpu_cost_per_month_krw']:,.0f}"],
        ["**net value per month (KRW)**", f"**{_krw(r['net_value_per_month_krw'])}**", "value − GPU cost"],
        ["value ÷ GPU cost", _f(r["roi_multiple"], 1) + "×",
         f"seed claimed {r['seed_claim_roi_multiple']:.0f}× (every delay avoided)"],
        ["stricter: delays warned before they start, per day", _f(r["delays_warned_in_advance_per_day"], 1),
         "episodes with the alarm up at their start × delays/day"],
        ["stricter: net value per month (KRW)", _krw(r["net_value_per_month_warned_krw"]),
         "as above, counting only delays warned in advance"],
    ]
    per_cand = [["name", "caught/day", "false alarms/day", "net value/month (KRW)", "warned in advance/day",
                 "net value/month, warned only (KRW)"]]
    for c in result.leaderboard():
        b = result.roi_by_candidate[c.name]
        per_cand.append([c.name, _f(b["delays_caught_per_day"], 1), _f(b["false_alarms_per_day"], 1),
                         _krw(b["net_value_per_month_krw"]), _f(b["delays_warned_in_advance_per_day"], 1),
                         _krw(b["net_value_per_month_warned_krw"])])
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
        "Every threshold was chosen on the run's validation split (F1-best), never on test. "
        "`ensemble` is the dynamic weighted ensemble fabray serves. The F1 interval is a block "
        "bootstrap (60-minute blocks of one zone, 1,000 resamples): entries whose intervals overlap "
        "widely are not told apart by this test set.",
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
        "## Lead time",
        "",
        "An episode is a run of consecutive delay-event minutes of one zone; its lead time is how many "
        "minutes the alarm had been up, without a break, when the episode started (0: raised exactly "
        "then); the leaderboard counts those episodes as caught. The histogram also shows how late "
        "the alarm came for the others (negative minutes).",
        "",
        "![lead times](lead_times.png)",
        "",
        "## ROI (seed §6), from the measured metrics",
        "",
        _table(roi_rows),
        "",
        "Recall and precision are counted per window (minute); the ratio of alarms to delays is "
        "carried over to the seed's count of delays, and a window counts as caught even when the "
        "alarm came after its delay episode had started. The stricter rows count only episodes "
        "whose alarm was up at their start. Catching a delay is not avoiding it: "
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
