"""The ensemble keeper: the one place that holds the dynamic ensemble's online state (DESIGN §5–6).

Every prediction passes its per-model scores through `combine`, which returns the ensemble
probability, the weights used and a `prediction_id`; the scores are remembered (a bounded,
oldest-first buffer) so that `/v1/feedback`, ten minutes later, needs only the id and the
outcome to move that zone's weights (`ServedEnsemble.update`).

One `ServedEnsemble` (the run's fitted form: a member, static, dynamic or gated ensemble,
calibrated) per model version: a hot swap starts the new version from its own fitted
state (or the configured parameters) and a rollback finds the old one's weights where it left
them. `save()` writes each changed version's state and pending predictions to the store
(`STORE/state/<version>.json`, atomically); a new keeper (a replica restart) loads it back.

Since issue 13 item 5 the /v1/predict path combines in the scoring replica, with a copy of this
state (local_ensemble.py): `combine_rows` is the one combining function of both, `sync` hands a
replica the state when it changed (a generation per version, bumped by every applied outcome; a
restarted keeper is a new `epoch`), and `record` takes the pending predictions a replica combined.
The live feed still combines here (`combine`): its outcomes move these weights first.

Pure Python + numpy: the Serve deployment in deployments/keeper.py wraps it (a single replica, so
every feedback moves the same weights).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fabray.ensemble import EnsembleParams
from fabray.ensemble.served import ServedEnsemble
from fabray.errors import BadInputError

logger = logging.getLogger(__name__)

STATE_FORMAT = "fabray-serve-state"
RULE_MODEL = "rule"


@dataclass
class _Pending:
    version: str
    zone: str
    scores: list[float]  # [M] in the version's model order
    degraded: bool
    at: float  # unix time of the prediction


def combine_rows(ensemble: ServedEnsemble, zones: Sequence[str], scores: np.ndarray, rule_scores: Sequence[float],
                 degraded: Sequence[bool], last_rows: np.ndarray | None = None) -> list[tuple[float, dict[str, float]]]:
    """(probability, weights) of each window: zones [B], scores [B, M] in model order, the
    rules model's scores [B], degraded [B], each window's last minute in the run's raw inputs
    [B, F] (the learned gate's context; None: the gate's validation-mean context).

    A degraded window is answered by the rules model alone (weight 1 on `rule`: the run's rule
    model, or the untrained rules baseline when the run has none). The keeper and every scoring
    replica's local copy (local_ensemble.py) combine through this one function."""
    names = ensemble.model_names
    scores = np.asarray(scores, dtype=np.float64)  # [B, M]
    contexts = ensemble.context_from_rows(last_rows)
    out = []
    for i, (zone, row, rule_score, bad) in enumerate(zip(zones, scores, rule_scores, degraded)):
        if bad:
            out.append((float(rule_score), {name: 0.0 for name in names} | {RULE_MODEL: 1.0}))
        else:
            out.append(ensemble.combine(zone, row, None if contexts is None else contexts[i]))
    return out


