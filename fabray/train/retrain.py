"""`fabray retrain`: incremental retraining of a run's models on new data (DESIGN §4).

    fabray retrain --run runs/r1 --data new.parquet --out runs/r2 [--budget-minutes 110]

Every model that trained in the parent run RUN is warm-started from RUN's stored model (its best
epoch: `models/<name>/model.keras`) and fine-tuned on the NEW data's training split plus a replay
sample of RUN's history, then lands in RUN2 exactly as `fabray train` lands a model (the same
driver, `fabray.train.driver.train_models`). RUN2 is a *challenger*: promotion is a separate,
guarded step (serving's `/v1/retrain`).

- **Warm start.** Each model is rebuilt from the parent's own overrides (same architecture,
  checked by parameter count before anything runs) and given the parent's weights; the optimizer
  starts afresh at `retrain.learning_rate` (default `train.learning_rate`). A worker that dies
  during the retrain resumes from its last checkpoint, like any training.
- **Replay.** The parent's history is the data file its manifest names (fingerprint-checked)
  plus, when the parent was itself a retrain, the history it replayed; `retrain.replay_ratio`
  windows per new training window (at most `retrain.replay_max_windows`) are drawn uniformly from
  the training splits of those files and added to the new training windows
  (`fabray.train.replay`). A history file that is gone or changed is skipped, with a warning and
  a note in the manifest: the retrain still runs, on the new data alone. Validation (early
  stopping, best epoch) scores the new data's validation split plus `retrain.replay_val_ratio`
  history validation windows per new one, so forgetting the history shows there too.
- **No worse than the parent on validation.** The parent's weights are scored first, as epoch 0
  (`fabray.train.loop.report_warm_start`); a model whose fine-tuned epochs all score below them
  lands with the parent's weights (best epoch 0; `parent_weights_kept` in the manifest).
- **Budget.** `retrain.budget_minutes` (or `--budget-minutes`) runs from the command's start.
  Each worker stops after the epoch whose successor would overrun it, or mid-epoch once it is
  spent (that partial epoch is still validated and checkpointed); a model that could not even
  start lands as the parent's model, unchanged (`carried_over` in the manifest), as does a model
  left out of `--models` (fine-tune only some models). RUN2 keeps the parent's fitted ensemble
  (same models; `inherited_from` in the manifest), fitted on the parent's whole validation
  split, unless `retrain.refit_ensemble` asks for a re-fit on the new validation split, budget is
  left, and some model changed; never the config's untuned defaults. The manifest records the budget, the time used,
  and which models the budget stopped.
- **Scaler policy: keep the parent's.** By default RUN2 keeps RUN's feature scaler and nominal
  transport times. (1) The warm-started weights were learned on inputs scaled by that scaler
  (each model's first layer, `FeatureScaling`, holds its statistics); refitting it would shift
  every input the weights see and undo part of the warm start. (2) The
  labels keep their meaning: `delay_s` is transport time minus the zone's nominal, so champion
  and challenger are compared on the same events. (3) Everything downstream stays consistent:
  the ensemble and the drift monitor's training statistics. A zone the parent never saw gets its nominal from
  the new data's training split, as in `fabray train`. `retrain.refit_scaler: true` refits both
  on the new data's training split instead (for a fab whose sensors or layout changed); every
  model's scaling layer then gets the new statistics, and no model can be carried over unchanged.
  A parent of run format 1 (models of z-scored windows) is retrained into format 2: its weights
  move behind a scaling layer of the kept statistics, and no model can be carried over.

RUN2's manifest has `parent` (run id, path, fingerprint of the parent's manifest) and `retrain`
(scaler policy, replay sources and windows, budget and time used).

Why one file of ~430 lines: the retrain's policies (scaler, replay, budget, carry-over) are
documented here once, beside the one driver that applies them; a fifth of it is that text.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fabray.config import FabrayConfig, TrainConfig, load_config
from fabray.errors import BadInputError
from fabray.files import atomic_copy, sha256_file, utc_now
from fabray import run as rd
from fabray.train.driver import RunSummary
from fabray.train.parent import ParentRun, load_parent, selected_models
from fabray.train.prepare import PreparedRun, check_models, check_windows, data_info
from fabray.train.replay import TrainSeries, replay_size, sample_replay, with_replay

logger = logging.getLogger(__name__)

KEPT = "kept_parent"
REFIT = "refit"


def retrain_config(
    parent: ParentRun, config: FabrayConfig | None, *, epochs: int | None = None,
    budget_minutes: float | None = None,
) -> FabrayConfig:
    """The retrain's effective config: `config` (else the parent's), with the parent's task and
    models, and the `retrain` section's epochs / learning rate as the training settings."""
    from pydantic import ValidationError

    from fabray.config import RetrainConfig, TaskConfig

    base = config if config is not None else parent.config
    parent_task = TaskConfig.model_validate(parent.preprocessing.get("task") or parent.config.task.model_dump())
    if config is not None and "task" in config.model_fields_set and config.task != parent_task:
        raise BadInputError(
            "a retrain keeps the parent's task (lookback, horizon, task, SLA): its models only fit "
            f"that. Parent: {parent_task.model_dump()}. Received: {config.task.model_dump()}"
        )
    try:
        retrain = RetrainConfig.model_validate({
            **base.retrain.model_dump(),
            **({"epochs": epochs} if epochs is not None else {}),
            **({"budget_minutes": budget_minutes} if budget_minutes is not None else {}),
        })
        train = TrainConfig.model_validate({
            **base.train.model_dump(),
            "models": parent.models,
            "epochs": retrain.epochs,
            "learning_rate": retrain.learning_rate or base.train.learning_rate,
        })
    except ValidationError as err:
        raise BadInputError(f"invalid retrain options: {err}") from err
    return base.model_copy(update={"task": parent_task, "train": train, "retrain": retrain})


