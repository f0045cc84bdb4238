"""The ensemble a run serves, one object online (the serving keeper) and offline (`fabray evaluate`).

`ServedEnsemble` is what `fabray ensemble` chose on validation, in one of four forms:

- `member`: a single model won (the "ensemble" is that member, reported as such);
- `static`: fixed weights over a member subset;
- `dynamic`: the online error-tracking weights (`DynamicEnsemble`) over a member subset;
- `gate`: the learned gate (`fabray.ensemble.gate`) over a member subset, fed by each member's
  recent error on the zone (online error trackers with the gate's half-life) and the context.

then the calibration map (`fabray.ensemble.calibrate`) and the alarm policy on the calibrated
probability (`fabray.alarm.AlarmPolicy`: threshold, hysteresis, hold; `decide(zone, prob, minute)`
keeps each zone's alarm state over consecutive minutes, as `AlarmPolicy.alarms` does offline). `combine(zone, scores, context)` → (calibrated probability, weights over
every model of the run, 0 for non-members); `update(zone, scores, outcome)` feeds back a truth.
`to_state()` holds everything, including each zone's trackers: `fabray ensemble` stores the state
reached at the end of the validation replay, serving and evaluation both start from it.

`run_online` is the offline replay: it feeds a `ServedEnsemble` row by row exactly as serving
does (each zone's outcome of row j is given right before the prediction of row j + lag), so the
weights `fabray evaluate` reports are the ones a client would have seen.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fabray.alarm import AlarmPolicy, AlarmState
from fabray.ensemble.calibrate import Calibrator
from fabray.ensemble.dynamic import DynamicEnsemble
from fabray.ensemble.gate import Gate, context_rows
from fabray.ensemble.params import EnsembleParams

FORMS = ("member", "static", "dynamic", "gate")
STATE_KIND = "fabray-served-ensemble"
STATE_VERSION = 1


def error_tracker_params(n_members: int, half_life: float) -> EnsembleParams:
    """The online error trackers of a gate: errors only (weights unused), Brier, this half-life."""
    return EnsembleParams(base_weights=(1.0,) * n_members, half_life=half_life, floor=0.0, step_cap=1.0,
                          temperature=1.0, loss="brier")


class ServedEnsemble:
    """The served combination of a run's models (see the module docstring).

    Args:
        form: one of FORMS.
        model_names: every model of the run, in score order.
        members: the models combined (a subset, in run order; one for `member`).
        threshold: raise the alarm where the calibrated probability >= threshold.
        alarm: the alarm policy (None: the plain `threshold`); its threshold is `threshold`.
        inner: `DynamicEnsemble` over the members: the weights (member/static/dynamic) or, for a
            gate, the per-zone error trackers (with the gate's half-life).
        gate: the fitted `Gate` (form "gate" only).
        calibrator: the calibration map (identity if None).
        context_index: the gate's context columns in the run's (raw) inputs.
    """

    def __init__(
        self,
        form: str,
        model_names: Sequence[str],
        members: Sequence[str],
        threshold: float,
        inner: DynamicEnsemble,
        *,
        gate: Gate | None = None,
        calibrator: Calibrator | None = None,
        context_index: Sequence[int] = (),
        alarm: AlarmPolicy | None = None,
    ) -> None:
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}. Received: form={form!r}")
        self.model_names = tuple(str(n) for n in model_names)
        self.members = tuple(str(n) for n in members)
        unknown = [n for n in self.members if n not in self.model_names]
        if not self.members or unknown or len(set(self.members)) != len(self.members):
            raise ValueError(f"members must be distinct models of {list(self.model_names)}. "
                             f"Received: {list(members)}")
        if form == "member" and len(self.members) != 1:
            raise ValueError(f"form 'member' serves one model. Received: members={list(self.members)}")
        if tuple(inner.model_names) != self.members:
            raise ValueError(f"the inner ensemble is over {list(inner.model_names)}, members are {list(self.members)}")
        if form == "gate" and (gate is None or gate.n_members != len(self.members)):
            raise ValueError(f"form 'gate' needs a gate over {len(self.members)} members")
        if not (0.0 <= float(threshold) <= 1.0):
            raise ValueError(f"threshold must lie in [0, 1]. Received: threshold={threshold}")
        if alarm is not None and alarm.threshold != float(threshold):
            raise ValueError(f"the alarm policy's threshold {alarm.threshold} is not threshold={threshold}")
        self.form = form
        self.threshold = float(threshold)
        self.alarm = alarm if alarm is not None else AlarmPolicy(self.threshold)
        self._alarm_states: dict[str, tuple[AlarmState, int | None]] = {}  # zone → (state, its last minute)
        self.inner = inner
        self.gate = gate if form == "gate" else None
        self.calibrator = calibrator or Calibrator()
        self.context_index = tuple(int(i) for i in context_index)
        self._cols = np.asarray([self.model_names.index(n) for n in self.members], dtype=np.int64)  # [K]

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_params(cls, params: EnsembleParams, model_names: Sequence[str]) -> ServedEnsemble:
        """The dynamic (or static) ensemble over every model, uncalibrated, at params.threshold."""
        form = "static" if params.is_static else "dynamic"
        return cls(form, model_names, model_names, params.threshold, DynamicEnsemble(params, model_names))

    @property
    def params(self) -> EnsembleParams:
        """The inner ensemble's parameters (for a gate: its error trackers')."""
        return self.inner.params

    # ------------------------------------------------------------------ helpers

    def _member_scores(self, scores: Sequence[float] | Mapping[str, float] | np.ndarray) -> np.ndarray:
        if isinstance(scores, Mapping):
            unknown = sorted(set(scores) - set(self.model_names))
            if unknown:
                raise ValueError(f"scores for unknown models {unknown}; models are {list(self.model_names)}")
            return np.array([scores.get(n, math.nan) for n in self.members], dtype=np.float64)
        arr = np.asarray(scores, dtype=np.float64).reshape(-1)
        if arr.size != len(self.model_names):
            raise ValueError(f"expected one score per model ({len(self.model_names)}: {list(self.model_names)}). "
                             f"Received: {arr.size} scores")
        return arr[self._cols]

    def _full(self, member_weights: Mapping[str, float] | np.ndarray) -> dict[str, float]:
        if not isinstance(member_weights, Mapping):
            member_weights = dict(zip(self.members, np.asarray(member_weights).tolist()))
        return {n: float(member_weights.get(n, 0.0)) for n in self.model_names}

    def context_from_rows(self, last_rows: np.ndarray | None) -> np.ndarray | None:
        """The gate's context [B, C] from each window's last minute, raw [B, F]; None if None."""
        if last_rows is None:
            return None
        return context_rows(last_rows, self.context_index)

    # ------------------------------------------------------------------ online API

    def weights(self, zone: str, context: np.ndarray | None = None) -> dict[str, float]:
        """The weights the zone's next prediction would use (a gate: at this context, default 0
        = the validation mean of each context input)."""
        if self.form != "gate":
            return self._full(self.inner.weights(zone))
        return self._full(self._gate_weights(zone, context)[0])

    def _gate_weights(self, zone: str, context: np.ndarray | None) -> np.ndarray:
        n_ctx = len(self.gate.context_names)
        ctx = np.asarray(self.gate.mean[:n_ctx] if context is None else context, dtype=np.float64).reshape(1, -1)
        if ctx.shape[1] != n_ctx:
            raise ValueError(f"the gate needs {n_ctx} context values {list(self.gate.context_names)}. "
                             f"Received: {ctx.shape[1]}")
        return self.gate.weights(ctx, self.inner.errors(zone)[None])  # [1, K]

    def combine(
        self, zone: str, scores: Sequence[float] | Mapping[str, float] | np.ndarray,
        context: np.ndarray | None = None,
    ) -> tuple[float, dict[str, float]]:
        """(calibrated probability, weights over every model) of one window's model scores.

        A member with a NaN (or missing) score is left out and its weight spread over the others;
        all members missing is an error. `context`: the gate's [C] context (see
        `context_from_rows`); other forms ignore it."""
        s = self._member_scores(scores)  # [K]
        if self.form != "gate":
            raw, w = self.inner.combine(zone, s)
        else:
            w = self._gate_weights(zone, context)[0]
            present = ~np.isnan(s)
            if not present.any():
                raise ValueError(f"no member with a score. Received: scores={s.tolist()}")
            w = np.where(present, w, 0.0)
            w = w / w.sum()
            raw = float((w * np.where(present, s, 0.0)).sum())
        return float(self.calibrator(raw)), self._full(w)

    def decide(self, zone: str, prob: float, minute: int | None = None) -> bool:
        """The zone's alarm for a calibrated probability at `minute` (minutes since the epoch):
        the zone's alarm state steps on when `minute` follows the zone's last one, answers the same
        again for a repeated minute, and restarts otherwise (a gap, or `minute` None), as
        `AlarmPolicy.alarms` restarts at a segment offline."""
        state, last = self._alarm_states.get(zone, (None, None))
        if state is None or state.policy != self.alarm:
            state, last = AlarmState(self.alarm), None
        if minute is not None and last is not None and minute == last:
            return bool(state.last)
        if minute is None or last is None or minute != last + 1:
            state.reset()
        state.step(prob)
        self._alarm_states[zone] = (state, None if minute is None else int(minute))
        return bool(state.last)

    def forget_alarm(self, zone: str) -> None:
        """Restart the zone's alarm state (e.g. after a degraded answer)."""
        self._alarm_states.pop(zone, None)

    def update(self, zone: str, scores: Sequence[float] | Mapping[str, float] | np.ndarray, outcome: float,
               context: np.ndarray | None = None) -> None:
        """Feed back the truth of an earlier prediction (its scores then, its outcome)."""
        self.inner.update(zone, self._member_scores(scores), outcome)

    # ------------------------------------------------------------------ persistence

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": STATE_KIND, "version": STATE_VERSION, "form": self.form,
            "model_names": list(self.model_names), "members": list(self.members),
            "threshold": self.threshold, "alarm": self.alarm.to_dict(),
            "alarm_states": {z: {**st.to_dict(), "minute": m} for z, (st, m) in self._alarm_states.items()},
            "calibrator": self.calibrator.to_dict(),
            "gate": self.gate.to_dict() if self.gate is not None else None,
            "context_index": list(self.context_index), "inner": self.inner.to_state(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ServedEnsemble:
        """Rebuild from `to_state()`; a bare `DynamicEnsemble` state (runs fitted before the
        served forms existed) becomes the dynamic form over every model, uncalibrated."""
        if state.get("kind") != STATE_KIND:
            inner = DynamicEnsemble.from_state(state)
            form = "static" if inner.params.is_static else "dynamic"
            return cls(form, inner.model_names, inner.model_names, inner.params.threshold, inner)
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported served-ensemble state version. Received: {state.get('version')!r}, "
                             f"expected {STATE_VERSION}")
        gate = Gate.from_dict(state["gate"]) if state.get("gate") else None
        alarm = AlarmPolicy.from_dict(state["alarm"]) if state.get("alarm") else None
        served = cls(state["form"], state["model_names"], state["members"], float(state["threshold"]),
                     DynamicEnsemble.from_state(state["inner"]), gate=gate,
                     calibrator=Calibrator.from_dict(state.get("calibrator")),
                     context_index=state.get("context_index") or (), alarm=alarm)
        for zone, st in (state.get("alarm_states") or {}).items():
            minute = st.get("minute")
            served._alarm_states[str(zone)] = (AlarmState(served.alarm).load(st), None if minute is None else int(minute))
        return served

    def describe(self) -> dict[str, Any]:
        """A short JSON-able summary (form, members, threshold, calibrator method)."""
        return {"form": self.form, "members": list(self.members), "threshold": self.threshold,
                "alarm": self.alarm.to_dict(), "calibrator": self.calibrator.method}


