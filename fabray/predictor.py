"""Score windows with a trained run: every model, the stored scaler, the fitted ensemble.

Windows are RAW (the units of the data file): every model z-scores its input in its first layer
(`fabray.models.layers.scaling.FeatureScaling`). `RunPredictor.score` is the one scoring call.

Runs of format 1 (manifest `format_version` 1, or none) stored models that take windows
z-scored outside them; they still load: each is wrapped at load as
`FeatureScaling(the run's stored scaler) → the stored model`, so it takes raw windows like a
format-2 model (the stored `rule` model un-scales internally, as it always did).

`RunPredictor.load(run_dir)` reads a run directory written by `fabray train` (and, when it has
been run, `fabray ensemble`): the manifest, every model whose status is "ok", the scaler and
nominal transport times (`models/<name>/preprocessing.json`), the task, and `ensemble.json`.
It refuses, with a `BadInputError` naming the file, a run whose listed files are missing,
whose models disagree on preprocessing, or whose files do not match a checksum the manifest
records.

Checksums: wherever the manifest has a mapping named `checksums` (at the top level, inside a
model's entry, or inside the `ensemble` entry) of `{relative path: "sha256:<hex>"}`, the file is
hashed and compared before it is used. Files without a recorded checksum are only checked to
exist.

Speed (DESIGN §10): the whole zoo is called through ONE `tf.function` with a fixed
`input_signature` `[None, lookback, n_features]` float32 (every model inside, outputs stacked),
traced and run once at load (warm-up), so the first request pays no tracing, later calls never
retrace for a new batch size, and a request costs one call, not one per model. Eager `model(x)`
was ~60× slower.

No Ray here: the serving deployment, the Tune driver and `fabray evaluate` wrap this class.

Why one file of ~540 lines: `RunPredictor` is the one reader of a trained run's models for
every scorer (serving, evaluate, Tune, batch predict); its parts share the loaded state. The
format-1 load path (about 60 lines) goes when format-1 runs are retired.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fabray import schema
from fabray.config import TaskConfig
from fabray.data.scaler import Scaler
from fabray.errors import BadInputError
from fabray.numeric import sigmoid
from fabray.run import MANIFEST_VERSION, Run

logger = logging.getLogger(__name__)

ENSEMBLE_FILE = "ensemble.json"
ENSEMBLE_FORMAT = "fabray-ensemble"
ENSEMBLE_FORMAT_VERSION = 1
#: Windows per model call in `score_prepared` (a [4096, 100, 12] float32 batch is ~20 MB).
DEFAULT_BATCH_SIZE = 4096
#: `score_prepared` shows a progress bar from this many batches on (when `progress` is None).
PROGRESS_MIN_BATCHES = 8


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BadInputError(f"{what}: file missing: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BadInputError(f"{what}: {path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise BadInputError(f"{what}: {path} must hold a JSON object. Received: {type(data).__name__}")
    return data


@dataclass(frozen=True)
class EnsembleSpec:
    """What `ensemble.json` holds: the fitted dynamic ensemble and its static counterpart."""

    params: Any  # fabray.ensemble.EnsembleParams
    state: dict[str, Any]  # ServedEnsemble.to_state() after replaying the validation split
    static_params: Any  # EnsembleParams of the static ensemble (half_life = inf)
    model_names: tuple[str, ...]
    feedback_lag: int
    model_thresholds: dict[str, float]  # each model's validation threshold
    raw: dict[str, Any]  # the whole file, for reports
    model_alarms: dict[str, Any] = field(default_factory=dict)  # name → fabray.alarm.AlarmPolicy

    def model_alarm(self, name: str, default_threshold: float) -> Any:
        """The model's validation alarm policy (older files: its plain threshold)."""
        from fabray.alarm import AlarmPolicy

        if name in self.model_alarms:
            return self.model_alarms[name]
        return AlarmPolicy(float(self.model_thresholds.get(name, default_threshold)))


