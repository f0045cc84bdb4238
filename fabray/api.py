"""fabray as a Python library: `Forecaster`, one object per run directory.

In the style of NeuralForecast (`fit` / `predict` on DataFrames) and Ray's `Result` (an object
that holds where a run lives and what it produced). Every method calls the same library
functions as the command line, so a run made here is a run `fabray evaluate` or `fabray serve`
reads, and the other way round::

    from fabray import Forecaster

    fc = Forecaster.train(frame, "runs/r1", models=["lstm", "rule"], epochs=2)
    fc.ensemble(trials=16)
    fc.predict(recent_minutes)            # DataFrame: zone, end_time, scores, probability, decision
    fc.evaluate("test.parquet")["ensemble"]["lead_score"]
    fc = Forecaster.load("runs/r1")       # later, in another process

A DataFrame handed to `train` is written beside the run as `<out>.data.parquet` (e.g.
`runs/r1.data.parquet`): the run's manifest names its data file by path and fingerprint, and
`ensemble` / `evaluate` read its validation split from there, so the file must outlive the call.
A DataFrame handed to `evaluate` is written as `<run>.test.parquet` for the same reason (the
evaluation JSON names its data file).

Ray: `train` and `ensemble` use the Ray already initialized in this process (a notebook's, a
test's), else start an embedded local one for the call (`num_cpus`) or join `address` /
RAY_ADDRESS, exactly as the CLI does (`fabray.ray_session.ray_session`). `predict` and
`evaluate` need no Ray.

Why one file of ~450 lines: it is one class, the library's public face, and its methods only
delegate to the wings (`fabray.train`, `fabray.ensemble.fit`, `fabray.evaluate`); close to half
its lines are the docstrings and examples users read with `help(Forecaster)`, which a split
would scatter without making any method shorter.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fabray.errors import BadInputError

logger = logging.getLogger(__name__)

os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # the training backend, as the CLI sets it

#: Columns of `Forecaster.predict`'s frame before the per-model score columns.
PREDICT_KEYS = ("zone", "end_time")
#: `Forecaster.predict(..., ensemble=...)`: how the ensemble probability is formed.
ENSEMBLE_MODES = ("dynamic", "static")


def _data_file(data: Any, path_if_frame: Path) -> Path:
    """A data path as given, or a DataFrame written to `path_if_frame` (Parquet, atomically)."""
    import pandas as pd

    if isinstance(data, (str, os.PathLike)):
        return Path(data)
    if isinstance(data, pd.DataFrame):
        from fabray.data.io import write_table

        written = write_table(data, path_if_frame)
        logger.info("wrote the given frame (%d rows) to %s", len(data), written)
        return written
    raise BadInputError(f"data must be a file path or a pandas DataFrame. Received: {type(data).__name__}")


def _train_data(data: Any, out: str | Path) -> tuple[Path, dict[str, Any] | None]:
    """`train`'s data as a file path, and the SQL source's description (None for a file or frame).

    A file path is used as it is; a DataFrame is written, and a SQL source validated, into the
    Parquet snapshot `<out>.data.parquet` beside the run (after checking the run directory is
    free): the run's later steps find their data again by that file's fingerprint."""
    from fabray.data import io
    from fabray.run import check_run_dir_free

    if isinstance(data, io.SqlSource):
        from fabray.data.snapshot import snapshot

        run = check_run_dir_free(out)
        return snapshot(data, run.with_name(f"{run.name}.data.parquet")), data.to_dict()
    if isinstance(data, (str, os.PathLike)):
        return Path(data), None
    run = check_run_dir_free(out)  # before the frame is written beside it
    return _data_file(data, run.with_name(f"{run.name}.data.parquet")), None


def _clean_frame(frame: Any) -> Any:
    """A zone-minute frame or file, validated against the data contract and in its clean form
    (column order, dtypes, rows sorted by zone and time); BadInputError listing every error."""
    import pandas as pd

    from fabray.data import validate

    if isinstance(frame, (str, os.PathLike)):
        return validate.load_validated(frame)
    if not isinstance(frame, pd.DataFrame):
        raise BadInputError(f"frame must be a DataFrame or a file path. Received: {type(frame).__name__}")
    # The validator's own clean form: the one check of the data contract (`fabray validate`'s).
    report, clean = validate._validate(frame, validate.ColumnSpec(), validate.DEFAULT_MAX_ROWS)  # noqa: SLF001
    if not report.ok or clean is None:
        raise BadInputError(report.format(source="frame"))
    return clean


class Forecaster:
    """A trained fabray run: its directory, its models and (after `ensemble`) its ensemble.

    Attributes:
        run_dir: absolute path of the run directory.
        summary: the `RunSummary` of `train` (per-model status and validation metrics); None for
            a loaded run.
        last_fit: the `EnsembleFit` of the last `ensemble` call, else None.
        last_evaluation: the `EvaluationResult` of the last `evaluate` call, else None.
        last_mlflow_run: {"run_id", "uri"} of the last `evaluate` logged to MLflow, else None.

    Example:
        >>> fc = Forecaster.load("runs/r1")                      # doctest: +SKIP
        >>> fc.model_names                                       # doctest: +SKIP
        ('lstm', 'rule')
    """

    def __init__(self, run_dir: str | Path, *, summary: Any = None) -> None:
        self.run_dir = Path(run_dir).expanduser().resolve()
        self.summary = summary
        self.last_fit: Any = None
        self.last_evaluation: Any = None
        self.last_mlflow_run: dict[str, str] | None = None
        self._predictor: Any = None

    def __repr__(self) -> str:
        return f"Forecaster(run_dir={str(self.run_dir)!r})"

    # ------------------------------------------------------------------ construction

    @classmethod
    def train(
        cls,
        data: Any,
        out: str | Path,
        models: Sequence[str] | None = None,
        config: Any = None,
        epochs: int | None = None,
        *,
        use_gpu: str | None = None,
        budget: str | float | None = None,
        mlflow: str | None = None,
        address: str | None = None,
        num_cpus: int | None = None,
        worker_logs: bool = False,
        check: bool = True,
    ) -> Forecaster:
        """Train the model zoo into a new run directory `out` (`fabray train`, which calls this).

        Args:
            data: zone-minute data: a Parquet/CSV path; a DataFrame (then written to
                `<out>.data.parquet` beside the run, which later steps read again); or a
                `fabray.data.io.SqlSource` (validated into that same Parquet snapshot; the
                manifest names the database beside it).
            out: the new run directory (must not exist or be empty; never overwritten).
            models: model names (`fabray.models.MODELS`); None: the config's `train.models`.
            config: None (defaults), a YAML path, a mapping shaped like the YAML, or a
                `FabrayConfig`.
            epochs: maximum epochs; None: the config's `train.epochs`.
            use_gpu: "auto", "true" or "false"; None: the config's `train.use_gpu`.
            budget: wall-clock training budget ("60m", "1h30m", or minutes); None: the config's.
            mlflow: log the run to this MLflow tracking URI (needs the mlflow extra); None: the
                config's `tracking.mlflow_uri`.
            address, num_cpus: the Ray to use when none is initialized in this process (as
                `fabray train --address/--num-cpus`).
            worker_logs: stream Ray's worker output to this console (`fabray -v train`).
            check: raise RuntimeError when every model failed (False: return the Forecaster
                anyway; its `summary` says what failed, as the CLI prints it).

        Returns:
            A Forecaster on the run; `summary` holds each model's status and metrics. Raises
            BadInputError on bad input (before anything is written) and RuntimeError when every
            model failed (unless `check=False`); a partial run (some models failed) is returned
            with a warning.

        Example:
            >>> from fabray.data.simulate import simulate_preset        # doctest: +SKIP
            >>> fc = Forecaster.train(simulate_preset("tiny", seed=3), "runs/r1",
            ...                       models=["lstm", "rule"], epochs=2)  # doctest: +SKIP
            >>> fc.summary.manifest["status"]                            # doctest: +SKIP
            'complete'
        """
        from fabray.config import as_config
        from fabray.ray_session import ray_session
        from fabray.tracking import with_mlflow_uri
        from fabray.train.driver import train_models
        from fabray.train.prepare import apply_cli_overrides, prepare_run

        if num_cpus is not None and num_cpus < 1:
            raise BadInputError(f"num_cpus must be >= 1. Received: {num_cpus}")
        if models is not None:
            models = [str(m).strip() for m in models]
            if not models or not all(models):
                raise BadInputError(f"models names no model. Received: {models!r}")
        cfg = apply_cli_overrides(as_config(config), models=models, epochs=epochs, use_gpu=use_gpu,
                                  budget=budget)
        cfg = with_mlflow_uri(cfg, mlflow)  # no mlflow extra → BadInputError before any work
        data_path, source = _train_data(data, out)
        try:
            job = prepare_run(data_path, out, cfg)  # bad input → BadInputError before Ray starts
        except BaseException:
            if source is not None:
                data_path.unlink(missing_ok=True)  # the snapshot of a run that never started
            raise
        if source is not None:
            job.data_info["source"] = source  # the manifest names the database beside the snapshot
        with ray_session(address, num_cpus=num_cpus, worker_logs=worker_logs) as session:
            summary = train_models(job, can_autoscale=session.joined)
        status = summary.manifest["status"]
        if status == "failed" and check:
            raise RuntimeError(f"every model failed in {summary.run_dir}:\n{summary.table()}")
        if not summary.ok:
            logger.warning("run %s is %s: %s failed", summary.run_dir, status, summary.failed)
        return cls(summary.run_dir, summary=summary)

    @classmethod
    def load(cls, run_dir: str | Path) -> Forecaster:
        """Open a run directory written by `Forecaster.train` or `fabray train`.

        The models are loaded (and checked against the manifest) here, so a damaged or
        incomplete run fails now with a BadInputError naming the file, not at `predict`.

        Example:
            >>> fc = Forecaster.load("runs/r1")     # doctest: +SKIP
            >>> fc.has_ensemble                     # doctest: +SKIP
            True
        """
        fc = cls(run_dir)
        _ = fc.predictor
        return fc

    # ------------------------------------------------------------------ what the run holds

    @property
    def predictor(self) -> Any:
        """The run's `fabray.predictor.RunPredictor` (loaded on first use, reloaded after
        `ensemble`)."""
        if self._predictor is None:
            from fabray.predictor import RunPredictor

            self._predictor = RunPredictor.load(self.run_dir)
        return self._predictor

    @property
    def manifest(self) -> dict[str, Any]:
        """The run's manifest as last loaded."""
        return self.predictor.manifest

    @property
    def model_names(self) -> tuple[str, ...]:
        """The models that trained successfully, in manifest order."""
        return tuple(self.predictor.model_names)

    @property
    def has_ensemble(self) -> bool:
        """Whether `ensemble` (or `fabray ensemble`) has fitted the run's ensemble."""
        return self.predictor.ensemble is not None

    # ------------------------------------------------------------------ steps

    def ensemble(
        self,
        trials: int | None = None,
        *,
        search: str = "tpe",
        seed: int = 0,
        config: str | Path | None = None,
        train_data: str | Path | None = None,
        address: str | None = None,
        num_cpus: int | None = None,
    ) -> Any:
        """Fit the dynamic ensemble with Ray Tune on the validation split (`fabray ensemble`).

        Writes `ensemble.json` and `ensemble_trials.csv` into the run and records them in the
        manifest; `predict` and `evaluate` use them from then on (`fabray ensemble` calls this).
        `trials`: Tune trials (None: the config's `ensemble.tune_trials`); `config`: a YAML whose
        `ensemble` section replaces the run's; `train_data`: the run's data file if it moved.

        Returns:
            The `fabray.ensemble.fit.EnsembleFit` (winner, validation metrics, the trials
            as a DataFrame); also kept as `last_fit`.

        Example:
            >>> fit = fc.ensemble(trials=8)          # doctest: +SKIP
            >>> fit.winner, round(fit.val_metrics["f1"], 3)  # doctest: +SKIP
            ('trial_0005', 0.41)
        """
        from fabray.ensemble.fit import fit_ensemble

        fit = fit_ensemble(
            self.run_dir, trials=trials, search=search, seed=seed, config_path=config,
            train_data=train_data, address=address, num_cpus=num_cpus,
        )
        self._predictor = None  # ensemble.json and the manifest changed
        self.last_fit = fit
        return fit

    def predict(self, frame: Any, *, latest: bool = False, ensemble: str = "dynamic", scorer: Any = None) -> Any:
        """Score every window of a zone-minute frame (or data file) with every model and the
        ensemble.

        A window ends at each minute that has `lookback` minutes of history in its zone; the
        frame goes through the data contract's validation first, and the context inputs (the
        neighbours' features, calendar, plans) are built from the frame itself
        (`RunPredictor.prepare`).

        Args:
            frame: a DataFrame with the data contract's columns (as `fabray simulate` writes),
                or a Parquet/CSV path.
            latest: only each zone's last window (the forecast for "now").
            ensemble: "dynamic" (default): the fitted dynamic ensemble replayed over the frame's
                windows in time order, as `fabray evaluate` does: each zone starts from the
                fitted base weights, and a window's outcome, where the frame already holds it,
                updates its zone's weights `feedback_lag` windows later. "static": the fitted
                static ensemble's fixed weights. Before `ensemble()` ran, the config's untuned
                defaults are used (logged).
            scorer: how every model scores the windows, `f(prepared, ends) -> {model: [W]}`;
                None: in this process (`RunPredictor.score_prepared`). `fabray predict` passes
                `fabray.batch_predict.RayDataScorer` (Ray Data actors); the rest is the same.

        Returns:
            A DataFrame, one row per window (zone, then time order): `zone`, `end_time` (the
            window's last minute), one `score_<model>` column per model (probabilities of a
            delay event), then `probability`, `threshold` and `decision` (probability >=
            threshold: a delay event is expected within the next `horizon` minutes).

        Example:
            >>> out = fc.predict(recent, latest=True)  # doctest: +SKIP
            >>> out[["zone", "end_time", "probability", "decision"]]  # doctest: +SKIP
              zone            end_time  probability  decision
            0  Z01 2026-01-03 23:59:00        0.081     False
        """
        import numpy as np
        import pandas as pd

        if ensemble not in ENSEMBLE_MODES:
            raise BadInputError(f"ensemble must be one of {ENSEMBLE_MODES}. Received: {ensemble!r}")
        predictor = self.predictor
        prepared = predictor.prepare(_clean_frame(frame))
        ends = np.asarray(prepared.splits["all"], dtype=np.int64)  # [W] (zone, time) order
        if len(ends) == 0:
            raise BadInputError(
                f"frame: no complete window; each zone needs at least lookback = "
                f"{predictor.lookback} minutes. Received: {prepared.n_rows} rows"
            )
        score = predictor.score_prepared if scorer is None else scorer
        scores = score(prepared, ends)  # {model: [W]}
        out = pd.DataFrame({
            "zone": np.asarray(prepared.zones, dtype=object)[prepared.zone_codes[ends]],
            "end_time": pd.to_datetime(prepared.timestamps[ends]),
            **{f"score_{name}": scores[name] for name in predictor.model_names},
        })
        prob, threshold = self._combine(prepared, ends, scores, ensemble)
        out["probability"] = prob
        out["threshold"] = threshold
        out["decision"] = prob >= threshold
        if latest:
            out = out.groupby("zone", sort=False).tail(1)
        return out.reset_index(drop=True)

    def _combine(self, prepared: Any, ends: Any, scores: Mapping[str, Any], mode: str) -> tuple[Any, float]:
        """(ensemble probability [W], its decision threshold)."""
        import numpy as np

        from fabray.ensemble import EnsembleParams, replay

        predictor = self.predictor
        names = predictor.model_names
        spec = predictor.ensemble
        if spec is not None:
            params = spec.params if mode == "dynamic" else spec.static_params
            lag = spec.feedback_lag
        else:
            from fabray.run_data import run_config

            cfg = run_config(predictor).ensemble
            params = cfg.to_params(names)
            if mode == "static":
                params = EnsembleParams.static([1.0] * len(names), threshold=params.threshold)
            lag = cfg.feedback_lag or predictor.horizon
            logger.warning("run %s has no fitted ensemble (call ensemble()): the %s ensemble uses the "
                           "config's untuned defaults", predictor.version, mode)
        matrix = np.stack([scores[n] for n in names], axis=1)  # [W, M]
        outcomes = prepared.target[ends].astype(np.float64)  # [W], NaN where the frame lacks it
        prob, _ = replay(matrix, outcomes, prepared.zone_codes[ends], params, lag)
        return prob, float(params.threshold)

    def evaluate(
        self,
        test_data: Any,
        report_dir: str | Path | None = None,
        *,
        json_path: str | Path | None = None,
        config: str | Path | None = None,
        train_data: str | Path | None = None,
        mlflow: str | None = None,
    ) -> dict[str, Any]:
        """Evaluate every model, both ensembles and the baselines on test data (`fabray evaluate`).

        Args:
            test_data: a Parquet/CSV path (the run's own training file → its test split only),
                a DataFrame (written to `<run>.test.parquet` beside the run, which the
                result names), or a `fabray.data.io.SqlSource` (validated into a temporary
                Parquet file; the result names the database).
            report_dir: also write report.md and the PNG plots here.
            json_path: also write the result as JSON here (as `--json`).
            config: a YAML whose `roi` section sets the ROI parameters (and `tracking`, MLflow).
            train_data: the run's training data if it moved.
            mlflow: log the metrics and report to this MLflow tracking URI (needs the mlflow
                extra); None: the config's `tracking.mlflow_uri`. The MLflow run is then in
                `last_mlflow_run` ({"run_id", "uri"}).

        Returns:
            The same dict as `fabray evaluate --json`: "models", "ensemble", "static_ensemble",
            "baselines" (each metrics dict with its "lead" object and "lead_score"), "headline",
            "leaderboard", "roi", "notes", ... The `fabray.evaluate.EvaluationResult` itself
            is kept as `last_evaluation` (`fabray evaluate` prints its leaderboard).

        Example:
            >>> result = fc.evaluate("test.parquet")                  # doctest: +SKIP
            >>> result["headline"], result["leaderboard"][0]["name"]  # doctest: +SKIP
            ('lead_score', 'ensemble')
        """
        from fabray.config import load_config
        from fabray.data.io import SqlSource
        from fabray.data.snapshot import local_file
        from fabray.evaluate import evaluate_run, write_outputs
        from fabray.tracking import log_evaluation, tracking_uri

        cfg = load_config(config)  # defaults without a config
        uri = tracking_uri(mlflow, cfg)  # no mlflow extra → BadInputError before any work
        if isinstance(test_data, SqlSource):
            data: Any = test_data
        else:
            data = _data_file(test_data, self.run_dir.with_name(f"{self.run_dir.name}.test.parquet"))
        with local_file(data) as path:  # a SQL source: validated into a temporary Parquet file
            result = evaluate_run(self.run_dir, path, config_path=config, train_data=train_data)
        if isinstance(data, SqlSource):
            result.data["path"] = str(data)
        write_outputs(result, json_path=json_path, report_dir=report_dir)
        self.last_evaluation = result
        self.last_mlflow_run = None
        payload = result.to_json()
        if uri:
            run_id = log_evaluation(self.run_dir, payload, uri, experiment=cfg.tracking.experiment,
                                    report_dir=report_dir)
            self.last_mlflow_run = {"run_id": run_id, "uri": uri}
        return payload


__all__ = ["Forecaster", "ENSEMBLE_MODES"]