def _overrides(parent: ParentRun) -> dict[str, dict]:
    """The parent's overrides, without the scaler statistics a format-1 run stored for `rule`
    (every model now gets them as its first layer, from the scaler the retrain uses)."""
    from fabray.models.rule import LEGACY_OVERRIDES

    return {name: {k: v for k, v in parent.overrides[name].items() if k not in LEGACY_OVERRIDES}
            for name in parent.models}


def _replay(parent: ParentRun, new_prepared: Any, new_fingerprint: str, config: FabrayConfig
            ) -> tuple[TrainSeries, dict[str, Any]]:
    """The new data's series plus replay windows from the parent's history; the manifest note."""
    from fabray.data.validate import load_validated
    from fabray.data.windows import prepare

    retrain = config.retrain
    series = TrainSeries.of(new_prepared)
    note: dict[str, Any] = {"ratio": retrain.replay_ratio, "max_windows": retrain.replay_max_windows,
                            "windows": 0, "sources": [], "skipped": [], "history": parent.history()}
    if (retrain.replay_ratio == 0 or retrain.replay_max_windows == 0) and retrain.replay_val_ratio == 0:
        note["skipped"].append({"reason": "replay disabled by config"})
        return series, note
    usable = []
    for source in parent.history():
        path = Path(source["path"])
        if source.get("fingerprint") == new_fingerprint:
            note["skipped"].append({**source, "reason": "it is the new data file itself"})
            continue
        if not path.is_file():
            note["skipped"].append({**source, "reason": "file not found"})
            continue
        fingerprint = sha256_file(path)
        if source.get("fingerprint") and fingerprint != source["fingerprint"]:
            note["skipped"].append({**source, "reason": f"file changed since (now {fingerprint})"})
            continue
        prepared = prepare(rd.rows_before(load_validated(path), source.get("until")), config.task, config.split,
                           scaler=new_prepared.scaler, nominal_s=new_prepared.nominal_s,
                           context=new_prepared.context)
        usable.append((source, prepared))
    for skipped in note["skipped"]:
        if "path" in skipped:
            logger.warning("replay: skipping %s (%s)", skipped["path"], skipped["reason"])
    drawn = _draw(usable, "train", len(series.train_ends), retrain.replay_ratio,
                  retrain.replay_max_windows, config.train.seed)
    drawn_val = _draw(usable, "val", len(series.val_ends), retrain.replay_val_ratio, None, config.train.seed + 1)
    series = with_replay(series, [(p.features, p.fit_target, d, v)
                                  for (_, p), d, v in zip(usable, drawn, drawn_val)])
    note["windows"] = series.replay_windows
    note["val_windows"] = series.replay_val_windows
    note["sources"] = [{**s, "train_windows": int(len(p.splits["train"])), "windows_drawn": int(len(d)),
                        "val_windows_drawn": int(len(v))}
                       for (s, p), d, v in zip(usable, drawn, drawn_val)]
    logger.info("replay: %d training and %d validation windows from %d history file(s) beside %d new "
                "training and %d new validation windows", series.replay_windows, series.replay_val_windows,
                len(usable), len(new_prepared.splits["train"]), len(new_prepared.splits["val"]))
    return series, note


