"""fabray watching itself (DESIGN §6, issue 13 item 2): how well the live feed's alarms do, and
whether its inputs still look like the training data.

With outcomes derived by the feed itself (`fabray.serve.feed`), every prediction becomes a
(decision, event) pair H minutes later, and every observed row says what the inputs look like
now. `FeedMonitor` keeps both, bounded, and summarises them for GET /v1/feed (`monitor`) and
the Prometheus gauges. Definitions:

- **Zone event metrics.** A prediction's decision is the alarm the feed raised that minute (the
  served alarm policy's); its event is the training label of that minute (`delay_event`, as the
  feed derives it). tp = alarm ∧ event, fp = alarm ∧ ¬event, fn = ¬alarm ∧ event,
  tn = ¬alarm ∧ ¬event, counted over the outcomes whose *prediction minute* lies in the last
  `window_min` minutes (up to the newest outcome minute of any zone, so a zone that stopped
  sending ages out). precision = tp / (tp + fp), recall = tp / (tp + fn),
  f1 = 2tp / (2tp + fp + fn): `fabray.metrics.event_metrics`' definitions, minute by minute,
  except that a ratio with a zero denominator is None (undefined), not 0.0, so that a zone which
  had no event in the window shows no recall rather than a recall of 0. Degraded predictions
  count (their decision was shown to the operators); a prediction with no defined outcome
  (a gap in its horizon) does not. `overall` pools every zone's counts.
- **Median realised lead** of a zone: the median `lead_min` of its alerts closed on an episode
  (`fabray.serve.alerts`) whose episode ended inside the window; None when none did.
- **Input drift**, per raw input feature (`schema.FEATURES`, in the data contract's raw units,
  all zones pooled, since the run's scaler was fitted on all zones' training rows pooled, in raw
  units, with an empty transport time carried forward, as here): an exponentially weighted mean
  and std of the rows received, weight 2^(−age / half-life) with age in feed minutes behind the
  newest minute seen, and
      drift score = |recent mean − training mean| / training std
  with the training mean and std the scaler's (its std is 1.0 where the feature was constant in
  training, so the score is then the move in raw units). `std_ratio` = recent std / training
  std is reported beside it (not used for the advice). Scores exist once the feed has covered
  one half-life (before that a few rows would look like drift).
- **Retrain advised** when the largest drift score exceeds `drift_threshold` (default 1.0: the
  recent mean of some input has moved by one training standard deviation), or, when
  `recall_floor` is set, the overall rolling recall falls below it with at least
  `recall_min_events` event minutes in the window. `retrain_reasons` says which.

State round-trips through `to_state` / `from_state` (JSON-able, exact), persisted with the
feed's state so a restart loses nothing. Pure Python + numpy: no Ray.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from fabray import schema
from fabray.config import ServeMonitor

logger = logging.getLogger(__name__)

MONITOR_FORMAT = 1
#: One character per prediction minute: tp, fp, fn, tn, or no outcome.
_CODE = {(True, True): ord("p"), (True, False): ord("f"), (False, True): ord("n"), (False, False): ord("t")}
_NONE = ord(".")

#: Training statistics of the raw inputs: feature → (mean, std), in raw units.
TrainingStats = Mapping[str, tuple[float, float]]


def training_stats(scaler: Mapping[str, Any] | None) -> dict[str, tuple[float, float]] | None:
    """The raw input features' training mean and std from a run's scaler (`Scaler.to_dict()`:
    features, mean, scale, fitted on the training rows in raw units); None without a scaler.
    Context columns (calendar, plan, neighbours) are left out: drift is watched on the rows the
    feed receives."""
    if not scaler:
        return None
    try:
        pairs = zip(scaler["features"], scaler["mean"], scaler["scale"], strict=True)
        stats = {str(name): (float(mean), float(scale)) for name, mean, scale in pairs}
    except (KeyError, TypeError, ValueError) as err:
        logger.warning("the served version's scaler cannot be read for drift (%s): drift not watched", err)
        return None
    return {name: stats[name] for name in schema.FEATURES if name in stats} or None


def _ratio(num: int, den: int) -> float | None:
    return num / den if den > 0 else None


def _minute_text(minute: int) -> str:
    """As `fabray.serve.feed_rows.minute_text` (feed_rows imports this module, not the other way round)."""
    return str(np.datetime64(int(minute), "m"))


def event_counts(codes: bytes | bytearray) -> dict[str, Any]:
    """tp, fp, fn, tn, n, precision, recall, f1 of a run of outcome codes (module doc)."""
    tp, fp, fn, tn = (codes.count(c) for c in (ord("p"), ord("f"), ord("n"), ord("t")))
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "n": tp + fp + fn + tn,
            "precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn), "f1": _ratio(2 * tp, 2 * tp + fp + fn)}


# ---------------------------------------------------------------------------- outcomes


class ZoneOutcomes:
    """One zone's recent outcomes: one code per prediction minute from `start` (bounded by the
    window)."""

    def __init__(self, start: int, codes: bytes | bytearray = b"") -> None:
        self.start = int(start)
        self.codes = bytearray(codes)

    def add(self, minute: int, code: int, window: int) -> None:
        offset = minute - self.start
        if offset < 0:  # older than what is kept (outcomes come in minute order per zone)
            return
        if offset >= len(self.codes) + window:  # a long silence: nothing kept is still inside
            self.start, self.codes, offset = minute, bytearray(), 0
        if offset >= len(self.codes):
            self.codes.extend(bytes([_NONE]) * (offset - len(self.codes)))
            self.codes.append(code)
        else:
            self.codes[offset] = code
        drop = len(self.codes) - window
        if drop > 0:
            del self.codes[:drop]
            self.start += drop

    def since(self, first: int) -> bytes:
        """The codes of prediction minutes >= `first`."""
        return bytes(self.codes[max(0, first - self.start):])


# ---------------------------------------------------------------------------- drift


class InputDrift:
    """Exponentially weighted mean and variance of each raw input feature, all zones pooled
    (module doc). A zone's empty value (NaN: a minute with no completion) is its last value
    carried forward, as in training; before any, it is skipped."""

    def __init__(self, features: Sequence[str], half_life_min: float) -> None:
        self.features = tuple(features)
        self.half_life_min = float(half_life_min)
        n = len(self.features)
        self.clock: int | None = None  # the newest minute seen
        self.first: int | None = None  # the oldest minute seen
        self.weight = np.zeros(n)  # [F] sum of the weights of the values seen
        self.mean = np.zeros(n)  # [F]
        self.m2 = np.zeros(n)  # [F] weighted sum of squared deviations
        self.last: dict[str, np.ndarray] = {}  # zone → [F] last finite values (NaN: none yet)

    def update(self, zone: str, minute: int, values: Sequence[float]) -> None:
        x = np.asarray(values, dtype=np.float64)  # [F] raw
        last = self.last.get(zone)
        if last is not None:
            x = np.where(np.isnan(x), last, x)
        self.last[zone] = x.copy()
        if self.clock is None:
            self.clock = self.first = int(minute)
        self.first = min(self.first, int(minute))
        if minute > self.clock:  # time moves on: every earlier value decays
            decay = 0.5 ** ((minute - self.clock) / self.half_life_min)
            self.weight *= decay
            self.m2 *= decay
            self.clock = int(minute)
        w = 0.5 ** ((self.clock - minute) / self.half_life_min)  # a row behind the clock counts less
        seen = np.isfinite(x)
        weight = self.weight + np.where(seen, w, 0.0)
        delta = np.where(seen, x - self.mean, 0.0)
        mean = self.mean + np.divide(w * delta, weight, out=np.zeros_like(delta), where=weight > 0)
        self.m2 = self.m2 + np.where(seen, w * delta * (np.where(seen, x, 0.0) - mean), 0.0)
        self.mean, self.weight = mean, weight

    @property
    def ready(self) -> bool:
        """True once the rows seen span one half-life."""
        return self.clock is not None and self.clock - self.first >= self.half_life_min

    def summary(self, training: TrainingStats | None, threshold: float) -> dict[str, Any]:
        var = np.divide(self.m2, self.weight, out=np.zeros_like(self.m2), where=self.weight > 0)
        std = np.sqrt(np.maximum(var, 0.0))
        features: dict[str, dict[str, Any]] = {}
        for j, name in enumerate(self.features):
            seen = self.weight[j] > 0
            item: dict[str, Any] = {"recent_mean": float(self.mean[j]) if seen else None,
                                    "recent_std": float(std[j]) if seen else None,
                                    "train_mean": None, "train_std": None, "score": None, "std_ratio": None}
            if training is not None and name in training:
                mean0, std0 = training[name]
                item["train_mean"], item["train_std"] = mean0, std0
                if seen and self.ready:
                    item["score"] = abs(float(self.mean[j]) - mean0) / std0
                    item["std_ratio"] = float(std[j]) / std0
            features[name] = item
        scored = {name: f["score"] for name, f in features.items() if f["score"] is not None}
        worst = max(scored, key=scored.get) if scored else None
        return {
            "definition": "|recent mean - training mean| / training std (per raw feature, all zones pooled)",
            "half_life_min": self.half_life_min,
            "threshold": float(threshold),
            "ready": self.ready and bool(scored),
            "reason": (None if scored else "no training statistics for the served version" if training is None
                       else f"warming up: the feed has covered {0 if self.clock is None else self.clock - self.first}"
                            f" of the {self.half_life_min:g} minutes of one half-life"),
            "since": None if self.first is None else _minute_text(self.first),
            "until": None if self.clock is None else _minute_text(self.clock),
            "max_score": scored[worst] if worst else None,
            "max_feature": worst,
            "features": features,
        }

    def to_state(self) -> dict[str, Any]:
        return {"features": list(self.features), "clock": self.clock, "first": self.first,
                "weight": self.weight.tolist(), "mean": self.mean.tolist(), "m2": self.m2.tolist(),
                "last": {z: [None if math.isnan(v) else v for v in x.tolist()] for z, x in sorted(self.last.items())}}

    def load_state(self, data: Mapping[str, Any]) -> None:
        if tuple(data["features"]) != self.features:
            raise ValueError(f"drift state for features {data['features']}, expected {list(self.features)}")
        n = len(self.features)
        arrays = [np.asarray(data[k], dtype=np.float64) for k in ("weight", "mean", "m2")]
        if any(a.shape != (n,) for a in arrays):
            raise ValueError("drift state arrays do not match the features")
        self.weight, self.mean, self.m2 = arrays
        self.clock = None if data["clock"] is None else int(data["clock"])
        self.first = None if data["first"] is None else int(data["first"])
        self.last = {str(z): np.array([math.nan if v is None else float(v) for v in x], dtype=np.float64)
                     for z, x in (data.get("last") or {}).items()}


# ---------------------------------------------------------------------------- the monitor


class FeedMonitor:
    """Rolling per-zone event metrics, input drift and the retrain advice (module doc).

    Args:
        settings: `serve.monitor` (window, half-life, threshold, recall floor).
        features: the raw input features, in the order rows give them.
    """

    def __init__(self, settings: ServeMonitor | None = None, features: Sequence[str] = schema.FEATURES) -> None:
        self.settings = settings or ServeMonitor()
        self.features = tuple(features)
        self.zones: dict[str, ZoneOutcomes] = {}
        self.now: int | None = None  # the newest prediction minute with an outcome
        self.drift = InputDrift(self.features, self.settings.drift_half_life_min)
        #: the served version's training statistics (`training_stats`), set by the feed
        self.training: dict[str, tuple[float, float]] | None = None

    # ------------------------------------------------------------------ updates

    def observe_row(self, zone: str, minute: int, values: Sequence[float]) -> None:
        """A raw row the feed accepted ([F] in `features` order, NaN: empty)."""
        self.drift.update(zone, int(minute), values)

    def observe_outcome(self, zone: str, minute: int, decision: bool | None, event: float | None) -> None:
        """The outcome of the prediction made for `zone` at `minute`: the decision the feed took
        and the event label (1/0; None or NaN: undefined, skipped)."""
        if decision is None or event is None or math.isnan(event):
            return
        window = self.settings.window_min
        code = _CODE[(bool(decision), float(event) == 1.0)]
        outcomes = self.zones.get(zone)
        if outcomes is None:
            outcomes = self.zones[zone] = ZoneOutcomes(minute)
        outcomes.add(int(minute), code, window)
        self.now = int(minute) if self.now is None else max(self.now, int(minute))

    # ------------------------------------------------------------------ reading

    def zone_metrics(self, alerts: Iterable[Mapping[str, Any]] = ()) -> dict[str, dict[str, Any]]:
        """zone → counts, precision, recall, f1, median_lead_min, alerts_with_lead over the window."""
        first = None if self.now is None else self.now - self.settings.window_min + 1
        leads: dict[str, list[float]] = {}
        for alert in alerts:
            if alert.get("status") != "closed" or alert.get("lead_min") is None:
                continue
            end = alert.get("episode_end")
            if first is not None and end is not None and int(end) < first:
                continue
            leads.setdefault(str(alert["zone"]), []).append(float(alert["lead_min"]))
        out = {}
        for zone in sorted(set(self.zones) | set(leads)):
            outcomes = self.zones.get(zone)
            counts = event_counts(outcomes.since(first) if outcomes is not None and first is not None else b"")
            zone_leads = leads.get(zone, [])
            out[zone] = counts | {"median_lead_min": float(np.median(zone_leads)) if zone_leads else None,
                                  "alerts_with_lead": len(zone_leads)}
        return out

    def summary(self, training: TrainingStats | None = None,
                alerts: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
        """What GET /v1/feed shows under `monitor` (JSON-able, no NaN): `training` is the served
        version's statistics (`training_stats`; default: `self.training`), `alerts` the alert
        book's alerts (raw, with `episode_end` as minutes: `AlertBook.all_alerts()`)."""
        cfg = self.settings
        training = self.training if training is None else training
        zones = self.zone_metrics(alerts)
        first = None if self.now is None else self.now - cfg.window_min + 1
        pooled = b"".join(o.since(first) for o in self.zones.values()) if first is not None else b""
        overall = event_counts(pooled)
        drift = self.drift.summary(training, cfg.drift_threshold)
        reasons = []
        if drift["max_score"] is not None and drift["max_score"] > cfg.drift_threshold:
            reasons.append(f"input drift: {drift['max_feature']} scores {drift['max_score']:.2f} "
                           f"> threshold {cfg.drift_threshold:g}")
        events = overall["tp"] + overall["fn"]
        if (cfg.recall_floor is not None and events >= cfg.recall_min_events
                and overall["recall"] is not None and overall["recall"] < cfg.recall_floor):
            reasons.append(f"rolling recall {overall['recall']:.2f} < floor {cfg.recall_floor:g} "
                           f"over {events} event minutes")
        return {
            "window_min": cfg.window_min,
            "since": None if first is None else _minute_text(first),
            "until": None if self.now is None else _minute_text(self.now),
            "zones": zones,
            "overall": overall,
            "drift": drift,
            "retrain_advised": bool(reasons),
            "retrain_reasons": reasons,
        }

    # ------------------------------------------------------------------ persistence

    def to_state(self) -> dict[str, Any]:
        return {"format": MONITOR_FORMAT, "now": self.now,
                "zones": {z: {"start": o.start, "codes": o.codes.decode("ascii")}
                          for z, o in sorted(self.zones.items())},
                "drift": self.drift.to_state(),
                "training": None if self.training is None else {k: list(v) for k, v in self.training.items()}}

    def load_state(self, data: Mapping[str, Any]) -> None:
        """Back from `to_state`; ValueError (nothing changed) when it is not one."""
        if data.get("format") != MONITOR_FORMAT:
            raise ValueError(f"monitor state format {data.get('format')!r}, expected {MONITOR_FORMAT}")
        drift = InputDrift(self.features, self.settings.drift_half_life_min)
        drift.load_state(data["drift"])
        zones = {str(z): ZoneOutcomes(int(o["start"]), str(o["codes"]).encode("ascii"))
                 for z, o in data.get("zones", {}).items()}
        training = data.get("training")
        self.training = None if training is None else {str(k): (float(v[0]), float(v[1])) for k, v in training.items()}
        self.zones, self.drift = zones, drift
        self.now = None if data.get("now") is None else int(data["now"])

    @classmethod
    def from_state(cls, data: Mapping[str, Any], settings: ServeMonitor | None = None,
                   features: Sequence[str] = schema.FEATURES) -> FeedMonitor:
        monitor = cls(settings, features)
        monitor.load_state(data)
        return monitor


__all__ = ["FeedMonitor", "InputDrift", "TrainingStats", "ZoneOutcomes", "event_counts", "training_stats"]
