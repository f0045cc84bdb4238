"""One model version ready to serve: the run's models, the rules model for degraded windows, and
what the ensemble needs. Loaded only from a verified store version.

`ServingBundle.load(store, version)` checks the version's checksums (`ModelStore.verify`), loads
the run with `RunPredictor.load` (which checks the manifest's own checksums, the models' input
shapes and the scaler, and warms every model's `tf.function` up), and checks that it fits the
HTTP contract. Any failure is a `BadInputError` naming the file or the mismatch: the caller keeps
serving what it had.
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
        logger.info("version %s (run %s) ready: models %s", version, run_id, list(names))
        return bundle

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


def _rules_baseline(predictor: RunPredictor) -> Callable[[np.ndarray], np.ndarray]:
    """The untrained `rule` model (its output is exactly the rule score) for runs without one:
    degraded windows are still scored by the engineer's rules (the run's `train.model_overrides`)."""
    import keras
    import tensorflow as tf

    from fabray.models import make_config
    from fabray.models.rule import rule_score_layer
    from fabray.run_data import rule_overrides

    cfg = make_config(RULE_MODEL, rule_overrides(predictor))
    window = keras.Input(shape=(predictor.lookback, predictor.n_features), name="window")  # [B, L, F]
    model = keras.Model(window, rule_score_layer(cfg)(window), name="rules_baseline")  # [B, 1] logit
    signature = [tf.TensorSpec([None, predictor.lookback, predictor.n_features], tf.float32)]

    @tf.function(input_signature=signature)
    def forward(x):
        return tf.reshape(model(x, training=False), [-1])  # [B]

    forward(np.zeros((2, predictor.lookback, predictor.n_features), np.float32))  # warm up
    return lambda x: sigmoid(forward(x).numpy())