def _draw(usable: list, split: str, n_new: int, ratio: float, cap: int | None, seed: int) -> list:
    """Window ends drawn from the history sources' `split`, `ratio` per new window (one array per
    source)."""
    ends = [p.splits[split] for _, p in usable]
    n = replay_size(n_new, sum(len(e) for e in ends), ratio, cap)
    return sample_replay(ends, n, seed) if usable else []


def prepare_retrain(
    parent_run: str | Path,
    data: str | Path,
    out: str | Path,
    config: FabrayConfig | str | Path | None = None,
    *,
    epochs: int | None = None,
    budget_minutes: float | None = None,
    models: Sequence[str] | None = None,
    started_unix: float | None = None,
    until: Any = None,
) -> PreparedRun:
    """Everything a retrain can refuse as bad input, with no Ray and nothing written: the parent
    run, the new data and its windows, the replay sample, the models (same parameter counts as
    the parent's). `models`: fine-tune only these (the parent's others land unchanged; only with
    the kept scaler). `started_unix`: when the budget started (default: now). `until`: learn
    from the data file's rows before this time only (serving's retrain holds the newest out);
    recorded as the manifest's `data.until`, which every reader of the run's data applies."""
    from fabray.data.context import ContextSpec
    from fabray.data.scaler import Scaler
    from fabray.data.validate import load_validated
    from fabray.data.windows import prepare

    started_unix = time.time() if started_unix is None else started_unix
    if isinstance(config, (str, Path)):
        config = load_config(config)
    out = rd.check_run_dir_free(out)
    parent = load_parent(parent_run)
    config = retrain_config(parent, config, epochs=epochs, budget_minutes=budget_minutes)
    refit = config.retrain.refit_scaler
    chosen = selected_models(parent, models)
    carried = frozenset(parent.models) - set(chosen)
    if carried and parent.format_version < rd.MANIFEST_VERSION:
        raise BadInputError(
            f"run {parent.run} has run format {parent.format_version}: its models take z-scored "
            f"windows, so they cannot be carried into a run of format {rd.MANIFEST_VERSION}; "
            f"retrain every model (drop --models). Received: models={list(chosen)}"
        )
    if carried and refit:
        raise BadInputError(
            "retrain.refit_scaler refits the preprocessing every model shares, so every model must "
            f"be retrained; drop --models or the refit. Received: models={list(chosen)}"
        )
    data = Path(data)
    df = rd.rows_before(load_validated(data), until)
    context = ContextSpec.stored(parent.preprocessing)  # the parent's inputs: its weights expect them
    if refit:
        prepared = prepare(df, config.task, config.split, context=context)
    else:
        prepared = prepare(df, config.task, config.split,
                           scaler=Scaler.from_dict(parent.preprocessing["scaler"]),
                           nominal_s=parent.preprocessing["nominal_s"], context=context)
    check_windows(prepared)
    info = data_info(data, df, prepared)
    if until is not None:
        info["until"] = rd.until_text(until)
    series, replay_note = _replay(parent, prepared, info["fingerprint"], config)
    overrides = _overrides(parent)
    names = list(parent.models)
    params = check_models(names, overrides, config, int(prepared.features.shape[1]))
    for name in names:
        expected = parent.manifest["models"][name].get("params")
        if expected is not None and int(expected) != params[name]:
            raise BadInputError(
                f"model {name!r}: built from the parent's overrides it has {params[name]:,} "
                f"parameters, the parent's has {int(expected):,}; cannot warm-start. "
                f"Received: overrides={overrides[name]}"
            )
    deadline = started_unix + 60.0 * config.retrain.budget_minutes
    extra = {
        "parent": {
            "run_id": parent.run_id,
            "path": str(parent.run),
            "manifest_fingerprint": sha256_file(parent.run / rd.MANIFEST),
            "data_fingerprint": (parent.manifest.get("data") or {}).get("fingerprint"),
            "models": list(parent.models),
        },
        "retrain": {
            "models": list(chosen),
            "scaler_policy": REFIT if refit else KEPT,
            "epochs": config.train.epochs,
            "learning_rate": config.train.learning_rate,
            "budget_minutes": config.retrain.budget_minutes,
            "started_at": utc_now(started_unix),
            "deadline_at": utc_now(deadline),
            "replay": {**replay_note, "history": [
                {key: info[key] for key in ("path", "fingerprint", "until") if key in info},
                *replay_note["history"]
            ]},
        },
    }
    return PreparedRun(
        data=data, out=out, config=config, prepared=prepared, data_info=info, overrides=overrides,
        params=params, series=series, warm_start=dict(parent.model_files), deadline_unix=deadline,
        carry_over=not refit, carry_models=carried, manifest_extra=extra,
    )