class EnsembleKeeper:
    """Online ensembles per model version, the pending-prediction buffer, and their persistence.

    Args:
        state_dir: where `save` writes `<version>.json` (None: nothing is persisted).
        pending_capacity: predictions remembered for feedback; the oldest are forgotten first.
    """

    def __init__(self, state_dir: str | Path | None, pending_capacity: int = 20_000) -> None:
        self.state_dir = None if state_dir is None else Path(state_dir)
        self.pending_capacity = int(pending_capacity)
        self._ensembles: dict[str, ServedEnsemble] = {}
        self._thresholds: dict[str, float] = {}
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._dirty: set[str] = set()
        self.feedback_applied = 0
        self.epoch = uuid.uuid4().hex  # a restarted keeper is a new epoch for the replicas' copies
        self._generations: dict[str, int] = {}  # version → weight changes so far (sync)

    # ------------------------------------------------------------------ versions

    def has(self, version: str) -> bool:
        return version in self._ensembles

    def ensure(self, version: str, fitted_state: Mapping[str, Any] | None, params: Mapping[str, Any],
               model_names: Sequence[str]) -> None:
        """Make `version`'s ensemble available: its persisted online state when the store has
        one, else the run's fitted state (`fitted_state`), else fresh from `params`."""
        if version in self._ensembles:
            return
        ensemble = self._load(version, model_names)
        if ensemble is not None and ensemble.gate is not None and fitted_state and fitted_state.get("gate"):
            # the gate is fitted, never learned online: take the loaded run's (a run of format 1
            # has it converted to raw context at load; a state persisted before may not)
            from fabray.ensemble.gate import Gate

            ensemble.gate = Gate.from_dict(fitted_state["gate"])
        if ensemble is None and fitted_state is not None:
            ensemble = ServedEnsemble.from_state(fitted_state)  # the run's fitted state, as evaluated
        if ensemble is None:
            ensemble = ServedEnsemble.from_params(EnsembleParams.from_dict(dict(params)), model_names)
        if tuple(ensemble.model_names) != tuple(model_names):
            raise BadInputError(
                f"version {version}: ensemble state is for models {list(ensemble.model_names)}, "
                f"the version has {list(model_names)}"
            )
        self._ensembles[version] = ensemble
        logger.info("ensemble for %s ready (models %s)", version, list(model_names))

    def _load(self, version: str, model_names: Sequence[str]) -> ServedEnsemble | None:
        if self.state_dir is None:
            return None
        path = self.state_dir / f"{version}.json"
        if not path.is_file():
            return None
        import json

        try:
            data = json.loads(path.read_text())
            ensemble = ServedEnsemble.from_state(data["ensemble"])
            if tuple(ensemble.model_names) != tuple(model_names):
                raise ValueError(f"models {list(ensemble.model_names)} != {list(model_names)}")
        except (OSError, ValueError, KeyError, TypeError) as err:
            logger.warning("ignoring the persisted ensemble state %s: %s", path, err)
            return None
        for entry in data.get("pending", []):
            pid, zone, scores, degraded, at = entry
            self._pending[pid] = _Pending(version, zone, [float(s) for s in scores], bool(degraded), float(at))
        self._trim()
        logger.info("restored the online state of %s from %s (%d pending predictions)",
                    version, path, len(data.get("pending", [])))
        return ensemble

    # ------------------------------------------------------------------ predictions

    def combine(
        self,
        version: str,
        zones: Sequence[str],
        scores: np.ndarray,
        rule_scores: np.ndarray,
        degraded: Sequence[bool],
        last_rows: np.ndarray | None = None,
    ) -> list[dict[str, Any]]:
        """Ensemble each window (`combine_rows`: zones [B], scores [B, M] in model order, the
        rules model's scores [B], degraded [B], each window's last minute in the run's raw
        inputs [B, F] or None) and remember it as pending. Returns one dict per window:
        prediction_id, probability, weights."""
        ensemble = self._ensembles.get(version)
        if ensemble is None:
            raise RuntimeError(f"no ensemble for version {version}: call ensure() first")
        scores = np.asarray(scores, dtype=np.float64)  # [B, M]
        now = time.time()
        out = []
        for zone, row, bad, (prob, weights) in zip(zones, scores, degraded,
                                                   combine_rows(ensemble, zones, scores, rule_scores, degraded,
                                                                last_rows)):
            pid = uuid.uuid4().hex
            self._pending[pid] = _Pending(version, str(zone), row.tolist(), bool(bad), now)
            out.append({"prediction_id": pid, "probability": prob, "weights": weights})
        self._trim()
        self._dirty.add(version)  # the pending predictions changed
        return out

    def record(self, records: Sequence[Sequence[Any]]) -> int:
        """Remember predictions a scoring replica combined itself (local_ensemble.py): records
        [prediction_id, version, zone, scores [M], degraded, unix time]. Returns how many."""
        for pid, version, zone, scores, degraded, at in records:
            self._pending[str(pid)] = _Pending(str(version), str(zone), [float(s) for s in scores],
                                               bool(degraded), float(at))
            self._dirty.add(str(version))
        self._trim()
        return len(records)

    def sync(self, version: str, epoch: str | None, generation: int) -> dict[str, Any]:
        """What a scoring replica holding `version`'s state at (epoch, generation) needs:
        {"status": "missing"} (call `ensure`), {"status": "current"}, or {"status": "state",
        "epoch", "generation", "state": ServedEnsemble.to_state()}."""
        ensemble = self._ensembles.get(version)
        if ensemble is None:
            return {"status": "missing"}
        current = self._generations.get(version, 0)
        if epoch == self.epoch and int(generation) == current:
            return {"status": "current"}
        return {"status": "state", "epoch": self.epoch, "generation": current, "state": ensemble.to_state()}

    def _trim(self) -> None:
        while len(self._pending) > self.pending_capacity:
            self._pending.popitem(last=False)

    # ------------------------------------------------------------------ feedback

    def feedback(self, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Apply observed outcomes: items of {"prediction_id": str, "outcome": float}.

        Each prediction takes feedback once. Returns counts, the ids not found (unknown, already
        used or forgotten), and the new weights of every (version, zone) touched.
        """
        applied, skipped_degraded, unknown = 0, 0, []
        touched: dict[str, set[str]] = {}
        for item in items:
            pid = str(item["prediction_id"])
            outcome = float(item["outcome"])
            pending = self._pending.pop(pid, None)
            if pending is None:
                unknown.append(pid)
                continue
            if pending.degraded:
                skipped_degraded += 1
                continue
            ensemble = self._ensembles.get(pending.version)
            if ensemble is None:  # a version no replica serves any more: nothing to move
                unknown.append(pid)
                continue
            if not math.isfinite(outcome):
                raise BadInputError(f"outcome of {pid} must be finite. Received: {outcome}")
            ensemble.update(pending.zone, pending.scores, outcome)
            applied += 1
            self._generations[pending.version] = self._generations.get(pending.version, 0) + 1
            self._dirty.add(pending.version)
            touched.setdefault(pending.version, set()).add(pending.zone)
        self.feedback_applied += applied
        weights = {
            version: {zone: self._ensembles[version].weights(zone) for zone in sorted(zones)}
            for version, zones in touched.items()
        }
        return {"applied": applied, "skipped_degraded": skipped_degraded, "unknown": unknown,
                "weights": weights}

    def decide(self, version: str, zone: str, probability: float, minute: int | None) -> bool:
        """The zone's alarm at `minute` under the served ensemble's alarm policy (threshold,
        hysteresis, hold; `ServedEnsemble.decide`): the live feed's decision, minute after minute."""
        ensemble = self._ensembles.get(version)
        if ensemble is None:
            raise BadInputError(f"no ensemble loaded for version {version!r}")
        self._dirty.add(version)  # the zone's alarm state moved
        return ensemble.decide(str(zone), float(probability), minute)

    def forget_alarm(self, version: str, zone: str) -> None:
        """Restart the zone's alarm state (a degraded answer breaks the minute series)."""
        ensemble = self._ensembles.get(version)
        if ensemble is not None:
            ensemble.forget_alarm(str(zone))
            self._dirty.add(version)

    def weights(self, version: str, zones: Sequence[str]) -> dict[str, dict[str, float]]:
        """Current weights of each zone (what its next prediction would use)."""
        ensemble = self._ensembles.get(version)
        if ensemble is None:
            raise BadInputError(f"no ensemble loaded for version {version!r}")
        return {zone: ensemble.weights(zone) for zone in zones}

    def describe(self) -> dict[str, Any]:
        return {
            "versions": sorted(self._ensembles),
            "pending_predictions": len(self._pending),
            "feedback_applied": self.feedback_applied,
        }

    # ------------------------------------------------------------------ persistence

    def snapshot(self, force: bool = False) -> dict[str, dict[str, Any]]:
        """The state of every changed version (every version with `force`), as JSON-able
        payloads, and mark them saved. Cheap: call it where the state is mutated; `write` the
        result elsewhere (a thread) so that persisting never stalls predictions."""
        versions = sorted(self._ensembles if force else self._dirty & set(self._ensembles))
        payloads = {}
        for version in versions:
            pending = [
                [pid, p.zone, p.scores, p.degraded, p.at]
                for pid, p in self._pending.items() if p.version == version
            ]
            payloads[version] = {"format": STATE_FORMAT, "version": version, "saved_at": time.time(),
                                 "ensemble": self._ensembles[version].to_state(), "pending": pending}
        self._dirty.clear()
        return payloads

    def mark_dirty(self, versions: Sequence[str]) -> None:
        """Write these versions again at the next `snapshot` (e.g. after a failed write)."""
        self._dirty.update(versions)

    def write(self, payloads: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Write `snapshot` payloads to `state_dir/<version>.json` (atomically); the versions."""
        if self.state_dir is None:
            return []
        from fabray.files import atomic_write_json

        for version, payload in payloads.items():
            atomic_write_json(self.state_dir / f"{version}.json", payload)
        return sorted(payloads)

    def save(self, force: bool = False) -> list[str]:
        """`snapshot` + `write` in one call; returns the versions written."""
        if self.state_dir is None:
            return []
        return self.write(self.snapshot(force))

    @property
    def dirty(self) -> bool:
        return bool(self._dirty)
