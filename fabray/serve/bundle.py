"""One model version ready to serve: the run's models, the rules model for degraded windows, and
what the ensemble needs. Loaded only from a verified store version.

`ServingBundle.load(store, version)` checks the version's checksums (`ModelStore.verify`), loads
the run with `RunPredictor.load` (which checks the manifest's own checksums, the models' input
shapes and the scaler, and warms every model's `tf.function` up), and checks that it fits the
HTTP contract. Any failure is a `BadInputError` naming the file or the mismatch: the caller keeps
serving what it had.

The request path's two compiled calls (issue 13, item 5; traced and timed at load):

- `score_full(x)`: ONE graph with every model, the rules model's score (the run's `rule` model,
  or the rules baseline for a run without one) and how much each rule fires, so a response
  names the rules that fired at no extra call;
- `score_fast(x)`: the rules model and its rule activations alone: what answers a window whose
  deadline the zoo cannot meet (fabray/serve/deadline.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fabray import schema
from fabray.config import EnsembleConfig
from fabray.errors import BadInputError
from fabray.numeric import sigmoid
from fabray.predictor import RunPredictor
from fabray.serve.keeper import RULE_MODEL
from fabray.serve.store import ModelStore

logger = logging.getLogger(__name__)

#: What must not change between the live version and a new one unless promoted with force=True.
CONTRACT_KEYS = ("lookback", "n_features", "context", "task")


@dataclass
class ServingBundle:
    """A loaded version. `score` is the one call on the request path."""

    version: str
    predictor: RunPredictor
    ensemble_params: dict[str, Any]  # EnsembleParams.to_dict()
    fitted_state: dict[str, Any] | None  # DynamicEnsemble state fitted by `fabray ensemble`
    threshold: float
    rules_fn: Callable[[np.ndarray], np.ndarray] | None  # raw [B, L, F] → [B]; None: the run's rule model
    run_id: str  # the training run's name, as the store recorded it
    rule_names: tuple[str, ...] = ()  # the rules of the rules model, in activation order
    full_fn: Callable[[np.ndarray], tuple] | None = None  # x → (logits [M, B], rules logit [B], fired [B, R])
    fast_fn: Callable[[np.ndarray], tuple] | None = None  # x → (rules logit [B], fired [B, R])
    full_seconds: float = 0.0  # one window through score_full, timed at load (the deadline's estimate)
    fast_seconds: float = 0.0  # likewise score_fast

    @classmethod
    def load(cls, store: ModelStore, version: str, ensemble: EnsembleConfig | None = None) -> ServingBundle:
        run = store.verify(version)
        predictor = RunPredictor.load(run)
        if tuple(predictor.scaler.features[: len(schema.FEATURES)]) != schema.FEATURES:
            raise BadInputError(
                f"version {version}: its models' inputs {list(predictor.scaler.features)} do not start "
                f"with the API's {len(schema.FEATURES)} features"
            )
        names = predictor.model_names
        if predictor.ensemble is not None:
            params = predictor.ensemble.params.to_dict()
            fitted = predictor.ensemble.state
        else:
            params = (ensemble or EnsembleConfig()).to_params(names).to_dict()
            fitted = None
        threshold = float(params["threshold"])
        rules_fn = None if RULE_MODEL in names else _rules_baseline(predictor)
        run_id = str(store.info(version).get("run_id") or predictor.version)
        bundle = cls(version=version, predictor=predictor, ensemble_params=params,
                     fitted_state=fitted, threshold=threshold, rules_fn=rules_fn, run_id=run_id)
        bundle._compile_request_path()
        logger.info("version %s (run %s) ready: models %s (one window: zoo %.1f ms, rules alone %.1f ms)",
                    version, run_id, list(names), 1000 * bundle.full_seconds, 1000 * bundle.fast_seconds)
        return bundle

    def _compile_request_path(self) -> None:
        """`full_fn` and `fast_fn` (see the module docstring), traced, warmed and timed."""
        import time

        import tensorflow as tf

        from fabray.models.rule import RuleScore
        from fabray.predictor import _layers

        p = self.predictor
        names = p.keras_names  # the LightGBM members (`fabray.models.gbt`) score beside the graph
        models = [p.model(name) for name in names]
        rules_model = p.model(RULE_MODEL) if RULE_MODEL in names else _rules_baseline_model(p)
        layer = next((l for l in _layers(rules_model) if isinstance(l, RuleScore)), None)
        self.rule_names = tuple(r["name"] for r in layer.rules) if layer is not None else ()
        rule_index = names.index(RULE_MODEL) if RULE_MODEL in names else None
        if layer is not None and layer.feature_mean is not None:  # a format-1 layer un-scales z-scores
            mean = tf.constant(np.asarray(p.scaler.mean, np.float32))
            scale = tf.constant(np.asarray(p.scaler.scale, np.float32))
            layer_input = lambda x: (x - mean) / scale  # noqa: E731
        else:
            layer_input = lambda x: x  # noqa: E731

        def fired(x):
            if layer is None:
                return tf.zeros([tf.shape(x)[0], 0], tf.float32)
            return tf.cast(layer.rule_activations(layer_input(x)), tf.float32)  # [B, R]

        def logit(model, x):
            return tf.reshape(tf.cast(model(x, training=False), tf.float32), [-1])  # [B]

        signature = [tf.TensorSpec([None, p.lookback, p.n_features], tf.float32, name="window")]

        @tf.function(input_signature=signature)
        def full(x):
            out = tf.stack([logit(m, x) for m in models])  # [M, B]
            rules = out[rule_index] if rule_index is not None else logit(rules_model, x)
            return out, rules, fired(x)

        @tf.function(input_signature=signature)
        def fast(x):
            return logit(rules_model, x), fired(x)

        self.full_fn = lambda x: tuple(t.numpy() for t in full(x))
        self.fast_fn = lambda x: tuple(t.numpy() for t in fast(x))
        x = np.zeros((1, p.lookback, p.n_features), np.float32)  # [1, L, F]
        for fn in (self.full_fn, self.fast_fn):
            fn(np.zeros((2, p.lookback, p.n_features), np.float32))  # trace
        timings = {}
        for key, fn in (("full", self.full_fn), ("fast", self.fast_fn)):
            start = time.perf_counter()
            for _ in range(3):
                fn(x)
            timings[key] = (time.perf_counter() - start) / 3
        self.full_seconds, self.fast_seconds = timings["full"], timings["fast"]

    def score_full(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw windows [B, L, F] → (scores [B, M] in model order, rules scores [B], rule
        activations [B, R]), in one compiled call."""
        x = np.ascontiguousarray(windows, dtype=np.float32)
        out, rules, fired = self.full_fn(x)
        scores = sigmoid(out.T.astype(np.float64))  # [B, K]: the Keras members, in keras_names order
        p = self.predictor
        if len(p.keras_names) < len(self.model_names):  # a LightGBM member: scored beside the graph
            by_name = dict(zip(p.keras_names, scores.T))
            by_name.update({n: p.model(n).score(x) for n in self.model_names if n not in by_name})
            scores = np.stack([by_name[n] for n in self.model_names], axis=1)  # [B, M]
        return scores, sigmoid(rules.astype(np.float64)), fired.astype(np.float64)

    def score_fast(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw windows [B, L, F] → (rules scores [B], rule activations [B, R]): the rules model alone."""
        rules, fired = self.fast_fn(np.ascontiguousarray(windows, dtype=np.float32))
        return sigmoid(rules.astype(np.float64)), fired.astype(np.float64)

    def rules_fired(self, activations: np.ndarray) -> list[list[dict[str, Any]]]:
        """Rule activations [B, R] → per window the rules that fired (activation >= 0.5),
        strongest first: [{"rule", "activation"}]."""
        return [[{"rule": self.rule_names[r], "activation": round(float(row[r]), 3)}
                 for r in np.argsort(-row) if row[r] >= 0.5] for row in np.asarray(activations)]

    # ------------------------------------------------------------------ scoring

    @property
    def model_names(self) -> tuple[str, ...]:
        return self.predictor.model_names

    def score(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw finite windows [B, L, F] → (scores [B, M] in model order, rules scores [B])."""
        x = np.asarray(windows, dtype=np.float32)  # [B, L, F] raw
        by_model = self.predictor.score(x)  # name → [B]
        scores = np.stack([by_model[name] for name in self.model_names], axis=1)  # [B, M]
        rules = by_model[RULE_MODEL] if self.rules_fn is None else self.rules_fn(x)  # [B]
        return scores, rules

    # ------------------------------------------------------------------ description

    def meta(self) -> dict[str, Any]:
        """What the ingress needs to check requests, and GET /v1/models shows."""
        p = self.predictor
        return {
            "version": self.version,
            "run_id": self.run_id,
            "models": list(p.model_names),
            "zones": list(p.zones),
            "lookback": p.lookback,
            "n_features": p.n_features,
            "input_columns": list(p.scaler.features),
            "context": p.context.to_dict() if p.context is not None else None,
            "nominal_s": dict(p.nominal_s),
            "task": p.task.task,
            "threshold": self.threshold,
            "sla_delay_s": p.task.sla_delay_s,
            "ensemble_fitted": p.ensemble is not None,
            "ensemble_params": self.ensemble_params,
            "rules_model": RULE_MODEL if self.rules_fn is None else "rules baseline (untrained rule model)",
        }


def contract_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs in the HTTP contract between two versions' `meta()` (empty: compatible)."""
    return [f"{key}: {old.get(key)!r} → {new.get(key)!r}" for key in CONTRACT_KEYS if old.get(key) != new.get(key)]


def _rules_baseline_model(predictor: RunPredictor) -> Any:
    """The untrained `rule` model's rule score (a Keras model, [B, L, F] raw → [B, 1] logit)."""
    import keras

    from fabray.models import make_config
    from fabray.models.rule import rule_score_layer
    from fabray.run_data import rule_overrides

    cfg = make_config(RULE_MODEL, rule_overrides(predictor))
    window = keras.Input(shape=(predictor.lookback, predictor.n_features), name="window")  # [B, L, F]
    return keras.Model(window, rule_score_layer(cfg)(window), name="rules_baseline")  # [B, 1] logit


def _rules_baseline(predictor: RunPredictor) -> Callable[[np.ndarray], np.ndarray]:
    """The untrained `rule` model (its output is exactly the rule score) for runs without one:
    degraded windows are still scored by the engineer's rules (the run's `train.model_overrides`)."""
    import tensorflow as tf

    model = _rules_baseline_model(predictor)
    signature = [tf.TensorSpec([None, predictor.lookback, predictor.n_features], tf.float32)]

    @tf.function(input_signature=signature)
    def forward(x):
        return tf.reshape(model(x, training=False), [-1])  # [B]

    forward(np.zeros((2, predictor.lookback, predictor.n_features), np.float32))  # warm up
    return lambda x: sigmoid(forward(x).numpy())