def run_retrain(job: PreparedRun, *, can_autoscale: bool = False, on_report: Any = None) -> RunSummary:
    """Train a `prepare_retrain` job on the current Ray cluster, re-fit the ensemble if budget is
    left, and record the time used in the manifest."""
    from fabray.train.driver import train_models

    summary = train_models(job, can_autoscale=can_autoscale, on_report=on_report)
    run, config = summary.run_dir, job.config
    deadline = job.deadline_unix or float("inf")
    ensemble: dict[str, Any] = {"refit": False}
    unchanged = unchanged_models(summary.manifest["models"])
    if not config.retrain.refit_ensemble:
        ensemble["reason"] = "retrain.refit_ensemble is false"
    elif summary.manifest["status"] == "failed":
        ensemble["reason"] = "no model trained"
    elif set(unchanged) >= set(summary.manifest["models"]):
        ensemble["reason"] = "every model kept its parent's weights"
    elif time.time() >= deadline:
        ensemble["reason"] = "time budget spent"
    else:
        from fabray.ensemble.fit import fit_ensemble

        try:
            fit = fit_ensemble(run, trials=config.retrain.ensemble_trials, seed=config.train.seed)
            ensemble = {"refit": True, "winner": getattr(fit, "winner", None)}
        except Exception as err:  # noqa: BLE001 - the models are good without it; say so
            logger.error("ensemble re-fit failed; RUN2 has no fitted ensemble: %s", err)
            ensemble = {"refit": False, "reason": f"{type(err).__name__}: {err}"[:1000]}
    inherited = None
    if not ensemble["refit"] and summary.manifest["status"] != "failed":
        inherited = inherit_parent_ensemble(Path(summary.manifest["parent"]["path"]), run)
        if inherited is not None:
            ensemble["inherited_from"] = inherited["inherited_from"]
            logger.info("RUN2 keeps the parent's fitted ensemble (%s); `fabray ensemble --run %s` re-fits it",
                        ensemble["reason"], run)
    manifest = rd.read_manifest(run)  # the ensemble fit may have added its entry
    if inherited is not None:
        manifest["ensemble"] = inherited
    started = (job.deadline_unix - 60.0 * config.retrain.budget_minutes) if job.deadline_unix else time.time()
    used_s = time.time() - started
    models = manifest["models"]
    manifest["retrain"].update(
        finished_at=utc_now(),
        seconds_used=round(used_s, 1),
        within_budget=used_s <= 60.0 * config.retrain.budget_minutes,
        stopped_by_budget=[n for n, e in models.items() if e.get("stopped_by_budget")],
        carried_over=[n for n, e in models.items() if e.get("carried_over")],
        parent_weights_kept=[n for n in unchanged_models(models) if not models[n].get("carried_over")],
        ensemble=ensemble,
    )
    rd.write_manifest(run, manifest)
    summary.manifest = manifest
    logger.info("retrain %s from %s: %s in %.0f s of a %.0f-minute budget", run.name,
                manifest["parent"]["run_id"], manifest["status"], used_s, config.retrain.budget_minutes)
    return summary


def unchanged_models(models: dict[str, dict]) -> list[str]:
    """RUN2's models that hold their parent's weights: carried over, or no fine-tuned epoch beat
    the warm start (best epoch 0)."""
    return [n for n, e in models.items() if e.get("status") == "ok" and e.get("best_epoch") == 0]


