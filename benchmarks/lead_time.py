"""Lead-time ablation (issue 11, point 5): which context inputs make which model warn early.

    nice -n 5 python benchmarks/lead_time.py --seeds 301,302 --zones 6 --days 8 \\
        --models gbt,gru,rule --variants none,calendar,plan,neighbours,all \\
        --early-warning 0,5 --json benchmarks/results/lead_time.json
    python benchmarks/lead_time.py --quick          # smoke run: 1 seed, 4 zones, 3 days, 1 epoch

One process. For each fresh simulator seed (one `simulate` call per seed), each training label
(`TaskConfig.early_warning_min`), each context variant and each model family:

1. `prepare` the frame with the variant's `ContextSpec` (every model and baseline of that
   variant sees exactly the same input columns);
2. fit on a seeded random subsample of the train windows (`--train-windows`) against
   `fit_target` (the early-warning label; 0 = the plain event);
3. choose the alarm threshold on the validation windows by `best_lead_threshold` (the plain
   event, standard NAB-style profile);
4. on the test windows: the DESIGN §8 `lead` object (`lead_summary`), minute F1 and PR-AUC at
   that threshold, and the warned counts per episode cause (`lead_by_cause`), plus the causes
   grouped as `foreseeable` (schema.FORESEEABLE_CAUSES: shift_change, lot_release, pm), `other`
   (breakdown, blockage, spillover) and `unknown` (episodes with no labelled cause).

Families: `gbt` (LightGBM on `baselines.lag_features`, always run: the baseline), and any of the
keras zoo (lstm, gru, cnn_lstm, spike, rule, patchtst) at tiny widths (`SMALL_OVERRIDES`),
trained in-process with plain `model.fit` on a tf.data pipeline that gathers windows by index
(`fabray.data.tf_windows.window_dataset`; no materialised training set), Adam 1e-3, batch 128,
`--epochs` epochs (3), no early stopping. Two baselines need no training and run in every
(seed, early_warning, variant) group: `persistence` (binary, no threshold: the event of the last
H minutes) and `rules` (the untrained rule model's score, thresholded like the others); neither
depends on the variant or the label, so their rows repeat within a seed (a consistency check).

Printed: a short table (stderr; means over seeds) and the per-cause table of the best
(early_warning, variant) by mean lead score of a trained model. JSON to `--json` (else stdout)
with machine facts (CPU count, load averages at start and end), versions, arguments, one
row per (seed, early_warning, variant, model) and the means over seeds.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

logger = logging.getLogger("benchmarks.lead_time")

KERAS_FAMILIES = ("lstm", "gru", "cnn_lstm", "spike", "rule", "patchtst")
FAMILIES = ("gbt", *KERAS_FAMILIES)
BASELINES = ("persistence", "rules")  # run in every group, no training
VARIANTS = ("none", "calendar", "plan", "neighbours", "all")

#: Tiny widths: a benchmark of inputs, not of capacity (the ratios to `gbt` are the figure).
SMALL_OVERRIDES: dict[str, dict[str, Any]] = {
    "lstm": {"lstm_units": [32, 16], "head_units": [16]},
    "gru": {"gru_units": [32, 16], "head_units": [16]},
    "cnn_lstm": {"conv_filters": 16, "lstm_units": [32], "head_units": [16]},
    "spike": {"conv_filters": 32, "num_heads": 2, "key_dim": 16, "bilstm_units": 16, "head_units": [16]},
    "rule": {"lstm_units": 16, "head_units": [16]},
    "patchtst": {"num_layers": 1, "num_heads": 2, "d_model": 16, "d_ff": 32},
}

#: Keys of the `lead` object every result row carries (DESIGN §8).
LEAD_KEYS = (
    "episodes", "warned_at_start", "warned_before_onset", "warned_5min_before_onset",
    "median_lead_min", "false_alarm_runs_per_zone_day", "lead_score",
)
CAUSE_GROUPS = ("foreseeable", "other", "unknown")
COUNT_KEYS = ("warned_at_start", "warned_before_onset", "warned_5min_before_onset")


# ---------------------------------------------------------------------------- helpers


def _csv(value: str, cast: Callable[[str], Any] = str) -> list[Any]:
    return [cast(v.strip()) for v in value.split(",") if v.strip()]


def _finite(x: Any) -> Any:
    """JSON-safe: NaN / inf → None; numpy scalars → Python."""
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def site_variant(name: str) -> Any:
    """The `SiteConfig` of a context variant: one group on (or all, or none)."""
    from fabray.config import SiteConfig

    if name == "all":
        return SiteConfig()
    if name == "none":
        return SiteConfig(calendar=False, plan=False, neighbours=False)
    if name not in VARIANTS:
        raise SystemExit(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    return SiteConfig(**{g: g == name for g in ("calendar", "plan", "neighbours")})


def machine_facts() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "sched_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "nice": os.nice(0) if hasattr(os, "nice") else None,
    }


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("numpy", "pandas", "keras", "tensorflow", "lightgbm", "fabray"):
        try:
            module = __import__(name)
            out[name] = getattr(module, "__version__", "?")
        except ImportError:
            out[name] = None
    try:
        root = Path(__file__).resolve().parents[1]
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        out["git_commit"] = commit.stdout.strip() or None
        out["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = None
    return out


def segment_ids(prepared: Any, ends: np.ndarray) -> np.ndarray:
    """[W] the segment id (the segment's first row) of each window end."""
    from fabray.data.windows import segment_positions

    before, _ = segment_positions(prepared.zone_codes, prepared.timestamps)
    return (np.arange(len(before)) - before)[ends]


def cause_groups(causes: np.ndarray) -> np.ndarray:
    from fabray.schema import FORESEEABLE_CAUSES

    return np.array(
        ["unknown" if c == "unknown" else "foreseeable" if c in FORESEEABLE_CAUSES else "other" for c in causes],
        dtype=object,
    )


# ---------------------------------------------------------------------------- scoring


def evaluate_scores(
    prepared: Any, task: Any, val_ends: np.ndarray, val_prob: np.ndarray | None,
    test_ends: np.ndarray, test_prob: np.ndarray, threshold: float | None = None,
) -> dict[str, Any]:
    """Threshold on validation (unless given: a binary alarm), then the test figures."""
    from fabray import metrics as M

    sla, h = task.sla_delay_s, task.horizon
    val_score = None
    if threshold is None:
        threshold, val_score = M.best_lead_threshold(
            prepared.target[val_ends], val_prob, segment_ids(prepared, val_ends),
            prepared.minute_delay_s[val_ends], sla, h,
        )
    y = prepared.target[test_ends]
    records = M.lead_episodes(y, test_prob >= threshold, segment_ids(prepared, test_ends),
                              prepared.minute_delay_s[test_ends], sla, h)
    lead = M.lead_summary(records)
    event = M.event_metrics(y, test_prob, threshold)
    cause = prepared.cause[test_ends] if prepared.cause is not None else None
    causes = M.episode_causes(cause, records.start, records.onset)
    by_cause = M.lead_by_cause(records, causes)
    grouped = M.lead_by_cause(records, cause_groups(causes))
    return {
        "threshold": float(threshold),
        "val_lead_score": val_score,
        "lead": lead,
        "f1": event["f1"],
        "pr_auc": event["pr_auc"],
        "precision": event["precision"],
        "recall": event["recall"],
        "by_cause": by_cause,
        "by_cause_group": grouped,
    }


# ---------------------------------------------------------------------------- fitting


def fit_gbt_scores(prepared: Any, train: np.ndarray, val: np.ndarray, test: np.ndarray, seed: int,
                   **_: Any) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    from fabray.evaluate import baselines as bl

    lb = prepared.lookback
    y = prepared.fit_target
    cfg = bl.GBTConfig(seed=seed, n_jobs=min(2, os.cpu_count() or 1))
    model = bl.fit_gbt(bl.lag_features(prepared.features, train, lb, scaler=prepared.scaler), y[train].astype(float),
                       bl.lag_features(prepared.features, val, lb, scaler=prepared.scaler), y[val].astype(float), cfg)
    pv = bl.gbt_scores(model, bl.lag_features(prepared.features, val, lb, scaler=prepared.scaler))
    pt = bl.gbt_scores(model, bl.lag_features(prepared.features, test, lb, scaler=prepared.scaler))
    return pv, pt, {"trees": int(getattr(model, "best_iteration_", 0) or cfg.n_estimators)}


def _predict_prob(model: Any, features: np.ndarray, ends: np.ndarray, lookback: int, chunk: int = 4096) -> np.ndarray:
    from fabray.data.windows import gather_windows

    out = np.empty(len(ends), dtype=np.float64)
    for start in range(0, len(ends), chunk):
        x = gather_windows(features, ends[start:start + chunk], lookback)  # [C, L, F]
        logit = np.asarray(model.predict_on_batch(x), dtype=np.float64).reshape(-1)  # [C]
        out[start:start + len(logit)] = 1.0 / (1.0 + np.exp(-np.clip(logit, -60.0, 60.0)))
    return out


def fit_keras_scores(prepared: Any, train: np.ndarray, val: np.ndarray, test: np.ndarray, seed: int, *,
                     family: str, epochs: int, batch_size: int = 128,
                     **_: Any) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    import warnings

    import keras

    from fabray.data.tf_windows import window_dataset
    from fabray.models import build_model, model_loss

    overrides = dict(SMALL_OVERRIDES[family])
    keras.utils.set_random_seed(seed)
    model = build_model(family, prepared.lookback, prepared.features.shape[1], overrides, prepared.scaler)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=model_loss(family, "event", overrides))
    data = window_dataset(prepared.features, prepared.fit_target, train, prepared.lookback, batch_size,
                          shuffle=True, seed=seed)
    with warnings.catch_warnings():  # keras notes that a tf.data input ignores shuffle=True: it is shuffled
        warnings.filterwarnings("ignore", message=".*shuffle=True.*")
        history = model.fit(data, epochs=epochs, verbose=0)
    pv = _predict_prob(model, prepared.features, val, prepared.lookback)
    pt = _predict_prob(model, prepared.features, test, prepared.lookback)
    info = {"params": int(model.count_params()), "final_loss": float(history.history["loss"][-1])}
    del model
    keras.backend.clear_session()
    return pv, pt, info