class RunPredictor:
    """Every successfully trained model of one run, ready to score raw windows.

    Attributes:
        version: the run's id (the manifest's `run_id`, else the run directory's name).
        run_dir: absolute path of the run.
        model_names: models loaded, in manifest order (Keras models and LightGBM members).
        keras_names: the Keras models among them (the compiled zoo's rows).
        zones: zones the run was trained on (their nominal transport times are known).
        lookback, n_features, horizon: the models' input window shape (n_features: the 12
            observed features plus the context columns) and the target horizon.
        context: the run's context inputs (`fabray.data.context.ContextSpec`), None without.
        task: the run's `TaskConfig` ("event", the only task: scores are probabilities).
        scaler: the training split's feature statistics (the models' first layer holds them).
        format_version: the run's format (1: its models were wrapped at load to take raw windows).
        nominal_s: nominal transport time per zone, seconds.
        ensemble: the fitted `EnsembleSpec`, or None before `fabray ensemble` ran.
        manifest: the manifest as read.
    """

    def __init__(
        self,
        *,
        version: str,
        run_dir: Path,
        manifest: dict[str, Any],
        models: dict[str, Any],
        scaler: Scaler,
        nominal_s: dict[str, float],
        zones: tuple[str, ...],
        task: TaskConfig,
        lookback: int,
        n_features: int,
        ensemble: EnsembleSpec | None = None,
        context: Any = None,
        format_version: int = MANIFEST_VERSION,
        warm_up: bool = True,
    ) -> None:
        if not models:
            raise BadInputError(f"run {run_dir}: no model to score with")
        self.version = version
        self.run_dir = run_dir
        self.manifest = manifest
        self.model_names: tuple[str, ...] = tuple(models)
        self.scaler = scaler
        self.nominal_s = dict(nominal_s)
        self.zones = tuple(zones)
        self.task = task
        self.lookback = int(lookback)
        self.n_features = int(n_features)
        self.horizon = int(task.horizon)
        self.ensemble = ensemble
        self.context = context
        self.format_version = int(format_version)
        self._models = dict(models)
        # LightGBM members (`fabray.models.gbt.GBTMember`) score beside the Keras graph, not in it.
        self._trees = {n: m for n, m in self._models.items() if _is_tree_member(m)}
        self.keras_names: tuple[str, ...] = tuple(n for n in self.model_names if n not in self._trees)
        self._zoo = self._compile_zoo()
        if warm_up:
            self.warm_up()

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, run_dir: str | Path, *, warm_up: bool = True) -> RunPredictor:
        """Load a run directory; BadInputError when it is not a complete, intact run."""
        import keras

        import fabray.models  # noqa: F401 - registers the custom layers for load_model

        opened = Run.open(run_dir, verify=False)  # each file is checked as it is used (opened.file)
        run, manifest, verify = opened.path, opened.manifest, opened.file
        entries = manifest.get("models")
        if not isinstance(entries, Mapping) or not entries:
            raise BadInputError(f"{opened.manifest_path}: lists no models")
        ok = [name for name, entry in entries.items() if entry.get("status") == "ok"]
        skipped = {name: entry.get("status") for name, entry in entries.items() if name not in ok}
        if skipped:
            logger.warning("run %s: skipping models that did not train: %s", run.name, skipped)
        if not ok:
            raise BadInputError(f"run {run}: no model trained successfully. Received statuses: {skipped}")

        first = opened.preprocessing()  # shared by every trained model, or refused
        models: dict[str, Any] = {}
        tree_files: dict[str, tuple[Path, Path]] = {}
        for name in ok:
            if not entries[name].get("model"):
                raise BadInputError(f"{opened.manifest_path}: model {name!r} has no 'model' file listed")
            model_path = verify(entries[name]["model"])
            if entries[name].get("kind") == "lightgbm":  # fabray.models.gbt: loaded once the scaler is read
                if not entries[name].get("config"):
                    raise BadInputError(f"{opened.manifest_path}: model {name!r} has no 'config' file listed")
                tree_files[name] = (model_path, verify(entries[name]["config"]))
                models[name] = None
                continue
            try:
                models[name] = keras.saving.load_model(model_path, compile=False)
            except Exception as err:  # noqa: BLE001 - a damaged file is bad input, not a crash
                raise BadInputError(f"model {name}: cannot load {model_path}: {err}") from err

        if list(first.get("features", [])) != list(schema.FEATURES):
            raise BadInputError(
                f"run {run}: trained on features {first.get('features')}, expected {list(schema.FEATURES)}"
            )
        task = opened.task(first)
        from fabray.data.context import ContextSpec

        scaler = Scaler.from_dict(first["scaler"])
        context = ContextSpec.stored(first)
        expected_columns = (*schema.FEATURES, *(context.column_names() if context else ()))
        if tuple(scaler.features) != expected_columns:
            raise BadInputError(
                f"run {run}: its scaler covers {list(scaler.features)}, its context inputs need "
                f"{list(expected_columns)}"
            )
        lookback, n_features = int(first["lookback"]), len(scaler.features)
        format_version = opened.typed.format_version
        if format_version < MANIFEST_VERSION:  # format 1: the models take z-scored windows
            from fabray.models.layers.scaling import prepend_scaling

            logger.info("run %s has run format %d: its models get the stored scaler as first layer",
                        run.name, format_version)
            models = {name: prepend_scaling(model, (scaler.mean, scaler.scale)) for name, model in models.items()
                      if name not in tree_files}
        if tree_files:
            from fabray.models.gbt import GBTMember

            for name, (model_path, config_path) in tree_files.items():
                models[name] = GBTMember.load(model_path, config_path, scaler, lookback, n_features)
        for name, model in models.items():
            shape = tuple(model.input_shape[1:])
            if shape != (lookback, n_features):
                raise BadInputError(
                    f"model {name}: takes windows of shape {shape}, the run's windows are "
                    f"{(lookback, n_features)}"
                )

        ensemble = None
        ens_entry = manifest.get("ensemble")
        if isinstance(ens_entry, Mapping) and ens_entry.get("file"):
            ensemble = _load_ensemble(verify(ens_entry["file"]), tuple(ok),
                                      scaler if format_version < MANIFEST_VERSION else None)

        version = str(manifest.get("run_id") or run.name)
        logger.info("loaded run %s: models %s%s", version, ok, ", fitted ensemble" if ensemble else "")
        return cls(
            version=version, run_dir=run, manifest=manifest, models=models,
            scaler=scaler, nominal_s=first["nominal_s"],
            zones=tuple(first.get("zones") or first["nominal_s"]), task=task,
            lookback=lookback, n_features=n_features, ensemble=ensemble, context=context,
            format_version=format_version, warm_up=warm_up,
        )

    # ------------------------------------------------------------------ model calls

    def _compile_zoo(self) -> Callable[[np.ndarray], np.ndarray]:
        """Every model in ONE traced graph: f(x [B, L, F] float32 raw) -> [M, B] float32, the
        models in `model_names` order. One call per request instead of one per model: the
        per-call overhead is paid once, and TensorFlow may run the members' ops side by side."""
        import keras

        models = [self._models[name] for name in self.keras_names]
        if not models:  # only tree members
            return lambda x: np.zeros((0, len(x)), dtype=np.float32)
        if keras.backend.backend() != "tensorflow":  # other backends: Keras's compiled predict
            return lambda x: np.stack([np.asarray(m.predict_on_batch(x), dtype=np.float32).reshape(-1)
                                       for m in models])
        import tensorflow as tf

        signature = [tf.TensorSpec([None, self.lookback, self.n_features], tf.float32, name="window")]

        @tf.function(input_signature=signature)
        def forward(x):
            return tf.stack([tf.reshape(tf.cast(m(x, training=False), tf.float32), [-1]) for m in models])

        return lambda x: forward(x).numpy()

    def warm_up(self) -> None:
        """Trace the zoo's graph and run it once (batch of 2), so requests pay no tracing."""
        x = np.zeros((2, self.lookback, self.n_features), dtype=np.float32)
        out = self._zoo(x)
        if out.shape != (len(self.keras_names), 2):
            raise BadInputError(f"models {list(self.keras_names)}: expected one output per window each. "
                                f"Received shape {out.shape}")

    def _outputs_to_scores(self, out: np.ndarray) -> np.ndarray:
        """Model outputs [B] (logits) → probabilities."""
        return sigmoid(out)

    def zoo_outputs(self, windows: np.ndarray) -> np.ndarray:
        """Every Keras model's raw output (a logit) for raw windows [B, L, F]: [M, B]
        float32, rows in `keras_names` order (`model_names` without the LightGBM members), in one
        call of the zoo's graph."""
        return self._zoo(np.ascontiguousarray(windows, dtype=np.float32))

    def score(self, windows: np.ndarray) -> dict[str, np.ndarray]:
        """Scores of the models' raw inputs [B, L, F] (the 12 features, then the context
        columns; `window_inputs` builds them): {model name: [B] float64}."""
        out = self.zoo_outputs(windows)  # [M, B]
        by_name = {name: self._outputs_to_scores(out[i]) for i, name in enumerate(self.keras_names)}
        for name, member in self._trees.items():  # outside the tf.function
            by_name[name] = member.score(windows)
        return {name: by_name[name] for name in self.model_names}

    def check_windows(self, windows_raw: Any) -> np.ndarray:
        """Raw observed windows as float64 [B, L, 12]; BadInputError naming a wrong shape or value."""
        try:
            x = np.asarray(windows_raw, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise BadInputError(f"windows must be numbers. Received: {err}") from None
        if x.ndim == 2:
            x = x[None]  # one window
        problem = schema.window_shape_problem(x.shape, self.lookback, len(schema.FEATURES), batch=True)
        if problem:
            raise BadInputError(f"{problem} (features in the order {list(schema.FEATURES)})")
        if x.shape[0] == 0:
            raise BadInputError("no window to score. Received: batch of 0")
        bad = ~np.isfinite(x)
        if bad.any():
            b, minute, f = (int(v) for v in np.argwhere(bad)[0])
            raise BadInputError(
                f"windows must be finite: {int(bad.sum())} NaN/inf values, first in window {b}, "
                f"minute {minute}, feature {schema.FEATURES[f]!r} (carry an empty transport_time_s "
                f"forward from the last minute). Received: {x[b, minute, f]}"
            )
        return x

    def score_windows(
        self,
        windows_raw: Any,
        *,
        zones: Any = None,
        end_times: Any = None,
        neighbours: Any = None,
        plans: Any = None,
    ) -> dict[str, np.ndarray]:
        """Each model's score of raw-unit windows [B, L, 12] (oldest minute first, features in
        `fabray.schema.FEATURES` order): {model name: [B] float64}, a probability for the
        "event" task. The context inputs are built here (`window_inputs`)."""
        x = self.window_inputs(windows_raw, zones=zones, end_times=end_times, neighbours=neighbours, plans=plans)
        return self.score(x)

    def window_inputs(
        self,
        windows_raw: Any,
        *,
        zones: Any = None,
        end_times: Any = None,
        neighbours: Any = None,
        plans: Any = None,
    ) -> np.ndarray:
        """Raw observed windows [B, L, 12] → the models' raw inputs [B, L, n_features].

        With context inputs, per window i: `zones[i]` its zone, `end_times[i]` its last minute
        (calendar), `neighbours[i]` {zone: [L, 12] window} of its neighbours (absent ones are
        marked absent), `plans[i]` {plan column: L + horizon values} (None: plan unknown)."""
        from fabray.data.context import window_context

        x = self.check_windows(windows_raw)  # [B, L, 12]
        if self.context is None:
            return x
        b = x.shape[0]

        def per_window(values: Any, what: str) -> list:
            if values is None:
                return [None] * b
            values = list(values)
            if len(values) != b:
                raise BadInputError(f"{what}: one per window ({b}). Received: {len(values)}")
            return values

        zone_list = per_window(zones, "zones")
        if any(z is None for z in zone_list):
            raise BadInputError("zone: required for every window, the model uses the zone's neighbours")
        ctx = [
            window_context(self.context, self.zones, str(z), t, self.lookback, self.nominal_s, nb, plan)
            for z, t, nb, plan in zip(zone_list, per_window(end_times, "timestamps"),
                                      per_window(neighbours, "neighbours"), per_window(plans, "plans"))
        ]
        return np.concatenate([x, np.stack(ctx)], axis=2)  # [B, L, 12 + C]

    def score_prepared(
        self,
        prepared: Any,
        ends: np.ndarray,
        batch_size: int = DEFAULT_BATCH_SIZE,
        *,
        progress: bool | None = None,
    ) -> dict[str, np.ndarray]:
        """Scores of the windows of `prepared` (a `PreparedData` made with this run's scaler)
        ending at rows `ends` [W], gathered batch by batch: {model name: [W] float64}.

        `progress`: a tqdm bar on stderr; None → shown when there are >= 8 batches.
        """
        from fabray.data.windows import gather_windows

        self._check_prepared(prepared)
        ends = np.asarray(ends, dtype=np.int64)  # [W]
        if batch_size < 1:
            raise BadInputError(f"batch_size must be >= 1. Received: batch_size={batch_size}")
        out = {name: np.empty(len(ends), dtype=np.float64) for name in self.model_names}
        n_batches = math.ceil(len(ends) / batch_size)
        for start in _progress(range(0, len(ends), batch_size), n_batches, progress, self.version):
            chunk = ends[start:start + batch_size]
            x = gather_windows(prepared.features, chunk, self.lookback)  # [C, L, F] raw
            for name, scores in self.score(x).items():
                out[name][start:start + len(chunk)] = scores
        return out

    def _check_prepared(self, prepared: Any) -> None:
        if prepared.lookback != self.lookback or prepared.features.shape[1] != self.n_features:
            raise BadInputError(
                f"prepared data has lookback={prepared.lookback}, {prepared.features.shape[1]} "
                f"features; run {self.version} needs {self.lookback} and {self.n_features}"
            )
        if prepared.scaler != self.scaler:
            raise BadInputError(
                f"prepared data was fitted with another scaler than run {self.version}'s: "
                "use RunPredictor.prepare(df)"
            )

    # ------------------------------------------------------------------ helpers for callers

    def prepare(self, df: Any, split: Any = None) -> Any:
        """A validated zone-minute frame → `PreparedData` with this run's scaler and nominals.

        split None: one split "all" (every end with a full window; targets may be NaN).
        A `SplitConfig`: "train"/"val"/"test" as at training time (same data file)."""
        from fabray.data.windows import prepare

        return prepare(df, self.task, split, scaler=self.scaler, nominal_s=self.nominal_s,
                       context=self.context)

    def new_ensemble(self) -> Any:
        """A fresh `ServedEnsemble` in the fitted state of `ensemble.json` (None before
        `fabray ensemble`): what serving starts from and `fabray evaluate` replays. Each call
        returns an independent object."""
        from fabray.ensemble.served import ServedEnsemble

        if self.ensemble is None:
            return None
        return ServedEnsemble.from_state(self.ensemble.state)

    def model(self, name: str) -> Any:
        """The loaded Keras model `name`."""
        if name not in self._models:
            raise BadInputError(f"no model {name!r} in run {self.version}; models: {list(self.model_names)}")
        return self._models[name]

    def rule_activations(self, windows: np.ndarray) -> tuple[list[str], np.ndarray] | None:
        """How much each rule of the run's `rule` model fires on raw model inputs [K, L, F]:
        (rule names, [K, R] float64 in [0, 1]); None when the run has no rule model."""
        from fabray.models.rule import RuleScore

        if "rule" not in self._models:
            return None
        layer = next((l for l in _layers(self._models["rule"]) if isinstance(l, RuleScore)), None)
        if layer is None:
            return None
        x = np.asarray(windows, dtype=np.float32)  # [K, L, F] raw
        if layer.feature_mean is not None:  # a format-1 layer un-scales its (z-scored) input
            x = self.scaler.transform(x)
        return [rule["name"] for rule in layer.rules], np.asarray(layer.rule_activations(x), dtype=np.float64)

    def describe(self) -> dict[str, Any]:
        """JSON-able summary (GET /v1/models)."""
        return {
            "version": self.version,
            "models": list(self.model_names),
            "zones": list(self.zones),
            "lookback": self.lookback,
            "n_features": self.n_features,
            "features": list(schema.FEATURES),
            "input_columns": list(self.scaler.features),
            "context": self.context.to_dict() if self.context is not None else None,
            "horizon": self.horizon,
            "task": self.task.task,
            "sla_delay_s": self.task.sla_delay_s,
            "ensemble_fitted": self.ensemble is not None,
        }


# ---------------------------------------------------------------------------- internals


def _load_ensemble(path: Path, model_names: tuple[str, ...], legacy_scaler: Scaler | None = None) -> EnsembleSpec:
    """`ensemble.json`; `legacy_scaler`: a format-1 run's scaler, whose gate was fitted on z-scored
    context: it is converted to take the raw context every window now carries."""
    from fabray.ensemble import EnsembleParams
    from fabray.ensemble.served import ServedEnsemble

    data = _read_json(path, "ensemble")
    if data.get("format") != ENSEMBLE_FORMAT:
        raise BadInputError(f"{path}: not a fabray ensemble file. Received: format={data.get('format')!r}")
    names = tuple(data.get("model_names") or ())
    if names != model_names:
        raise BadInputError(
            f"{path}: fitted for models {list(names)}, but the run's trained models are "
            f"{list(model_names)}; re-run `fabray ensemble`"
        )
    from fabray.alarm import AlarmPolicy

    state = data.get("state")
    try:
        if legacy_scaler is not None:
            state = format1_state_on_raw_context(state, legacy_scaler)
        params = EnsembleParams.from_dict(data["params"])
        static = EnsembleParams.from_dict(data["static_params"])
        ServedEnsemble.from_state(state)  # validates the state once, here
    except (KeyError, TypeError, ValueError) as err:
        raise BadInputError(f"{path}: invalid ensemble: {err}") from err
    return EnsembleSpec(
        params=params, state=state, static_params=static, model_names=names,
        feedback_lag=int(data.get("feedback_lag", 1)),
        model_thresholds={str(k): float(v) for k, v in (data.get("model_thresholds") or {}).items()},
        raw=data,
        model_alarms={str(k): AlarmPolicy.from_dict(v) for k, v in (data.get("model_alarms") or {}).items()},
    )


def format1_state_on_raw_context(state: Any, scaler: Scaler) -> Any:
    """A served-ensemble state (`ensemble.json`'s "state") of a run of format 1, whose learned gate
    standardizes z-scored context, as the same state on the raw context windows now carry
    (`fabray.ensemble.gate.gate_on_raw_context`); states without a gate are returned as given."""
    from fabray.ensemble.gate import gate_on_raw_context

    if not isinstance(state, Mapping) or not state.get("gate"):
        return state
    index = [int(i) for i in state.get("context_index") or ()]
    return {**state, "gate": gate_on_raw_context(state["gate"], [scaler.mean[i] for i in index],
                                                 [scaler.scale[i] for i in index])}


def _is_tree_member(model: Any) -> bool:
    """A `fabray.models.gbt.GBTMember` (checked by its flag: no LightGBM import for Keras runs)."""
    return bool(getattr(model, "is_tree_member", False))


def _layers(model: Any) -> Iterator[Any]:
    """Every layer of a Keras model, nested models' layers included (a format-1 model is nested)."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _layers(layer)


def _progress(items: range, total: int, progress: bool | None, label: str) -> Iterator[int]:
    show = total >= PROGRESS_MIN_BATCHES if progress is None else progress
    if not show:
        return iter(items)
    from tqdm.auto import tqdm

    return iter(tqdm(items, total=total, desc=f"scoring ({label})", unit="batch", leave=False))
