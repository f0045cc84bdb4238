"""`fabray backtest`: rolling-origin folds, so "better than its best member" is a claim across
folds, not one split (as NeuralForecast's `cross_validation` and Darts' `historical_forecasts`).

The data's time span [t0, t1) is cut into K test blocks at its end, each as long as one test
split of the config (`block = ⌊T · (1 − train_fraction − val_fraction)⌋` minutes, T = t1 − t0).
Fold k (0 … K−1, oldest first) is the prefix [t0, end_k) with end_k = t1 − (K−1−k)·block: its
last `block` minutes are its test split, the minutes before are cut into train and validation in
the config's proportion. Each fold runs the whole chain on its prefix through `fabray.api`
(train, fit the ensemble, evaluate on the fold's own test split), so the origin moves forward by
one block per fold and every fold's test block is unseen by its models, its ensemble and its
thresholds. The blocks are disjoint; together they cover the last K blocks of the data.

Results: per fold the evaluation JSON (`fold<k>/evaluation.json`), and over the folds
`backtest.json`: every candidate's headline metrics per fold with their mean, standard deviation
(null with one fold), min and max, and the served ensemble against its best member and LightGBM per fold (how many
folds it matched or beat them). `backtest.json` is rewritten after each fold, so a failure keeps
what finished. `plan_folds` and `summarize` are pure; `run_backtest` does the work.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fabray.errors import BadInputError

logger = logging.getLogger(__name__)

#: The metrics compared across folds (keys of an evaluation leaderboard entry).
FOLD_METRICS = ("lead_score", "warned_at_start_fraction", "warned_before_onset_fraction",
                "median_lead_min", "false_alarm_runs_per_zone_day", "f1", "pr_auc")
BACKTEST_FILE = "backtest.json"


@dataclass(frozen=True)
class Fold:
    """One rolling-origin fold: the data prefix [t0, end) and its split fractions."""

    index: int
    end: str  # ISO minute, exclusive: the fold's data are the rows before it
    origin: str  # ISO minute: the first minute of its test block (= end − test_minutes)
    minutes: int  # T_k = end − t0
    test_minutes: int
    train_fraction: float
    val_fraction: float


def plan_folds(
    first: Any, last: Any, folds: int, train_fraction: float, val_fraction: float, min_minutes: int,
) -> list[Fold]:
    """The K folds of data spanning minutes [first, last] (see the module docstring).

    Args:
        first, last: the first and last timestamps of the data (anything numpy reads as a minute).
        folds: K >= 1.
        train_fraction, val_fraction: the config's split (their proportion is kept in each fold).
        min_minutes: the fewest minutes any train, validation or test part may have (at least a
            window: lookback + horizon).

    Raises BadInputError when K < 1 or the data are too short for K folds.
    """
    if int(folds) != folds or folds < 1:
        raise BadInputError(f"--folds must be a whole number >= 1. Received: {folds}")
    t0 = np.datetime64(first, "m")
    t1 = np.datetime64(last, "m") + np.timedelta64(1, "m")
    total = int((t1 - t0) / np.timedelta64(1, "m"))
    block = int(math.floor(total * (1.0 - train_fraction - val_fraction)))
    fit_share = train_fraction / (train_fraction + val_fraction)
    out = []
    for k in range(int(folds)):
        end = t1 - np.timedelta64((int(folds) - 1 - k) * block, "m")
        minutes = int((end - t0) / np.timedelta64(1, "m"))
        before = minutes - block
        parts = {"test": block, "train": before * fit_share, "validation": before * (1 - fit_share)}
        short = {name: n for name, n in parts.items() if n < min_minutes}
        if short:
            raise BadInputError(
                f"{folds} folds need more data: fold {k} would have "
                + ", ".join(f"{n:.0f} {name} minutes" for name, n in short.items())
                + f" (at least {min_minutes}: one window). The data span {total} minutes; use fewer "
                "folds or a longer file"
            )
        out.append(Fold(
            index=k, end=str(end), origin=str(end - np.timedelta64(block, "m")), minutes=minutes,
            test_minutes=block, train_fraction=before * fit_share / minutes,
            val_fraction=before * (1 - fit_share) / minutes,
        ))
    return out


def fold_rows(evaluation: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{candidate name: {kind, FOLD_METRICS...}} of one fold's evaluation JSON (its leaderboard)."""
    rows = {}
    for entry in evaluation.get("leaderboard", []):
        row = {"kind": entry.get("kind")}
        for key in FOLD_METRICS:
            value = entry.get(key)
            row[key] = float(value) if isinstance(value, (int, float)) else math.nan
        rows[str(entry["name"])] = row
    return rows