# ---------------------------------------------------------------------------- the run


def run(
    seeds: Sequence[int] = (301,),
    zones: int = 6,
    days: int = 8,
    models: Sequence[str] = ("gbt", "gru", "rule"),
    variants: Sequence[str] = VARIANTS,
    early_warning: Sequence[int] = (0, 5),
    epochs: int = 3,
    train_windows: int = 20_000,
    progress: bool = True,
) -> dict[str, Any]:
    """The whole ablation; returns the JSON document (see the module docstring)."""
    from tqdm import tqdm

    from fabray.evaluate import baselines as bl
    from fabray.config import FabrayConfig, TaskConfig
    from fabray.data.context import ContextSpec
    from fabray.data.simulate import SimulationSize, simulate
    from fabray.data.windows import prepare

    models = list(dict.fromkeys(["gbt", *models]))
    if not bl.gbt_available():
        logger.warning("%s; the gbt baseline is skipped", bl.GBT_MISSING)
        models.remove("gbt")
    unknown = [m for m in models if m not in FAMILIES]
    if unknown:
        raise SystemExit(f"unknown model families {unknown}; choose from {', '.join(FAMILIES)}")
    for v in variants:
        site_variant(v)  # fail fast on a typo

    load_start = os.getloadavg()
    t_start = time.perf_counter()
    cfg = FabrayConfig()
    rows: list[dict[str, Any]] = []
    data_info: list[dict[str, Any]] = []
    fitters = {"gbt": fit_gbt_scores, **{f: fit_keras_scores for f in KERAS_FAMILIES}}
    total = len(seeds) * len(early_warning) * len(variants) * (len(models) + len(BASELINES))
    bar = tqdm(total=total, disable=not progress, desc="lead_time", file=sys.stderr)
    for seed in seeds:
        df = simulate(SimulationSize(zones, days * 1440, zones * days * 1440), cfg.simulation, seed)
        for ew in early_warning:
            task = TaskConfig(**{**cfg.task.model_dump(), "early_warning_min": int(ew)})
            for variant in variants:
                spec = ContextSpec.from_site(site_variant(variant), task.horizon, list(df.columns))
                t0 = time.perf_counter()
                p = prepare(df, task, cfg.split, context=spec)
                prep_s = time.perf_counter() - t0
                val, test = p.splits["val"], p.splits["test"]
                train = p.splits["train"]
                train = train[np.isfinite(p.fit_target[train])]
                train = bl.subsample_ends(train, train_windows, seed)
                data_info.append({
                    "seed": seed, "early_warning": ew, "variant": variant,
                    "n_features": int(p.features.shape[1]), "input_columns": list(p.input_columns[12:]),
                    "train_windows_used": int(len(train)), "train_windows_total": int(len(p.splits["train"])),
                    "val_windows": int(len(val)), "test_windows": int(len(test)),
                    "train_positive_rate": float(np.nanmean(p.fit_target[train])),
                    "prepare_s": prep_s,
                })
                common = {"seed": seed, "early_warning": ew, "variant": variant,
                          "n_features": int(p.features.shape[1])}

                # baselines without training, in the same group
                bar.set_postfix_str(f"s{seed} ew{ew} {variant} persistence")
                t0 = time.perf_counter()
                alarms = bl.persistence_alarms(p.delay_s, test, task.horizon, task.sla_delay_s, task.lookback)
                res = evaluate_scores(p, task, val, None, test, alarms, threshold=0.5)
                rows.append({**common, "model": "persistence", "kind": "baseline",
                             "fit_s": 0.0, "total_s": time.perf_counter() - t0, **res})
                bar.update()
                bar.set_postfix_str(f"s{seed} ew{ew} {variant} rules")
                t0 = time.perf_counter()
                rule_over = dict(SMALL_OVERRIDES["rule"])
                pv = bl.rules_scores(p.features, val, p.lookback, rule_over)
                pt = bl.rules_scores(p.features, test, p.lookback, rule_over)
                res = evaluate_scores(p, task, val, pv, test, pt)
                rows.append({**common, "model": "rules", "kind": "baseline",
                             "fit_s": 0.0, "total_s": time.perf_counter() - t0, **res})
                bar.update()

                for family in models:
                    bar.set_postfix_str(f"s{seed} ew{ew} {variant} {family}")
                    t0 = time.perf_counter()
                    pv, pt, info = fitters[family](p, train, val, test, seed, family=family, epochs=epochs)
                    fit_s = time.perf_counter() - t0
                    res = evaluate_scores(p, task, val, pv, test, pt)
                    rows.append({**common, "model": family, "kind": "baseline" if family == "gbt" else "model",
                                 "fit_s": fit_s, "total_s": time.perf_counter() - t0, "info": info, **res})
                    bar.update()
                del p
        del df
    bar.close()
    wall = time.perf_counter() - t_start
    return _finite({
        "benchmark": "lead_time",
        "machine": {**machine_facts(), "loadavg_start": list(load_start), "loadavg_end": list(os.getloadavg())},
        "versions": versions(),
        "arguments": {"seeds": list(seeds), "zones": zones, "days": days, "models": models,
                      "variants": list(variants), "early_warning": list(early_warning), "epochs": epochs,
                      "train_windows": train_windows, "small_overrides": {m: SMALL_OVERRIDES[m] for m in models
                                                                          if m in SMALL_OVERRIDES},
                      "threshold": "best_lead_threshold on val (plain event, standard profile)",
                      "cause_groups": {"foreseeable": "shift_change, lot_release, pm",
                                       "other": "breakdown, blockage, spillover",
                                       "unknown": "episode with no labelled cause minute"}},
        "wall_s": wall,
        "data": data_info,
        "rows": rows,
        "aggregate": aggregate(rows),
    })


