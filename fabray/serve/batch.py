"""Batch scoring jobs through Ray Data (DESIGN §6 "batch").

A job scores either a zone-minute data file (the latest window of every zone, or every complete
window) or windows sent in the request body, with a pinned store version: the one the
real-time path serves when the job is submitted. The windows are never materialized in the
driver: the raw series (or the request's windows) is put in the object store once, Ray Data
shards the window *indices*, and its tasks (`GatherAndScore`) gather each batch of windows by
index and send it to the `BatchScorer` deployment: the predictor class again, warm (no model
load per job) and apart from the real-time replicas. The ensemble combines the scores with the live
weights of each zone at submission (a snapshot from the keeper), so a batch answer equals what
/v1/predict would have said at that moment. The result is one Parquet file:

    zone, end_time (data files only), window (index), score_<model>..., probability, decision,
    degraded, scored (False: no finite answer, probability NaN, never an alarm), model_version

Job status lives in the store (`STORE/jobs/<id>/status.json`), written atomically by the job.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fabray.errors import BadInputError
from fabray.files import utc_now
from fabray.serve.jobs import public_error
from fabray.run import Run
from fabray.serve.store import CorruptArtifactError, ModelStore

logger = logging.getLogger(__name__)

OUTPUT = "scores.parquet"


def write_status(store: ModelStore, job_id: str, **fields: Any) -> dict[str, Any]:
    """Merge `fields` into the job's status.json (atomic)."""
    path = store.job_dir(job_id) / "status.json"
    status = store.read_json(path) or {}
    status.update(fields)
    store.write_json(path, status)
    return status


class GatherAndScore:
    """Ray Data UDF: gathers a batch of windows by index and has the warm BatchScorer deployment
    score them with the job's pinned version (no model is loaded per job).

    `source` is a one-element list holding an object ref (Ray Data does not resolve refs in
    constructor args, so they are fetched here): ("series", features [N, F] raw) with the
    indices being window END rows, or ("windows", windows [N, L, F] raw) with plain indices.
    """

    def __init__(self, scorer: Any, version: str, lookback: int, source: list) -> None:
        import ray

        self.kind, self.data = ray.get(source[0])
        self.scorer, self.version, self.lookback = scorer, version, lookback

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from fabray.data.windows import gather_windows

        index = np.asarray(batch["index"], dtype=np.int64)  # [B]
        if self.kind == "series":
            x = gather_windows(self.data, index, self.lookback)  # [B, L, F] raw
        else:
            x = self.data[index]  # [B, L, F] raw
        out = self.scorer.score_batch.remote(self.version, x).result()
        result = {"index": index, "score__rules": np.asarray(out["rules"], dtype=np.float64)}
        for m, name in enumerate(out["models"]):
            result[f"score_{name}"] = np.asarray(out["scores"][:, m], dtype=np.float64)
        return result


def _stored_run(store: ModelStore, version: str) -> Run:
    """A stored version's run (fabray.run.Run); a manifest that does not read is a damaged artifact."""
    try:
        return Run.open(store.run_dir(version), verify=False)
    except BadInputError as err:
        raise CorruptArtifactError(f"version {version}: {err}") from err


def _stored_preprocessing(opened: Run, version: str) -> dict[str, Any]:
    """A stored version's shared preprocessing (`Run.preprocessing`); unreadable = a damaged artifact."""
    try:
        return opened.preprocessing()
    except BadInputError as err:
        raise CorruptArtifactError(f"version {version}: {err}") from err


def _lookback(store: ModelStore, version: str) -> int:
    return int(_stored_preprocessing(_stored_run(store, version), version)["lookback"])


def _series_source(store: ModelStore, version: str, path: str, all_windows: bool) -> tuple[Any, np.ndarray, dict[str, Any]]:
    """Read, validate and prepare a data file with the version's scaler: (features [N, F]
    raw, window end rows [W], columns for the output)."""
    from fabray import schema
    from fabray.data.context import ContextSpec
    from fabray.serve.validation import check_values
    from fabray.data.scaler import Scaler
    from fabray.data.validate import load_validated
    from fabray.data.windows import ALL, latest_window_ends, prepare

    opened = _stored_run(store, version)
    prep = _stored_preprocessing(opened, version)
    task = opened.task(prep)
    df = load_validated(path)
    check_values(df[list(schema.FEATURES)].to_numpy(dtype=np.float64), schema.FEATURES, where=Path(path).name)
    prepared = prepare(df, task, None, scaler=Scaler.from_dict(prep["scaler"]), nominal_s=prep["nominal_s"],
                       context=ContextSpec.stored(prep))
    if all_windows:
        ends = prepared.splits[ALL]
    else:
        ends = np.asarray(sorted(latest_window_ends(prepared).values()), dtype=np.int64)
    if ends.size == 0:
        raise BadInputError(f"{path}: no zone has {task.lookback} consecutive minutes: nothing to score")
    columns = {
        "zone": np.asarray(prepared.zones, dtype=object)[prepared.zone_codes[ends]],
        "end_time": prepared.timestamps[ends],
    }
    return prepared.features, ends, columns