def _stats(values: Sequence[float]) -> dict[str, float]:
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if not x.size:
        return {"mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan}
    return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if x.size > 1 else math.nan,
            "min": float(x.min()), "max": float(x.max())}


def summarize(per_fold: Sequence[Mapping[str, Mapping[str, Any]]], headline: str = "lead_score") -> dict[str, Any]:
    """Across folds: each candidate's metrics per fold and their mean / std / min / max, ranked
    by the mean headline; and the served ensemble (`ensemble`) against its best member (the
    model with the best headline in that fold) and the tree baseline (`gbt`), fold by fold.

    Args:
        per_fold: one `fold_rows` dict per finished fold.
    """
    names: list[str] = []
    for rows in per_fold:
        names += [n for n in rows if n not in names]
    candidates = {}
    for name in names:
        kind = next(rows[name]["kind"] for rows in per_fold if name in rows)
        entry: dict[str, Any] = {"kind": kind, "folds": sum(name in rows for rows in per_fold)}
        for key in FOLD_METRICS:
            values = [rows[name][key] if name in rows else math.nan for rows in per_fold]
            entry[key] = {"per_fold": values, **_stats(values)}
        candidates[name] = entry
    ranked = sorted(candidates, key=lambda n: -_finite(candidates[n][headline]["mean"]))

    versus: dict[str, Any] = {}
    if per_fold and all("ensemble" in rows for rows in per_fold):
        best_member, gbt = [], []
        for rows in per_fold:
            models = {n: r for n, r in rows.items() if r["kind"] == "model"}
            best = max(models, key=lambda n: _finite(models[n][headline])) if models else None
            best_member.append(best)
            gbt.append(rows.get("gbt"))
        for label, others in (("best_member", [rows[b] if b else None for rows, b in zip(per_fold, best_member)]),
                              ("gbt", gbt)):
            diffs = {key: [rows["ensemble"][key] - o[key] if o else math.nan for rows, o in zip(per_fold, others)]
                     for key in (headline, "f1")}
            versus[label] = {
                **({"names": best_member} if label == "best_member" else {}),
                **{f"{key}_difference": {"per_fold": d, **_stats(d)} for key, d in diffs.items()},
                "folds_at_least_as_good": int(sum(np.isfinite(x) and x >= 0 for x in diffs[headline])),
                "folds": sum(o is not None for o in others),
            }
    return {"headline": headline, "ranking": ranked, "candidates": candidates, "ensemble_versus": versus}


def _finite(value: Any) -> float:
    try:
        v = float(value["mean"] if isinstance(value, Mapping) else value)
    except (TypeError, ValueError, KeyError):
        return -math.inf
    return v if math.isfinite(v) else -math.inf


def summary_table(summary: Mapping[str, Any]) -> str:
    """The across-fold table printed by `fabray backtest`."""
    head = (f"{'name':<16} {'kind':<15} {'lead_score':>17} {'at_start':>13} {'fa/zone-day':>13} "
            f"{'f1':>15} {'pr_auc':>15}")
    lines = [head, "-" * len(head)]

    def cell(stats: Mapping[str, float], digits: int) -> str:
        if not math.isfinite(stats["mean"]):
            return "—"
        spread = f" ± {stats['std']:.{digits}f}" if math.isfinite(stats["std"]) else ""  # one fold: no spread
        return f"{stats['mean']:.{digits}f}{spread}"

    for name in summary["ranking"]:
        c = summary["candidates"][name]
        lines.append(f"{name:<16} {str(c['kind']):<15} {cell(c['lead_score'], 1):>17} "
                     f"{cell(c['warned_at_start_fraction'], 2):>13} {cell(c['false_alarm_runs_per_zone_day'], 1):>13} "
                     f"{cell(c['f1'], 3):>15} {cell(c['pr_auc'], 3):>15}")
    for label, v in summary.get("ensemble_versus", {}).items():
        d = v[f"{summary['headline']}_difference"]
        if not math.isfinite(d["mean"]):
            continue
        spread = f" ± {d['std']:.1f}" if math.isfinite(d["std"]) else ""
        lines.append(
            f"ensemble − {label.replace('_', ' ')}: lead score {d['mean']:+.1f}{spread} "
            f"(min {d['min']:+.1f}); at least as good in {v['folds_at_least_as_good']}/{v['folds']} folds"
        )
    return "\n".join(lines)