def aggregate(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Means over seeds per (early_warning, variant, model); cause counts are summed over
    seeds and their fractions recomputed."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["early_warning"], r["variant"], r["model"]), []).append(r)
    out = []
    for (ew, variant, model), rs in groups.items():
        def mean(get: Callable[[dict], Any]) -> float:
            vals = [get(r) for r in rs]
            vals = [float(v) for v in vals if v is not None and not (isinstance(v, float) and math.isnan(v))]
            return float(np.mean(vals)) if vals else math.nan

        lead = {k: mean(lambda r, k=k: r["lead"][k]) for k in rs[0]["lead"]}
        entry = {"early_warning": ew, "variant": variant, "model": model, "kind": rs[0]["kind"],
                 "seeds": [r["seed"] for r in rs], "lead": lead}
        for key in ("f1", "pr_auc", "threshold", "fit_s"):
            entry[key] = mean(lambda r, key=key: r[key])
        for field in ("by_cause", "by_cause_group"):
            summed: dict[str, dict[str, float]] = {}
            for r in rs:
                for cause, c in r[field].items():
                    acc = summed.setdefault(cause, {"episodes": 0, **{k: 0 for k in COUNT_KEYS}})
                    for k in ("episodes", *COUNT_KEYS):
                        acc[k] += c[k]
            for acc in summed.values():
                for k in COUNT_KEYS:
                    acc[f"{k}_fraction"] = acc[k] / acc["episodes"] if acc["episodes"] else math.nan
            entry[field] = dict(sorted(summed.items()))
        out.append(entry)
    return out


# ---------------------------------------------------------------------------- printing


def _fmt(x: Any, spec: str = ".1f") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return format(x, spec)


def table(doc: dict[str, Any]) -> str:
    """The means over seeds, one line per (early_warning, variant, model)."""
    head = (f"{'ew':>2} {'variant':10} {'model':11} {'score':>6} {'x gbt':>6} {'start':>11} {'<onset':>7} "
            f"{'>=5min':>7} {'med':>4} {'FA/zd':>5} {'F1':>5} {'PRAUC':>5} {'fore@start':>10} {'other<on':>8}")
    lines = [head, "-" * len(head)]
    agg = doc["aggregate"]
    gbt = {(a["early_warning"], a["variant"]): a["lead"]["lead_score"] for a in agg if a["model"] == "gbt"}
    for a in agg:
        L = a["lead"]
        e = L["episodes"] or math.nan
        g = gbt.get((a["early_warning"], a["variant"]))
        ratio = L["lead_score"] / g if g is not None and g > 0 else math.nan  # no ratio to a score <= 0
        fg, og = a["by_cause_group"].get("foreseeable", {}), a["by_cause_group"].get("other", {})
        lines.append(
            f"{a['early_warning']:>2} {a['variant']:10} {a['model']:11} {_fmt(L['lead_score']):>6} {_fmt(ratio, '.2f'):>6} "
            f"{_fmt(L['warned_at_start'], '.0f'):>4}/{_fmt(L['episodes'], '.0f'):<3}{_fmt(L['warned_at_start'] / e, '.0%'):>4}"
            f" {_fmt(L['warned_before_onset'] / e, '.0%'):>7} {_fmt(L['warned_5min_before_onset'] / e, '.0%'):>7}"
            f" {_fmt(L['median_lead_min'], '.0f'):>4} {_fmt(L['false_alarm_runs_per_zone_day'], '.2f'):>5}"
            f" {_fmt(a['f1'], '.2f'):>5} {_fmt(a['pr_auc'], '.2f'):>5}"
            f" {_fmt(fg.get('warned_at_start_fraction'), '.0%'):>10} {_fmt(og.get('warned_before_onset_fraction'), '.0%'):>8}"
        )
    lines.append(
        "score: lead_score (NAB-style, standard profile; null 0, perfect 100), x gbt: ratio to gbt's score in the "
        "same group (blank when gbt <= 0); start: warned at or before the episode start; <onset: before the delay "
        "is first observed; >=5min: at least 5 min before it; med: median lead to the onset, min; FA/zd: false-alarm "
        "runs per zone-day; F1, PRAUC: minute-level at the val-chosen threshold; fore@start: foreseeable causes "
        "warned at start; other<on: breakdown/blockage/spillover warned before onset. Means over seeds."
    )
    return "\n".join(lines)


def best_group(doc: dict[str, Any]) -> tuple[int, str, str] | None:
    """(early_warning, variant, model) of the trained model with the best mean lead score."""
    cands = [a for a in doc["aggregate"] if a["model"] not in BASELINES and a["lead"]["lead_score"] is not None
             and not math.isnan(a["lead"]["lead_score"])]
    if not cands:
        return None
    b = max(cands, key=lambda a: a["lead"]["lead_score"])
    return b["early_warning"], b["variant"], b["model"]


def cause_table(doc: dict[str, Any], early_warning: int, variant: str) -> str:
    """Per cause, every model of one (early_warning, variant): warned at start / before onset."""
    agg = [a for a in doc["aggregate"] if a["early_warning"] == early_warning and a["variant"] == variant]
    causes: list[str] = sorted({c for a in agg for c in a["by_cause"]}) + [f"[{g}]" for g in CAUSE_GROUPS]
    head = f"{'cause':14} {'eps':>4} " + " ".join(f"{a['model']:>15}" for a in agg)
    lines = [f"per cause, early_warning={early_warning}, variant={variant}: "
             "warned at start / before observed onset (episodes summed over seeds)", head, "-" * len(head)]
    for cause in causes:
        field, key = ("by_cause_group", cause[1:-1]) if cause.startswith("[") else ("by_cause", cause)
        eps = next((a[field][key]["episodes"] for a in agg if key in a[field]), 0)
        if not eps:
            continue
        cells = []
        for a in agg:
            c = a[field].get(key)
            cells.append(f"{c['warned_at_start']:>3}({_fmt(c['warned_at_start_fraction'], '.0%'):>4})/"
                         f"{_fmt(c['warned_before_onset_fraction'], '.0%'):>4}" if c else "-")
        lines.append(f"{cause:14} {eps:>4} " + " ".join(f"{x:>15}" for x in cells))
    return "\n".join(lines)


# ---------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--seeds", default="301,302", help="fresh simulator seeds, comma separated")
    ap.add_argument("--zones", type=int, default=6)
    ap.add_argument("--days", type=int, default=8, help="simulated days per zone (split train/val/test by config)")
    ap.add_argument("--models", default="gbt,gru,rule",
                    help=f"families from {','.join(FAMILIES)}; gbt is always added as the baseline")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"context variants from {','.join(VARIANTS)}")
    ap.add_argument("--early-warning", default="0,5", help="TaskConfig.early_warning_min values to compare")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of the keras families")
    ap.add_argument("--train-windows", type=int, default=20_000, help="random train windows per fit")
    ap.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 4 zones, 3 days, 1 epoch, gbt+rule")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notes: one new model per fit
    kwargs = dict(
        seeds=_csv(args.seeds, int), zones=args.zones, days=args.days, models=_csv(args.models),
        variants=_csv(args.variants), early_warning=_csv(args.early_warning, int), epochs=args.epochs,
        train_windows=args.train_windows, progress=not args.no_progress,
    )
    if args.quick:
        kwargs.update(seeds=kwargs["seeds"][:1], zones=4, days=3, epochs=1, models=["gbt", "rule"])
    doc = run(**kwargs)
    doc["arguments"]["quick"] = args.quick
    doc["arguments"]["command"] = " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)])
    print(table(doc), file=sys.stderr)
    best = best_group(doc)
    if best is not None:
        print(f"\nbest trained model by mean lead score: early_warning={best[0]} variant={best[1]} model={best[2]}",
              file=sys.stderr)
        print(cause_table(doc, best[0], best[1]), file=sys.stderr)
    m = doc["machine"]
    print(f"\nwall {doc['wall_s']:.0f} s; load average start {m['loadavg_start']} end {m['loadavg_end']}; "
          f"{m['cpu_count']} CPUs", file=sys.stderr)
    text = json.dumps(doc, indent=1, allow_nan=False)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
