"""A model card for a run (Mitchell et al. 2019, "Model Cards for Model Reporting"), written with
every evaluation report (`fabray evaluate --report DIR`, `Forecaster.evaluate(report=...)`, the
demo; `fabray.evaluate.write_outputs`) as `DIR/model_card.md` + `model_card.json` and as the last
section of `DIR/report.md`.

What it holds: the run (models, code version, created), the training data (source, fingerprint,
rows, zones, period, windows per split), the intended use and what it is not for, the test data,
the served ensemble's metrics per zone and per shift (shifts from the run's `site.shift_changes`)
beside the best single model's lead score, and known failure modes: the ones measured on this
test (weakest zone and shift, missed episodes by cause, test period or zones outside training) and the ones the design has (stated).

`build_model_card` computes (no files); `write_model_card` reads the run's manifest and config
and writes. Per-group metrics reuse `fabray.metrics` on the windows of the group: a zone's
windows are whole segments; a shift's windows cut episodes at shift boundaries (an episode
spanning a shift change counts in both shifts, each part from where the shift begins).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

INTENDED_USE = (
    "Warn a fab's OHT dispatchers, per zone, that the mean transport delay of the next "
    "{horizon} minutes will exceed {sla:g} s, early enough to act (reroute, release vehicles, hold "
    "lot releases). Decision support for people watching the transport system, on the site and "
    "zones the run was trained on."
)
NOT_FOR = (
    "Not for closing the loop without a person (it raises alarms, it does not dispatch); not for "
    "zones, tracks or fabs it was not trained on without retraining and re-evaluating; not as a "
    "measure of anyone's performance; not for predicting single transports (it forecasts a zone's "
    "mean delay)."
)
DESIGN_FAILURE_MODES = (
    "After a gap in a zone's data no forecast is made until `lookback` new minutes have arrived "
    "(windows never span a gap).",
    "The dynamic ensemble's per-zone weights move only with outcomes, which arrive `horizon` "
    "minutes late: after a restart or on a new zone it runs on its fitted starting weights until "
    "enough outcomes have come in.",
    "Nominal transport times are per-zone medians of the training split: a re-layout or a "
    "vehicle-fleet change that moves them makes every delay (and alarm) biased until retrained.",
    "A delay that starts with no warning sign in the inputs (a sudden breakdown) can only be "
    "warned after it is observed; such episodes count as missed or late.",
)


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def shift_codes(timestamps: np.ndarray, shift_changes_min: Sequence[int]) -> tuple[np.ndarray, list[str]]:
    """[W] shift index of each timestamp and the shifts' names ("06:00–14:00", ...).

    A shift runs from one change to the next (the last wraps past midnight); no changes → one
    shift "all day"."""
    stamps = np.asarray(timestamps).astype("datetime64[m]")
    if not len(shift_changes_min):
        return np.zeros(stamps.size, dtype=np.int64), ["all day"]
    changes = np.asarray(sorted({int(m) % 1440 for m in shift_changes_min}), dtype=np.int64)  # [S]
    minute = (stamps - stamps.astype("datetime64[D]")).astype(np.int64)  # [W] minute of day
    codes = (np.searchsorted(changes, minute, side="right") - 1) % changes.size  # before the first: last
    hhmm = [f"{m // 60:02d}:{m % 60:02d}" for m in changes]
    names = [f"{hhmm[i]}–{hhmm[(i + 1) % len(hhmm)]}" for i in range(len(hhmm))]
    return codes.astype(np.int64), names


def group_metrics(result: Any, cand: Any, codes: np.ndarray, names: Sequence[str]) -> list[dict[str, Any]]:
    """Per group (zone, shift): windows, delay-event share, episodes, warned fractions, median
    lead, lead score, precision / recall / F1 of `cand`'s alarms on the group's windows."""
    from fabray.metrics import HEADLINE_METRIC, event_metrics, lead_episodes, lead_summary

    alarm = np.asarray(cand.alarm if cand.alarm is not None else cand.prob >= cand.threshold, dtype=bool)
    rows = []
    for code, name in enumerate(names):
        mask = codes == code
        if not mask.any():
            continue
        target = result.target[mask]
        segments = result.segments[mask]
        if mask.sum() < codes.size:  # a part of a segment is its own run of windows
            cut = np.ones(mask.sum(), dtype=bool)
            idx = np.flatnonzero(mask)
            cut[1:] = np.diff(idx) != 1
            segments = np.cumsum(cut | np.r_[True, np.diff(segments) != 0]) - 1
        minute = result.minute_delay_s[mask]
        task = result.task
        ev = event_metrics(target, cand.prob[mask], cand.threshold, alarm=alarm[mask])
        lead = lead_summary(lead_episodes(target, alarm[mask], segments, minute,
                                          float(task["sla_delay_s"]), int(task["horizon"])))
        rows.append({
            "group": name, "windows": int(mask.sum()), "event_share": _finite(np.nanmean(target)),
            "episodes": int(lead["episodes"]),
            "warned_at_start_fraction": _finite(lead.get("warned_at_start_fraction")),
            "warned_before_onset_fraction": _finite(lead.get("warned_before_onset_fraction")),
            "median_lead_min": _finite(lead.get("median_lead_min")),
            HEADLINE_METRIC: _finite(lead.get(HEADLINE_METRIC)),
            **{k: _finite(ev.get(k)) for k in ("precision", "recall", "f1")},
        })
    return rows


def _best_model(result: Any) -> Any:
    models = [c for c in result.candidates.values() if c.kind == "model"]
    return max(models, key=lambda c: _finite(c.metrics.get("lead_score")) or -math.inf) if models else None


def _time(text: Any) -> np.datetime64:
    """A manifest or result timestamp ("2026-01-01 00:00:00" or "2026-01-01T00:00"); NaT if absent."""
    try:
        return np.datetime64(str(text).replace(" ", "T"), "m") if text else np.datetime64("NaT")
    except ValueError:
        return np.datetime64("NaT")


def measured_failure_modes(card: Mapping[str, Any], result: Any) -> list[str]:
    """Failure modes this test shows: weakest zone and shift, missed episodes by cause, test
    period or zones outside training."""
    out = []
    for key, label in (("per_zone", "zone"), ("per_shift", "shift")):
        rows = [r for r in card[key] if r["episodes"] > 0 and r["warned_at_start_fraction"] is not None]
        if rows and all(r["warned_at_start_fraction"] == 0 for r in rows):
            out.append(f"No {label} had any of its delay episodes warned at or before their start "
                       f"({sum(r['episodes'] for r in rows)} episodes in all).")
        elif len(rows) > 1:
            worst = min(rows, key=lambda r: r["warned_at_start_fraction"])
            best = max(rows, key=lambda r: r["warned_at_start_fraction"])
            if worst["warned_at_start_fraction"] < best["warned_at_start_fraction"]:
                out.append(
                    f"Weakest {label}: {worst['group']} — {worst['warned_at_start_fraction']:.0%} of its "
                    f"{worst['episodes']} delay episodes warned at or before their start (best {label} "
                    f"{best['group']}: {best['warned_at_start_fraction']:.0%})."
                )
    ens = result.candidates.get("ensemble")
    by_cause = (ens.metrics.get("lead_by_cause") if ens is not None else None) or {}
    missed = sorted(((c, v) for c, v in by_cause.items() if (v.get("episodes") or 0) > 0),
                    key=lambda cv: _finite(cv[1].get("warned_before_onset_fraction")) or 0.0)
    if missed:
        cause, v = missed[0]
        out.append(f"Hardest cause: {cause or '(none)'} — {_finite(v.get('warned_before_onset_fraction')) or 0:.0%} "
                   f"of its {v.get('episodes')} episodes warned before the delay was observed.")
    train, test = card["training_data"], card["test_data"]
    starts_before = _time(test.get("first_timestamp")) < _time(train.get("last_timestamp"))
    if starts_before and test.get("fingerprint") != train.get("fingerprint"):  # another file, same period
        out.append(f"The test data starts ({test['first_timestamp']}) before the training data ends "
                   f"({train['last_timestamp']}): if it is the same site, the figures may be optimistic.")
    unseen = sorted(set(test.get("zones") or []) - set(train.get("zones") or []))
    if unseen:
        out.append(f"Zones in the test data the run never trained on: {unseen} (their nominal times "
                   "and context are guesses; treat their figures as untested).")
    return out


def build_model_card(result: Any, manifest: Mapping[str, Any], shift_changes_min: Sequence[int] = ()) -> dict[str, Any]:
    """The card as a JSON-able dict (see the module docstring)."""
    data = dict(manifest.get("data") or {})
    task = result.task
    ens = result.candidates["ensemble"]
    best = _best_model(result)
    zone_rows = group_metrics(result, ens, np.asarray(result.zone_codes), list(result.zones))
    shift_idx, shift_names = shift_codes(result.timestamps, shift_changes_min)
    shift_rows = group_metrics(result, ens, shift_idx, shift_names)
    if best is not None:
        best_zone = {r["group"]: r["lead_score"] for r in group_metrics(result, best, np.asarray(result.zone_codes), list(result.zones))}
        best_shift = {r["group"]: r["lead_score"] for r in group_metrics(result, best, shift_idx, shift_names)}
        for r in zone_rows:
            r["best_model_lead_score"] = best_zone.get(r["group"])
        for r in shift_rows:
            r["best_model_lead_score"] = best_shift.get(r["group"])
    overall = group_metrics(result, ens, np.zeros(len(result.target), dtype=np.int64), ["all"])
    card = {
        "run": {"id": manifest.get("run_id", result.run), "created_at": manifest.get("created_at"),
                "status": manifest.get("status"), "code": manifest.get("code"),
                "models": [n for n, e in (manifest.get("models") or {}).items() if e.get("status") == "ok"],
                "parent": manifest.get("parent")},
        "task": task,
        "intended_use": INTENDED_USE.format(horizon=task["horizon"], sla=float(task["sla_delay_s"])),
        "not_for": NOT_FOR,
        "training_data": {k: data.get(k) for k in ("source", "path", "fingerprint", "rows", "zones",
                                                   "first_timestamp", "last_timestamp", "windows")},
        "test_data": {**{k: result.data.get(k) for k in ("path", "fingerprint", "windows", "windows_used",
                                                        "first_timestamp", "last_timestamp")},
                      "zones": list(result.zones)},
        "ensemble": {"overall": overall[0] if overall else {}, "best_model": best.name if best else None},
        "per_zone": zone_rows,
        "per_shift": shift_rows,
        "shift_changes": shift_names,
    }
    card["failure_modes"] = {"measured": measured_failure_modes(card, result),
                             "by_design": list(DESIGN_FAILURE_MODES)}
    return card


def _f(value: Any, digits: int = 2, pct: bool = False) -> str:
    v = _finite(value)
    if v is None:
        return "—"
    return f"{v:.0%}" if pct else f"{v:.{digits}f}"


def _table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def _group_table(rows: list[dict[str, Any]], label: str, best: str | None) -> str:
    head = [label, "windows", "event share", "episodes", "warned at start", "warned before onset",
            "median lead (min)", "lead score", "precision", "recall", "F1"]
    if best:
        head.append(f"lead score, {best}")
    body = [[r["group"], f"{r['windows']:,}", _f(r["event_share"], pct=True), str(r["episodes"]),
             _f(r["warned_at_start_fraction"], pct=True), _f(r["warned_before_onset_fraction"], pct=True),
             _f(r["median_lead_min"], 1), _f(r["lead_score"], 1), _f(r["precision"]), _f(r["recall"]), _f(r["f1"])]
            + ([_f(r.get("best_model_lead_score"), 1)] if best else []) for r in rows]
    return _table([head, *body])


def model_card_markdown(card: Mapping[str, Any]) -> str:
    """The card as a Markdown section ("## Model card")."""
    run, train, test, task = card["run"], card["training_data"], card["test_data"], card["task"]
    source = train.get("source")
    source_text = (f"{source.get('url')} ({'table ' + source['table'] if 'table' in source else 'query'}), "
                   f"snapshot `{train.get('path')}`") if source else f"`{train.get('path')}`"
    windows = train.get("windows") or {}
    best = card["ensemble"].get("best_model")
    overall = card["ensemble"].get("overall") or {}
    code = run.get("code") or {}
    lines = [
        "## Model card",
        "",
        f"**Run** `{run['id']}` ({run.get('status')}), created {run.get('created_at')}, fabray "
        f"{code.get('fabray', '?')}{' @ ' + str(code.get('git_commit'))[:12] if code.get('git_commit') else ''}; "
        f"models {', '.join(run['models'])}; served: the ensemble fitted on them (section \"The fitted ensemble\")."
        + (f" Retrained from `{(run.get('parent') or {}).get('run_dir', run.get('parent'))}`." if run.get("parent") else ""),
        "",
        f"**Task.** Delay event = mean transport delay of the next {task['horizon']} minutes above "
        f"{float(task['sla_delay_s']):g} s, from {task['lookback']} minutes of history per zone.",
        "",
        f"**Intended use.** {card['intended_use']}",
        "",
        f"**Not for.** {card['not_for']}",
        "",
        f"**Training data.** {source_text}; fingerprint `{train.get('fingerprint')}`; {train.get('rows') or 0:,} "
        f"zone-minutes, zones {', '.join(train.get('zones') or [])}; period {train.get('first_timestamp')} … "
        f"{train.get('last_timestamp')}; windows train {windows.get('train', '—'):,} / val "
        f"{windows.get('val', '—'):,} / test {windows.get('test', '—'):,} (split by time, with a gap)."
        if windows else f"**Training data.** {source_text}; fingerprint `{train.get('fingerprint')}`.",
        "",
        f"**Evaluation data.** `{test.get('path')}` ({test.get('windows_used')}): {test.get('windows') or 0:,} "
        f"windows, {test.get('first_timestamp')} … {test.get('last_timestamp')}, fingerprint `{test.get('fingerprint')}`.",
        "",
        f"**Overall (served ensemble).** {overall.get('episodes', 0)} delay episodes, "
        f"{_f(overall.get('warned_at_start_fraction'), pct=True)} warned at or before their start, "
        f"lead score {_f(overall.get('lead_score'), 1)}, precision {_f(overall.get('precision'))}, "
        f"recall {_f(overall.get('recall'))}.",
        "",
        "### Per zone (served ensemble" + (f"; last column: best single model {best}" if best else "") + ")",
        "",
        _group_table(card["per_zone"], "zone", best),
        "",
        f"### Per shift (shift changes {', '.join(card['shift_changes'])}; an episode across a change counts in both)",
        "",
        _group_table(card["per_shift"], "shift", best),
        "",
        "### Known failure modes",
        "",
        "Measured on this test:",
        "",
        *([f"- {m}" for m in card["failure_modes"]["measured"]] or ["- none stood out on this test."]),
        "",
        "By design:",
        "",
        *[f"- {m}" for m in card["failure_modes"]["by_design"]],
        "",
    ]
    return "\n".join(lines)


def _shift_changes_min(run: Path) -> list[int]:
    """The run's shift changes, minutes after midnight (its config.json `site.shift_changes`,
    else the site defaults)."""
    from fabray.config import SiteConfig

    try:
        site = json.loads((run / "config.json").read_text()).get("site") or {}
    except (OSError, json.JSONDecodeError):
        site = {}
    changes = site.get("shift_changes") or SiteConfig().shift_changes
    out = []
    for text in changes:
        hours, minutes = str(text).split(":")
        out.append(int(hours) * 60 + int(minutes))
    return out


def write_model_card(result: Any, run_dir: str | Path, report_dir: str | Path) -> Path:
    """Write `model_card.md` and `model_card.json` into `report_dir` and append the card to its
    report.md (when there); returns model_card.md's path."""
    from fabray.files import atomic_write_json, atomic_write_text
    from fabray.run import read_manifest

    run = Path(run_dir)
    card = build_model_card(result, read_manifest(run), _shift_changes_min(run))
    out = Path(report_dir)
    text = model_card_markdown(card)
    atomic_write_text(out / "model_card.md", text)
    atomic_write_json(out / "model_card.json", card)
    report = out / "report.md"
    if report.is_file():
        atomic_write_text(report, report.read_text().rstrip("\n") + "\n\n" + text)
    logger.info("model card: %s", out / "model_card.md")
    return out / "model_card.md"
