"""`POST /v1/retrain`: retrain on newer data as a Ray job, compare, promote only if not worse.

The job (a Ray task started by the JobManager deployment, its status in the store):

1. reads and validates the new data file and cuts it by time: the newest `holdout_fraction` of
   the span is held out; the rows before the cut are what the challenger trains on;
2. trains the challenger with the retrain library (`fabray.train.retrain.retrain_run`, what
   `fabray retrain` runs): warm start from the champion, on the file's rows before the cut (the
   run's manifest names the file and the cut as `data.until`), with the champion's own
   configuration and `serve.retrain_overrides` merged in;
3. scores champion and challenger on the held-out windows (targets the challenger never saw),
   each with its own dynamic ensemble replayed in time order, and compares them on
   `serve.promote_metric`;
4. stores the challenger as a new version; promotes it only if it is not worse (within
   `serve.promote_tolerance`) and keeps the request contract (window shape, task). The serving
   replicas then hot-swap to it; `POST /v1/rollback` returns to the champion.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from fabray.errors import BadInputError
from fabray.files import utc_now
from fabray.serve.batch import write_status
from fabray.serve.jobs import public_error
from fabray.serve.store import ModelStore

logger = logging.getLogger(__name__)

HOLDOUT_FRACTION = 0.2


def holdout_cut(df: Any, holdout_fraction: float = HOLDOUT_FRACTION) -> Any:
    """The cut timestamp: the newest `holdout_fraction` of the span (rows at or after it) is held out."""
    from fabray import schema

    ts = df[schema.TIMESTAMP]
    return ts.min() + (ts.max() - ts.min()) * (1.0 - holdout_fraction)


def evaluate_version(run_dir: str | Path, df: Any, cut: Any, ensemble_cfg: dict[str, Any] | None = None) -> dict[str, Any]:
    """Metrics of a run's ensemble on the windows of `df` whose end lies at or after `cut`."""
    from fabray.config import EnsembleConfig
    from fabray.data.windows import ALL, ends_with_target
    from fabray.ensemble import replay
    from fabray.metrics import event_metrics
    from fabray.predictor import RunPredictor

    predictor = RunPredictor.load(run_dir)
    prepared = predictor.prepare(df)
    ends = ends_with_target(prepared, prepared.splits[ALL])
    ends = ends[prepared.timestamps[ends] >= np.datetime64(cut)]
    if ends.size == 0:
        raise BadInputError("no held-out window with a known outcome: the data file is too short to evaluate on")
    scores = predictor.score_prepared(prepared, ends)
    names = predictor.model_names
    matrix = np.stack([scores[name] for name in names], axis=1)  # [W, M]
    if predictor.ensemble is not None:
        params = predictor.ensemble.params
    else:
        params = EnsembleConfig.model_validate(ensemble_cfg or {}).to_params(names)
    target = prepared.target[ends]
    prob, _ = replay(matrix, target, prepared.zone_codes[ends], params, feedback_lag=predictor.horizon)
    metrics = event_metrics(target, prob, params.threshold)
    return {"windows": int(ends.size), "metrics": {k: float(v) for k, v in metrics.items()},
            "contract": {"lookback": predictor.lookback, "n_features": predictor.n_features,
                         "task": predictor.task.task}}