def plot_folds(summary: Mapping[str, Any], folds: Sequence[Fold], path: Path) -> Path:
    """The headline per fold for every candidate (the served ensemble in bold black)."""
    from fabray.evaluate.report_plots import pyplot, save_figure

    fig, ax = pyplot().subplots(figsize=(8, 4.5))
    x = np.arange(len(folds))
    for name in summary["ranking"]:
        c = summary["candidates"][name]
        y = c[summary["headline"]]["per_fold"][: len(folds)]
        style = {"lw": 2.8, "color": "black", "zorder": 3} if name == "ensemble" else {"lw": 1.0, "alpha": 0.8}
        ax.plot(x, y, "o-", label=name, **style)
    ax.set_xticks(x, [f"fold {f.index}\ntest from {f.origin[:16]}" for f in folds], fontsize=8)
    ax.set_ylabel("lead score (test block)")
    ax.set_title("Rolling-origin backtest: the headline on each fold's unseen test block", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def run_backtest(
    data: str | Path,
    out: str | Path,
    folds: int,
    *,
    config: Any = None,
    trials: int | None = None,
    seed: int = 0,
    address: str | None = None,
    num_cpus: int | None = None,
) -> dict[str, Any]:
    """Run the K folds of `data` into the new directory `out` (see the module docstring); returns
    the `backtest.json` document (also written into `out`, after every fold)."""
    from tqdm import tqdm

    from fabray import schema
    from fabray.api import Forecaster
    from fabray.config import SplitConfig, as_config
    from fabray.data.io import write_table
    from fabray.data.validate import load_validated
    from fabray.files import atomic_write_json, strict_json, utc_now
    from fabray.ray_session import ray_session

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise BadInputError(f"{out}: exists and is not empty; a backtest writes into a new directory")
    cfg = as_config(config)
    frame = load_validated(data)  # bad input → BadInputError before any work
    ts = frame[schema.TIMESTAMP]
    plan = plan_folds(ts.min(), ts.max(), folds, cfg.split.train_fraction, cfg.split.val_fraction,
                      min_minutes=cfg.task.lookback + cfg.task.horizon)
    out.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"data": str(Path(data).resolve()), "started": utc_now(), "folds": [asdict(f) for f in plan],
                           "status": "running", "trials": trials, "seed": seed}
    per_fold: list[dict[str, dict[str, Any]]] = []
    with ray_session(address, num_cpus=num_cpus):
        for fold in tqdm(plan, desc="backtest folds", unit="fold"):
            fold_dir = out / f"fold{fold.index}"
            fold_dir.mkdir()
            fold_file = write_table(frame[ts < np.datetime64(fold.end)], fold_dir / "data.parquet")
            fold_cfg = cfg.model_copy(update={"split": SplitConfig(
                train_fraction=fold.train_fraction, val_fraction=fold.val_fraction)})
            logger.info("fold %d/%d: data up to %s, test block from %s (%d minutes)", fold.index + 1,
                        len(plan), fold.end, fold.origin, fold.test_minutes)
            try:
                fc = Forecaster.train(fold_file, fold_dir / "run", config=fold_cfg)
                fc.ensemble(trials=trials, seed=seed)
                evaluation = fc.evaluate(fold_file, json_path=fold_dir / "evaluation.json")
            except Exception as err:
                doc.update(status="failed", error=f"fold {fold.index}: {type(err).__name__}: {err}")
                atomic_write_json(out / BACKTEST_FILE, strict_json(doc))
                raise
            per_fold.append(fold_rows(evaluation))
            doc.update(folds_done=len(per_fold), summary=summarize(per_fold))
            atomic_write_json(out / BACKTEST_FILE, strict_json(doc))
    doc.update(status="complete", finished=utc_now())
    doc["plot"] = str(plot_folds(doc["summary"], plan, out / "backtest.png"))
    atomic_write_json(out / BACKTEST_FILE, strict_json(doc))
    return doc