def combine_scores(scores: np.ndarray, rules: np.ndarray, weights: np.ndarray,
                   degraded: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ensemble probabilities as the real-time path makes them, window by window: scores [W, M],
    rules [W], weights [W, M], degraded [W] → (probability [W], degraded [W], scored [W]).

    A window with a non-finite member score is degraded (the rules answer it, as in real time);
    one whose answer is still not finite is `scored` False with probability NaN (never an alarm)."""
    scores = np.asarray(scores, dtype=np.float64)
    rules = np.asarray(rules, dtype=np.float64)
    finite = np.isfinite(scores).all(axis=1)  # [W]
    degraded = np.asarray(degraded, dtype=bool) | ~finite
    with np.errstate(invalid="ignore"):
        ensembled = (weights * np.where(np.isfinite(scores), scores, 0.0)).sum(axis=1)  # [W]
    prob = np.where(degraded, rules, ensembled)
    scored = np.isfinite(prob)
    return np.where(scored, prob, np.nan), degraded, scored


def run_batch_job(
    store_dir: str,
    job_id: str,
    version: str,
    spec: Mapping[str, Any],
    weights: Mapping[str, Mapping[str, float]],
    threshold: float,
    model_names: Sequence[str],
    scorer: Any,
    batch_size: int,
) -> dict[str, Any]:
    """The body of a batch job (a Ray task): score, ensemble, write Parquet, update status.

    spec: {"path": str, "all_windows": bool} or {"windows": ref-list, "zones": [...],
    "degraded": [...]}; weights: zone → model → weight (the keeper's snapshot).
    """
    import pandas as pd
    import ray

    from fabray.data.io import write_table

    store = ModelStore(store_dir)
    started = time.time()
    write_status(store, job_id, status="running", started_at=utc_now())
    try:
        if spec.get("path"):
            features, index, columns = _series_source(store, version, spec["path"], bool(spec.get("all_windows")))
            source = [ray.put(("series", features))]
            degraded = np.zeros(index.size, dtype=bool)
        else:
            windows = ray.get(spec["windows"][0])  # [N, L, F] raw, already checked
            source = [ray.put(("windows", windows))]
            index = np.arange(windows.shape[0], dtype=np.int64)
            columns = {"zone": np.asarray(spec["zones"], dtype=object)}
            degraded = np.asarray(spec["degraded"], dtype=bool)

        lookback = _lookback(store, version)
        # from_items builds its blocks here (ray.put): no read task that would need a whole free CPU
        blocks = max(1, min(64, -(-index.size // batch_size)))
        ds = ray.data.from_items([{"index": int(i)} for i in index], override_num_blocks=blocks)
        scored = ds.map_batches(
            GatherAndScore,
            fn_constructor_args=(scorer, version, lookback, source),
            batch_size=batch_size,
            concurrency=2,  # one gathers while the other waits for the scorer
            num_cpus=0.1,
        ).to_pandas()
        scored = scored.set_index("index").loc[index]  # back in the order asked
        out = pd.DataFrame(columns)
        names = list(model_names)
        scores = np.stack([scored[f"score_{n}"].to_numpy() for n in names], axis=1)  # [W, M]
        for m, name in enumerate(names):
            out[f"score_{name}"] = scores[:, m]
        rules = scored["score__rules"].to_numpy()
        zone_w = np.array([[weights.get(z, {}).get(n, np.nan) for n in names] for z in out["zone"]])  # [W, M]
        default = np.asarray([weights.get("*", {}).get(n, 1.0 / len(names)) for n in names])
        zone_w = np.where(np.isnan(zone_w), default, zone_w)
        prob, degraded, scored_ok = combine_scores(scores, rules, zone_w, degraded)
        out["window"] = np.arange(len(index))
        out["probability"] = prob
        out["decision"] = scored_ok & (prob >= threshold)
        out["degraded"] = degraded
        out["scored"] = scored_ok
        out["model_version"] = version
        output = store.job_dir(job_id) / OUTPUT
        write_table(out, output)
        return write_status(
            store, job_id, status="succeeded", finished_at=utc_now(), output=str(output.relative_to(store.root)),
            n_windows=int(len(index)), seconds=round(time.time() - started, 3),
        )
    except Exception as err:  # noqa: BLE001 - the job's failure is its status
        logger.exception("batch job %s failed", job_id)
        write_status(store, job_id, status="failed", finished_at=utc_now(),
                     error=public_error(err, store.root), traceback=traceback.format_exc(limit=5))
        raise