def inherit_parent_ensemble(parent_run: Path, run: Path) -> dict[str, Any] | None:
    """Copy the parent's fitted ensemble into RUN2 when RUN2's was not re-fitted (the budget was
    spent first, or `retrain.refit_ensemble` is false): its form, weights, state and alarm
    policies were fitted on the parent's whole validation split for these same models, which
    serves and evaluates far better than the config's untuned defaults. Returns RUN2's manifest
    "ensemble" entry (the parent's, with RUN2's checksums and `inherited_from`), or None when the
    parent has no fitted ensemble or one over other models (nothing is copied then). A parent of
    run format 1 has its learned gate converted to the raw context RUN2's windows carry."""
    from fabray.ensemble.fit import TRIALS_FILE
    from fabray.files import atomic_write_json
    from fabray.predictor import ENSEMBLE_FILE, format1_state_on_raw_context

    parent = rd.read_manifest(parent_run)
    entry, source = parent.get("ensemble"), parent_run / ENSEMBLE_FILE
    if not entry or not source.is_file():
        return None
    names = json.loads(source.read_text()).get("model_names") or []
    if list(names) != list(rd.read_manifest(run)["models"]):
        logger.warning("the parent's ensemble is over %s, RUN2 has other models: not kept", names)
        return None
    checksums = {}
    for name in (ENSEMBLE_FILE, TRIALS_FILE):
        if (parent_run / name).is_file():
            atomic_copy(parent_run / name, run / name)
            checksums[name] = sha256_file(run / name)
    doc = json.loads(source.read_text())
    state = doc.get("state")
    if int(parent.get("format_version") or 1) < rd.MANIFEST_VERSION and isinstance(state, dict) and state.get("gate"):
        from fabray.data.scaler import Scaler

        scaler = Scaler.from_dict(rd.Run.open(parent_run, verify=False).preprocessing()["scaler"])
        atomic_write_json(run / ENSEMBLE_FILE, {**doc, "state": format1_state_on_raw_context(state, scaler)})
        checksums[ENSEMBLE_FILE] = sha256_file(run / ENSEMBLE_FILE)
    return {**entry, "checksums": checksums, "inherited_from": parent.get("run_id")}


def retrain_run(
    parent_run: str | Path,
    data_path: str | Path,
    out: str | Path,
    config: FabrayConfig | str | Path | None = None,
    *,
    epochs: int | None = None,
    budget_minutes: float | None = None,
    models: Sequence[str] | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    on_report: Any = None,
    until: Any = None,
) -> RunSummary:
    """The whole `fabray retrain` as a library call (a service's `/v1/retrain` uses this).

    `config`: a FabrayConfig, a YAML path, or None for the parent's own config. Ray: the one
    already initialized in this process, else `address` / RAY_ADDRESS, else an embedded local
    Ray (shut down afterwards). Bad input raises BadInputError before Ray starts or anything is
    written; the returned summary's `manifest` is RUN2's.
    """
    from fabray.ray_session import ray_session

    started = time.time()
    job = prepare_retrain(parent_run, data_path, out, config, epochs=epochs, budget_minutes=budget_minutes,
                          models=models, started_unix=started, until=until)
    with ray_session(address, num_cpus=num_cpus) as session:
        return run_retrain(job, can_autoscale=session.joined, on_report=on_report)


def budget_line(manifest: dict[str, Any]) -> str:
    """'parent r1; 41 s of a 110-minute budget; replay 1,234 windows; scaler kept_parent'."""
    retrain, parent = manifest.get("retrain") or {}, manifest.get("parent") or {}
    parts = [f"parent {parent.get('run_id', '?')}",
             f"{retrain.get('seconds_used', '?')} s of a {retrain.get('budget_minutes', '?'):g}-minute budget"
             if isinstance(retrain.get("budget_minutes"), (int, float)) else "budget ?",
             f"replay {((retrain.get('replay') or {}).get('windows') or 0):,} windows",
             f"scaler {retrain.get('scaler_policy', '?')}"]
    if retrain.get("stopped_by_budget"):
        parts.append(f"stopped by budget: {', '.join(retrain['stopped_by_budget'])}")
    if retrain.get("carried_over"):
        parts.append(f"carried over unchanged: {', '.join(retrain['carried_over'])}")
    if retrain.get("parent_weights_kept"):
        parts.append(f"no fine-tuned epoch beat the parent's weights: {', '.join(retrain['parent_weights_kept'])}")
    ensemble = retrain.get("ensemble") or {}
    if ensemble.get("refit"):
        parts.append("ensemble re-fitted")
    else:
        kept = f"; the parent's {ensemble['inherited_from']} kept" if ensemble.get("inherited_from") else ""
        parts.append(f"ensemble not re-fitted ({ensemble.get('reason', '?')}{kept})")
    return "; ".join(parts)


__all__ = ["budget_line", "inherit_parent_ensemble", "prepare_retrain", "retrain_config", "retrain_run",
           "run_retrain", "unchanged_models"]