def run_online(
    served: ServedEnsemble,
    zones: Sequence[str],
    scores: np.ndarray,
    outcomes: np.ndarray,
    feedback_lag: int,
    context: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Replay a scored series through `served` (mutated: it ends in the state after the last
    outcome given), as serving would see it in time order.

    Each zone's rows must be in time order (zones may be interleaved or in blocks). Before row i
    of a zone is combined, the outcome of that zone's row i − feedback_lag is fed back (NaN
    outcomes skipped). Rows j whose prediction + lag lies beyond the series are fed at the end, so
    the returned object has learned every defined outcome (the fitted state).

    Args:
        zones: [N] zone name of each row. scores: [N, M] every run model's score.
        outcomes: [N] 0/1, NaN undefined. context: [N, C] the gate's context (None: gate default).

    Returns:
        prob [N] calibrated probabilities, weights [N, M] the weights each prediction used.
    """
    scores = np.asarray(scores, dtype=np.float64)
    outcomes = np.asarray(outcomes, dtype=np.float64).reshape(-1)
    n = scores.shape[0]
    if len(zones) != n or outcomes.size != n or (context is not None and len(context) != n):
        raise ValueError(f"zones, scores, outcomes (and context) need one row each. Received: {len(zones)}, "
                         f"{n}, {outcomes.size}")
    if int(feedback_lag) != feedback_lag or feedback_lag < 1:
        raise ValueError(f"feedback_lag must be an integer >= 1. Received: feedback_lag={feedback_lag}")
    prob = np.empty(n)
    weights = np.empty((n, len(served.model_names)))
    seen: dict[str, list[int]] = {}
    for i in range(n):
        zone = str(zones[i])
        rows = seen.setdefault(zone, [])
        if len(rows) >= feedback_lag:
            j = rows[len(rows) - feedback_lag]
            if not math.isnan(outcomes[j]):
                served.update(zone, scores[j], outcomes[j])
        ctx = None if context is None else context[i]
        p, w = served.combine(zone, scores[i], ctx)
        prob[i] = p
        weights[i] = [w[name] for name in served.model_names]
        rows.append(i)
    for zone, rows in seen.items():  # the outcomes that arrive after the last prediction
        for j in rows[max(len(rows) - feedback_lag, 0):]:
            if not math.isnan(outcomes[j]):
                served.update(zone, scores[j], outcomes[j])
    return prob, weights
