"""What a training worker is given and what it keeps (pure: no Ray, no TensorFlow).

`WorkerSpec`: one model's settings, plain values that pickle anywhere. `EarlyStoppingState`:
where training is and the best validation score so far; it travels with every checkpoint, so a
restarted worker resumes with it. `validation_score`: the one number epochs are ranked by
(`SCORE` in every report; Ray keeps checkpoints by it). `budget_allows_next_epoch`: the
wall-clock budget's rule between epochs. The worker function itself is `fabray.train.loop`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

MODEL_FILE = "model.keras"
STATE_FILE = "state.json"
#: The key every report carries and checkpoints are ranked by (higher is better).
SCORE = "val_score"
VAL_CHUNK = 4096  # validation windows gathered and scored at once: [4096, L, F]


@dataclass(frozen=True)
class WorkerSpec:
    """Everything one model's worker needs besides the arrays (plain values: pickles anywhere)."""

    model: str
    overrides: dict[str, Any]
    task: str  # "event" (the only task)
    lookback: int
    n_features: int
    epochs: int
    batch_size: int
    learning_rate: float
    patience: int
    precision: str
    shuffle_buffer: int
    event_threshold: float
    seed: int
    cpus: float
    #: Stop training by this time (seconds since the epoch, `time.time()`); None: no budget.
    deadline_unix: float | None = None
    #: Keras' TensorBoard callback writes this model's event files here (rank 0 only; the
    #: driver passes `RUN/models/<name>/tensorboard`); None: no TensorBoard files.
    tensorboard_dir: str | None = None
    #: Sampled epochs (`fabray.train.sampling`): windows per epoch, or a share of the training
    #: windows; both None: full epochs. Strata: a delay event where the fit target > `sampling.EVENT_CUT`.
    windows_per_epoch: int | None = None
    epoch_fraction: float | None = None
    #: The training split's feature statistics (`Scaler.to_dict()`): the model's first layer
    #: z-scores its raw windows with them. None: identity (tests).
    scaler: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerSpec:
        return cls(**data)


@dataclass
class EarlyStoppingState:
    """What survives a restart: where training is and the best score so far."""

    epoch: int = -1  # last finished epoch (0-based); -1 before the first
    best_epoch: int = -1
    best_score: float = -math.inf
    wait: int = 0  # epochs since the best one
    stopped_early: bool = False
    precision: str = "float32"
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: list[int] = field(default_factory=list)  # 1-based epochs restarts resumed after
    warm_started: bool = False  # began from a parent model's weights (`fabray retrain`)
    stopped_by_budget: bool = False

    def update(self, epoch: int, score: float, patience: int) -> bool:
        """Record epoch `epoch`'s score; True when it is the best so far."""
        self.epoch = epoch
        improved = score > self.best_score
        if improved:
            self.best_epoch, self.best_score, self.wait = epoch, score, 0
        else:
            self.wait += 1
        self.stopped_early = self.wait >= patience
        return improved

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["best_score"] = _finite_or_none(self.best_score)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EarlyStoppingState:
        data = dict(data)
        if data.get("best_score") is None:
            data["best_score"] = -math.inf
        return cls(**data)


def validation_score(metrics: dict[str, float], val_loss: float) -> float:
    """One number to rank epochs by, higher is better.

    Validation PR-AUC (F1 and PR-AUC decide, DESIGN §1; PR-AUC needs no threshold);
    when it is undefined (validation holds one class only) −val_loss, for every epoch alike since
    the validation set does not change.
    """
    value = metrics.get("pr_auc", math.nan)
    return float(value) if math.isfinite(value) else -float(val_loss)


def budget_allows_next_epoch(now_unix: float, deadline_unix: float | None, epoch_seconds: float) -> bool:
    """Whether another epoch, as long as the last one, would end before the deadline."""
    if deadline_unix is None:
        return True
    return now_unix + max(0.0, epoch_seconds) <= deadline_unix


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def clean_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe metrics: NaN/inf → None, numpy → Python."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, (float, np.floating)):
            out[key] = _finite_or_none(float(value))
        elif isinstance(value, np.integer):
            out[key] = int(value)
        else:
            out[key] = value
    return out