def _merge(base: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in updates.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def challenger_config(champion_run: Path, overrides: dict[str, Any] | None) -> Any:
    """The champion's own configuration (its config.json, serving settings dropped: they play no
    part in training) with `overrides` (serve.retrain_overrides) merged in, validated."""
    import json

    from pydantic import ValidationError

    from fabray.config import FabrayConfig

    path = champion_run / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise BadInputError(f"{path}: cannot read the champion's configuration: {err}") from err
    config.pop("serve", None)
    try:
        return FabrayConfig.model_validate(_merge(config, overrides or {}))
    except ValidationError as err:
        raise BadInputError(f"the champion's configuration with serve.retrain_overrides is not valid:\n{err}") from err


def _train_challenger(champion_run: Path, data_path: str | Path, until: Any, out: Path, epochs: int | None,
                      overrides: dict[str, Any]) -> Any:
    """Warm-start the champion's models on the rows of `data_path` before `until` into `out`
    (the retrain library, on the Ray this job runs in); the run's summary. `epochs`: the
    retrain's maximum (None: the config's `retrain.epochs`)."""
    from fabray.train import retrain

    config = challenger_config(champion_run, overrides)
    logger.info("retraining %s on %s (rows before %s) into %s", champion_run, data_path, until, out)
    summary = retrain.retrain_run(champion_run, data_path, out, config, epochs=epochs, until=until)
    logger.info("challenger %s:\n%s", out, summary.table())
    if not summary.ok:
        raise RuntimeError(f"the retrain into {out} failed: {summary.manifest.get('status')}")
    return summary


def run_retrain_job(
    store_dir: str,
    job_id: str,
    champion: str,
    data_path: str,
    epochs: int | None,
    promote: bool,
    serve_cfg: dict[str, Any],
    ensemble_cfg: dict[str, Any],
) -> dict[str, Any]:
    """The body of a retraining job (a Ray task); see the module doc."""
    from fabray.config import ServeConfig
    from fabray.data.validate import load_validated

    cfg = ServeConfig.model_validate(serve_cfg)
    store = ModelStore(store_dir)
    job_dir = store.job_dir(job_id)
    started = time.time()
    write_status(store, job_id, status="running", started_at=utc_now())
    try:
        champion_run = store.verify(champion)
        df = load_validated(data_path)
        cut = holdout_cut(df)
        write_status(store, job_id, step="training", holdout_from=str(cut))
        out = job_dir / "run"
        _train_challenger(champion_run, data_path, cut, out, epochs, cfg.retrain_overrides)

        write_status(store, job_id, step="evaluating")
        old = evaluate_version(champion_run, df, cut, ensemble_cfg)
        new = evaluate_version(out, df, cut, ensemble_cfg)
        metric = cfg.promote_metric
        if metric not in new["metrics"]:
            raise BadInputError(f"serve.promote_metric {metric!r} is not a metric of this task: "
                                f"{sorted(new['metrics'])}")
        a, b = old["metrics"][metric], new["metrics"][metric]
        not_worse = b >= a - cfg.promote_tolerance or (np.isnan(a) and not np.isnan(b))
        same_contract = old["contract"] == new["contract"]
        version = store.import_run(out, note=f"retrained by {job_id} from {champion}")
        store.mark(version, evaluation={"champion": champion, "metric": metric, "champion_value": a,
                                        "challenger_value": b, "holdout_from": str(cut)})
        promoted = bool(promote and not_worse and same_contract)
        if promoted:
            store.promote(version, reason=f"{job_id}: {metric} {b:.4f} vs champion {champion} {a:.4f}")
        result = {
            "challenger": version, "champion": champion, "metric": metric,
            "champion_metrics": old["metrics"], "challenger_metrics": new["metrics"],
            "holdout_windows": new["windows"], "not_worse": bool(not_worse),
            "same_contract": same_contract, "promoted": promoted,
        }
        return write_status(store, job_id, status="succeeded", finished_at=utc_now(), step="done",
                            output=str(store.run_dir(version).relative_to(store.root)), result=result,
                            seconds=round(time.time() - started, 1))
    except Exception as err:  # noqa: BLE001 - the job's failure is its status
        logger.exception("retrain job %s failed", job_id)
        write_status(store, job_id, status="failed", finished_at=utc_now(),
                     error=public_error(err, store.root), traceback=traceback.format_exc(limit=5))
        raise


# ---------------------------------------------------------------------------- the daily retrain


def run_scheduled_retrain(
    store_dir: str | Path,
    data_path: str | Path,
    *,
    config: str | Path | None = None,
    epochs: int | None = None,
    promote: bool = True,
) -> dict[str, Any]:
    """The daily retrain (a Ray job: `python -m fabray.serve.retrain`, cluster/kuberay/
    rayjob-retrain.yaml): the store's live version is the champion, and the challenger goes
    through exactly the path of `POST /v1/retrain` (`run_retrain_job`: held-out evaluation of
    both, stored as a new version, promoted only if not worse and the request contract holds;
    the serving replicas then hot-swap, and refuse a version they cannot load). Its status is
    a job of the store, so `GET /v1/jobs/<id>` shows it like any other."""
    from fabray.config import load_config
    from fabray.serve.jobs import count_active, new_job

    cfg = load_config(config)
    store = ModelStore(store_dir)
    champion = store.live()
    if champion is None:
        raise BadInputError(f"the model store {store.root} has no live version to retrain")
    data = Path(data_path).expanduser().resolve()
    if not data.is_file():
        raise BadInputError(f"retraining data file not found: {data_path}")
    if count_active(store, "retrain"):
        raise BadInputError("a retrain of this store is already pending or running; not starting another")
    status = new_job(store, "retrain", model_version=champion, source=str(data), epochs=epochs, scheduled=True)
    logger.info("scheduled retrain %s of %s on %s", status["job_id"], champion, data)
    return run_retrain_job(str(store.root), status["job_id"], champion, str(data), epochs, promote,
                           cfg.serve.model_dump(mode="json"), cfg.ensemble.model_dump(mode="json"))


def main(argv: list[str] | None = None) -> int:
    """`python -m fabray.serve.retrain --store STORE --data FILE`: exit 0 when the job succeeded
    (promoted or not: see its status), 2 for bad input, 1 when it failed."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m fabray.serve.retrain", description=run_scheduled_retrain.__doc__)
    parser.add_argument("--store", required=True, help="the serving application's model store")
    parser.add_argument("--data", required=True, help="newest zone-minute data file")
    parser.add_argument("--config", default=None, help="fabray YAML config (serve.retrain_overrides, "
                        "serve.promote_metric, ensemble)")
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs (unset: the champion's config)")
    parser.add_argument("--no-promote", action="store_true", help="evaluate and store only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        status = run_scheduled_retrain(args.store, args.data, config=args.config, epochs=args.epochs,
                                       promote=not args.no_promote)
    except BadInputError as err:
        print(f"retrain: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - the job's status says why
        print(f"retrain: failed: {err}", file=sys.stderr)
        return 1
    print(json.dumps({k: status.get(k) for k in ("job_id", "status", "result")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
