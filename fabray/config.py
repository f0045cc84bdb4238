"""fabray's configuration: YAML or CLI → validated pydantic models → handed to pure code.

Every section is a frozen pydantic model with a description on every field. Pure code (data,
models, ensemble) receives these immutable objects; it never reads files or environment itself.

Why one file of ~770 lines: it is the settings reference (every key a YAML file may hold, its
default and its meaning, read top to bottom like the `config` section of the docs); split by
section it would scatter that reference and each section's cross-checks across modules.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from os import PathLike
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fabray.errors import BadInputError


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TaskConfig(_Section):
    """What is predicted (DESIGN §1)."""

    lookback: int = Field(100, ge=2, description="Minutes of history in one window.")
    horizon: int = Field(10, ge=1, description="Minutes ahead whose mean delay is the target.")
    sla_delay_s: float = Field(
        60.0, gt=0, description="A mean delay above this many seconds is a delay event."
    )
    task: Literal["event"] = Field(
        "event", description="'event' (the only task built): the binary delay_event, a logit head "
        "per model. Kept as a key so that the task a run was trained for stays explicit.",
    )
    nominal_transport_time_s: dict[str, float] | None = Field(
        None,
        description="Nominal transport time per zone, seconds. Zones missing here use their "
        "median transport_time_s over the training split (stored with the model).",
    )
    early_warning_min: int = Field(
        5, ge=0, le=60,
        description="Training target that favours early alarms: a window is labelled an event when "
        "the delay event holds at its end or within this many minutes after it (an episode starts "
        "soon). Evaluation and thresholds always use the plain event. 0: train on the plain event.",
    )

    @field_validator("task", mode="before")
    @classmethod
    def _only_event(cls, value: Any) -> Any:
        if value != "event":
            raise ValueError(
                "only task 'event' is built (the 'delay' regression task was removed: ensemble "
                f"and evaluate never supported it). Received: task={value!r}"
            )
        return value


_HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class SiteConfig(_Section):
    """What a site knows ahead of time and how its zones connect (DESIGN §1, "Inputs known
    ahead"): each group of context inputs can be switched off for ablations."""

    shift_changes: tuple[Annotated[str, Field(pattern=_HHMM)], ...] = Field(
        ("06:00", "14:00", "22:00"),
        description="Local times of the shift changes, 'HH:MM' (calendar input: minutes until the "
        "next one and since the last one).",
    )
    topology: Literal["ring"] | dict[str, list[str]] = Field(
        "ring",
        description="Zone neighbours: 'ring' (the zones in name order on a loop: the previous zone is "
        "upstream, the next downstream) or a mapping zone → list of neighbour zones (a real site's "
        "layout; the list order fixes each neighbour's input slot).",
    )
    calendar: bool = Field(True, description="Calendar inputs from the timestamp (time of day, day of "
                           "week, shift changes).")
    plan: bool = Field(True, description="Known-future plan columns (e.g. lots_planned, pm_planned) "
                       "when the data has them: a window also sees their next `horizon` minutes.")
    neighbours: bool = Field(True, description="Features of the zone's neighbours on the topology.")
    neighbour_features: tuple[str, ...] = Field(
        ("queue_len", "vehicles_down", "blocked_segments", "vehicle_util", "transport_time_s"),
        description="Observed features taken from each neighbour (transport_time_s enters as the "
        "neighbour's delay against its nominal).",
    )


class SplitConfig(_Section):
    """Time-ordered train / validation / test split, with a leak-free gap between them."""

    train_fraction: float = Field(0.7, gt=0, lt=1, description="Share of each zone's minutes for training.")
    val_fraction: float = Field(0.15, gt=0, lt=1, description="Share of each zone's minutes for validation.")


class ModelResources(_Section):
    """What one model's single Ray Train worker reserves (DESIGN §4)."""

    cpus: float = Field(1.0, gt=0, description="Logical CPUs reserved by the model's worker.")
    gpus: float = Field(
        0.16, ge=0, le=8,
        description="GPUs (a fraction shares one GPU: six models × 0.16 fit on one) when GPUs are "
        "used; ignored on a CPU-only run.",
    )


class TrainConfig(_Section):
    """Training the model zoo on Ray Train: one single-worker trainer per model, run concurrently."""

    models: tuple[str, ...] = Field(
        ("lstm", "gru", "cnn_lstm", "spike", "rule", "patchtst"),
        min_length=1, description="Models to train (names from `fabray models`).",
    )
    epochs: int = Field(20, ge=1, description="Maximum epochs per model.")
    batch_size: int = Field(128, ge=1, description="Windows per training batch.")
    learning_rate: float = Field(1e-3, gt=0, description="Adam learning rate.")
    early_stopping_patience: int = Field(
        3, ge=1, description="Stop after this many epochs without a better validation score; "
        "the best epoch's model is kept.",
    )
    model_overrides: dict[str, dict] = Field(
        default_factory=dict,
        description="Per-model hyper-parameter overrides, keyed by model name (the one place "
        "they are set; `fabray models` reads them too); keys are the fields of that model's config "
        "dataclass, e.g. {'lstm': {'lstm_units': [16], 'head_units': [8]}, 'rule': {'rules': "
        "[{'name': 'high_utilization', 'feature': 'vehicle_util', 'threshold': 0.9, 'softness': "
        "0.02, 'weight': 1.5}]}}. Unknown names or fields are refused when a model is built.",
    )
    resources: ModelResources = Field(
        default_factory=ModelResources, description="Default per-model worker resources."
    )
    resources_per_model: dict[str, ModelResources] = Field(
        default_factory=dict, description="Per-model resources overriding `resources`."
    )
    use_gpu: Literal["auto", "true", "false"] = Field(
        "auto", description="'auto': use GPUs when the cluster has any."
    )
    precision: Literal["auto", "float32", "mixed_float16"] = Field(
        "auto", description="'auto': mixed_float16 when the worker sees a GPU of compute "
        "capability >= 7.0, else float32.",
    )
    max_concurrent: int | None = Field(
        None, ge=1, description="Trainers running at once (default: as many as the cluster's "
        "CPUs allow while leaving `reserve_cpus` free for Ray Data).",
    )
    reserve_cpus: float = Field(
        1.0, ge=0, description="CPUs left unreserved by trainers, for Ray Data's window tasks.",
    )
    max_failures: int = Field(
        1, ge=-1, description="Worker failures a model's run recovers from (-1: unlimited); it "
        "resumes from its last checkpoint.",
    )
    checkpoints_to_keep: int = Field(
        2, ge=1, description="Ray checkpoints kept per model, best by validation score (the "
        "latest is always kept too, for resuming).",
    )
    shuffle_buffer: int = Field(10_000, ge=1, description="Windows in the local shuffle buffer.")
    event_threshold: float = Field(
        0.5, gt=0, lt=1, description="Probability above which a validation window counts as an "
        "event for accuracy/precision/recall/F1 (PR-AUC does not depend on it).",
    )
    seed: int = Field(0, description="Random seed for weights and shuffling.")
    windows_per_epoch: int | None = Field(
        None, ge=1, description="Sampled epochs: each epoch fits on a fresh, seeded sample of this "
        "many training windows, stratified so delay events keep their share (fabray.train.sampling); "
        "None: every training window every epoch.",
    )
    epoch_fraction: float | None = Field(
        None, gt=0, le=1, description="Sampled epochs as a share of the training windows (instead "
        "of windows_per_epoch; not both). None: full epochs.",
    )
    val_windows: int | None = Field(
        None, ge=1, description="Score each epoch (early stopping, the best checkpoint) on a fixed, "
        "seeded sample of this many validation windows, stratified like the sampled epochs, the same "
        "sample every epoch; None: every validation window. At POC scale the full validation split "
        "(~117k windows) costs each model more than a sampled epoch's training.",
    )
    budget_min: float | None = Field(
        None, gt=0, description="Wall-clock budget of `fabray train`'s training, minutes "
        "(`--budget 60m`), shared by the models (fabray.train.budget); None: no budget.",
    )

    @model_validator(mode="after")
    def _one_epoch_size(self) -> TrainConfig:
        if self.windows_per_epoch is not None and self.epoch_fraction is not None:
            raise ValueError("set train.windows_per_epoch or train.epoch_fraction, not both. Received: "
                             f"windows_per_epoch={self.windows_per_epoch}, epoch_fraction={self.epoch_fraction}")
        return self


class RetrainConfig(_Section):
    """Incremental retraining (`fabray retrain`, DESIGN §4): warm-start every model of a parent
    run on new data plus a replay sample of the parent's history, within a time budget."""

    epochs: int = Field(5, ge=1, description="Maximum fine-tuning epochs per model (early "
                        "stopping on validation still applies; the parent's weights are epoch 0).")
    learning_rate: float | None = Field(
        1e-4, gt=0, description="Adam learning rate for fine-tuning (a fresh optimizer); None: "
        "train.learning_rate. A tenth of training's by default: at POC scale one epoch at 1e-3 "
        "on one new day lowered every model's held-out PR-AUC (README, 'The POC scale').",
    )
    budget_minutes: float = Field(
        110.0, gt=0, description="Wall-clock budget of the whole retrain, from its start: training "
        "stops when it is spent (the seed's daily retrain must finish within 2 hours).",
    )
    replay_ratio: float = Field(
        0.5, ge=0, description="Replay windows drawn from the parent's history per new training "
        "window (0: no replay).",
    )
    replay_max_windows: int | None = Field(
        200_000, ge=0, description="Most replay windows drawn; None: no cap.",
    )
    replay_val_ratio: float = Field(
        1.0, ge=0, description="Validation windows drawn from the history's validation splits per "
        "new validation window: early stopping, and whether any fine-tuned epoch beats the "
        "parent's weights (epoch 0), then also watch what the models must not forget (0: the "
        "new data's validation split alone).",
    )
    refit_scaler: bool = Field(
        False, description="False (recommended): keep the parent's feature scaler and nominal "
        "transport times, so warm-started weights see inputs scaled as in training, labels keep "
        "their meaning, and the ensemble and serving stay consistent. True: refit both on the "
        "new data's training split.",
    )
    refit_ensemble: bool = Field(
        False, description="After training, fit the ensemble on the new validation split "
        "(`fabray ensemble`) if budget is left and some model changed. False: keep the parent's "
        "fitted ensemble, fitted on its whole validation split (at POC scale a re-fit on one "
        "day's validation served one model at threshold 0.08: lead score 25.6 vs 33.5).",
    )
    ensemble_trials: int = Field(16, ge=1, description="Ray Tune trials of that ensemble fit.")


class SimulationConfig(_Section):
    """The fab-traffic simulator's physics (DESIGN §2); the preset sets the size (zones × minutes).

    Rates are per zone unless the name says otherwise. Zones differ from each other by up to
    ±`zone_spread` in vehicles, load and nominal transport time (drawn from the seed).
    """

    start: datetime = Field(
        datetime(2025, 1, 6), description="Timestamp of the first simulated minute (a midnight)."
    )
    zones: int | None = Field(
        None, ge=1, le=999,
        description="Number of zones (bays on the interbay ring); None: the preset's. "
        "`fabray simulate --zones` wins over this.",
    )
    vehicles_per_zone: int = Field(30, ge=2, description="OHT vehicles assigned to a zone.")
    base_load: float = Field(
        0.5, gt=0, lt=1.5,
        description="Mean transport demand as a fraction of a zone's free-flow capacity "
        "(vehicles × 60 / nominal transport time, per minute).",
    )
    zone_spread: float = Field(
        0.2, ge=0, lt=0.9,
        description="Relative spread of vehicles, load and nominal transport time across zones.",
    )
    nominal_transport_time_s: float = Field(
        150.0, gt=10,
        description="Free-flow transport time (approach + travel + load/unload, no waiting), "
        "seconds: the SLA-relevant nominal, varied per zone by `zone_spread`.",
    )
    nominal_by_zone_s: dict[str, float] = Field(
        default_factory=dict,
        description="Exact nominal transport time for named zones (e.g. {'Z01': 200}), overriding "
        "`nominal_transport_time_s` and its spread.",
    )
    shift_change_hours: tuple[Annotated[int, Field(ge=0, le=23)], ...] = Field(
        (6, 14, 22), description="Hours of day (0-23) when shifts change (surge of held lots after)."
    )
    shift_surge_gain: float = Field(
        0.5, ge=0, description="Peak extra demand after a shift change (0.5 = +50%, varies per event)."
    )
    shift_surge_min: float = Field(
        12.0, gt=0, description="Minutes after a shift change when its surge peaks."
    )
    lot_release_interval_min: float = Field(
        240.0, gt=10, description="Minutes between lot-release waves (they travel around the ring)."
    )
    lot_release_gain: float = Field(
        0.35, ge=0, description="Peak extra demand of a lot-release wave as it passes a zone."
    )
    hot_lots_per_hour: float = Field(
        6.0, ge=0, description="Priority (hot) lots requested per zone-hour; each one holds a vehicle."
    )
    demand_noise: float = Field(
        0.15, ge=0, description="Standard deviation of the slow (hour-scale) log-noise on demand."
    )
    breakdowns_per_vehicle_day: float = Field(
        0.3, ge=0,
        description="Vehicle faults per vehicle-day at 50% utilisation (more when busier).",
    )
    repair_time_min: float = Field(40.0, gt=0, description="Mean minutes to repair a faulted vehicle.")
    stuck_probability: float = Field(
        0.6, ge=0, le=1,
        description="Chance a fault leaves the vehicle stuck on the rail, blocking a segment.",
    )
    tow_time_min: float = Field(
        12.0, gt=0, description="Mean minutes to clear a stuck vehicle off the rail."
    )
    segments_per_zone: int = Field(12, ge=1, description="Rail segments in a zone (cap on blocks).")
    blockages_per_day: float = Field(
        6.0, ge=0, description="Rail-segment blockages per zone-day with no precursor (sensor, "
        "interlock, obstacle)."
    )
    blockage_clear_min: float = Field(
        8.0, gt=0, description="Mean minutes for a blocked segment to clear."
    )
    blockage_slowdown: float = Field(
        0.4, ge=0, lt=1, description="Fraction of speed (and capacity) lost per blocked segment."
    )
    spillover: float = Field(
        0.15, ge=0, lt=1,
        description="Speed lost in a zone when a neighbour on the interbay ring is fully "
        "congested (proportionally less when partly).",
    )
    rebalance: float = Field(
        0.5, ge=0, le=1,
        description="Share of a neighbour's idle vehicles sent over the interbay loop to a fully "
        "congested zone (proportionally fewer when partly congested).",
    )
    pm_per_day: float = Field(
        0.5, ge=0, description="Tool preventive-maintenance periods starting per zone-day."
    )
    pm_duration_h: float = Field(4.0, gt=0, description="Mean hours a tool PM lasts.")
    pm_wip_gain: float = Field(
        0.4, ge=0, description="Relative rise of waiting lots (WIP) during a tool PM."
    )
    wip_lots_per_zone: float = Field(120.0, gt=0, description="Typical lots waiting in a zone.")
    stocker_capacity_lots: float = Field(
        200.0, gt=0, description="Stocker places per zone; a nearly full stocker slows hand-offs."
    )
    base_speed_m_s: float = Field(3.0, gt=0, description="Free-flow mean vehicle speed, m/s.")
    transport_noise_s: float = Field(
        45.0, ge=0, description="Standard deviation of one transport's time around its expectation, s."
    )
    # The plan (columns lots_planned, pm_planned): what the MES scheduled, never the outcome.
    plan_time_jitter_min: float = Field(
        3.0, ge=0,
        description="Standard deviation, minutes, of the plan's timing error: a lot-release wave's "
        "planned arrival in the zones, and a planned PM's start and end, vs. what happened.",
    )
    plan_size_noise: float = Field(
        0.2, ge=0, lt=1,
        description="Relative error of a wave's planned lots per zone vs. its actual size: "
        "uniform in ±this (0.2 = ±20%).",
    )
    unplanned_release_share: float = Field(
        0.1, ge=0, le=1, description="Share of actual lot-release waves missing from the plan (unplanned)."
    )
    unplanned_pm_share: float = Field(
        0.2, ge=0, le=1, description="Share of actual tool PMs missing from the plan (unplanned)."
    )
    plan_cancelled_share: float = Field(
        0.05, ge=0, le=1,
        description="Planned lot-release waves and PMs that did not happen, as a share of the "
        "actual ones (in the plan, never in the traffic).",
    )
    # The diagnostic `cause` column.
    cause_min_delay_s: float = Field(
        30.0, gt=0,
        description="A zone-minute is congested (gets a cause) when its noise-free delay, i.e. "
        "queue wait (of its completions, or expected for a new request) + cycle time beyond the "
        "zone's nominal, is at least this many seconds (default: half the 60 s SLA).",
    )
    cause_memory_min: float = Field(
        25.0, gt=0,
        description="Time constant, minutes, of the exponential memory over which each driver's "
        "excess demand or lost capacity is summed to pick a minute's cause (queues outlast "
        "their cause).",
    )


class EnsembleConfig(_Section):
    """The dynamic weighted ensemble (DESIGN §5): starting values, which `fabray ensemble` (Ray
    Tune, on the validation split) refines and stores with the run."""

    base_weights: dict[str, float] | None = Field(
        None, description="Prior weight per model name (any scale, normalized over the models "
        "in the run; a model not listed gets 1.0). None: equal weights.",
    )
    half_life: float = Field(
        60.0, gt=0, description="Steps (outcomes of one zone, i.e. minutes) after which a model's "
        "past error counts half. .inf: weights never move (the static ensemble).",
    )
    floor: float = Field(
        0.02, ge=0, lt=1, description="No model's weight goes below this (must be <= 1 / models).",
    )
    step_cap: float = Field(
        0.05, gt=0, description="Largest change of any weight per step (>= 1: no cap).",
    )
    temperature: float = Field(
        0.05, gt=0, description="Weights ∝ base × exp(−decayed error / temperature), error in "
        "units of `loss`: smaller reacts more strongly to error differences.",
    )
    threshold: float = Field(
        0.5, ge=0, le=1, description="The ensemble raises an alarm where its probability >= this.",
    )
    loss: Literal["brier", "log"] = Field(
        "brier", description="Per-model error followed: 'brier' (squared error) or 'log' (clipped log-loss).",
    )
    feedback_lag: int | None = Field(
        None, ge=1, description="Minutes between a prediction and its known truth. None: task.horizon.",
    )
    alarm_hysteresis: bool = Field(
        True, description="Alarm policies (ensemble and each model) get a clear level and a hold "
        "fitted on validation with the threshold (`fabray.alarm`: fewer flickering false-alarm "
        "runs); false: bare thresholds (prob >= threshold). Only with tune_metric lead_score.",
    )
    max_false_alarms_per_zone_day: float | None = Field(
        None, ge=0, description="The site's false-alarm budget: alarm policies (ensemble, each model, "
        "the baselines) are chosen on validation among those raising at most this many false-alarm "
        "runs per zone-day (then by lead score); None: no budget, the lead score alone decides.",
    )
    tune_trials: int = Field(64, ge=1, description="Ray Tune trials for `fabray ensemble`.")
    tune_metric: Literal["lead_score", "f1", "pr_auc"] = Field(
        "lead_score", description="Validation metric Tune maximizes and thresholds are chosen by: "
        "lead_score (the headline, NAB-style early-warning score; F1 breaks ties), f1 or pr_auc "
        "(thresholds then F1-best).",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_use_regimes(cls, data: Any) -> Any:
        """`use_regimes` was a no-op (nothing ever supplied regimes) and is gone. `false`, which
        the runs written before store in their config.json, is dropped; anything else refused."""
        if isinstance(data, dict) and "use_regimes" in data:
            if data["use_regimes"] is not False:
                raise ValueError(
                    "ensemble.use_regimes was removed: nothing supplies regimes, so it never had an "
                    "effect (the weights are kept per zone). Delete the key. "
                    f"Received: use_regimes={data['use_regimes']!r}"
                )
            data = {key: value for key, value in data.items() if key != "use_regimes"}
        return data

    def to_params(self, model_names: tuple[str, ...] | list[str]):  # -> EnsembleParams
        """The pure `EnsembleParams` for these models, in this order."""
        from fabray.ensemble.params import EnsembleParams

        weights = self.base_weights or {}
        unknown = sorted(set(weights) - set(model_names))
        if unknown:
            raise BadInputError(
                f"ensemble.base_weights names models not in the run: {unknown}. "
                f"Received models: {list(model_names)}"
            )
        try:
            return EnsembleParams(
                base_weights=tuple(float(weights.get(name, 1.0)) for name in model_names),
                half_life=self.half_life, floor=self.floor, step_cap=self.step_cap,
                threshold=self.threshold, temperature=self.temperature, loss=self.loss,
            )
        except ValueError as err:
            raise BadInputError(f"invalid ensemble config: {err}") from err


class DegradedRules(_Section):
    """When a served window is scored by the rules model alone and flagged `degraded` (DESIGN §6)."""

    max_gap_minutes: int = Field(
        5, ge=0, description="Minutes with missing values (null) a window may hold; they are "
        "filled forward and the window is degraded. More than this: refused (422).",
    )
    stuck_minutes: int = Field(
        15, ge=2, description="A sensor repeating exactly the same value for this many trailing "
        "minutes counts as stuck (the window is degraded).",
    )
    stuck_features: tuple[str, ...] = Field(
        ("mean_speed", "stocker_fill"),
        description="Features checked for a stuck sensor: continuous readings that never repeat "
        "exactly in normal operation (not vehicle_util, which saturates at 1.0).",
    )


class ServeAutoscaling(_Section):
    """Ray Serve autoscaling of the predictor deployment (`num_replicas` is then 'auto')."""

    min_replicas: int = Field(1, ge=0, description="Fewest predictor replicas.")
    max_replicas: int = Field(2, ge=1, description="Most predictor replicas (e.g. one per GPU in Phase 3).")
    target_ongoing_requests: float = Field(
        16.0, gt=0, description="Ongoing requests per replica the autoscaler aims for."
    )


class ServeLimits(_Section):
    """How long, how much and how many a client may ask of the service."""

    data_dirs: list[str] | None = Field(
        None, description="Folders whose files clients may name (batch `path`, retrain `data`, "
        "model import `run`). None: the folder holding the model store (and the folder of "
        "`serve.batch_source`). An empty list: no server files at all.",
    )
    body_read_timeout_s: float = Field(
        10.0, gt=0, description="The whole request body must arrive within this many seconds "
        "of the request's start, else 408 (slow or stalled clients free their slot).",
    )
    request_timeout_s: float = Field(
        120.0, gt=0, description="Ray Serve's end-to-end HTTP request timeout (http_options."
        "request_timeout_s), set where `fabray serve` starts Serve and in cluster/serve.yaml.",
    )
    ingress_max_ongoing_requests: int = Field(
        2048, ge=1, description="Requests in flight per HTTP ingress replica (the predictor "
        "replicas: /v1/predict is one hop); a request waiting for its body costs a coroutine "
        "and holds a slot, so this is well above the windows a replica scores at once.",
    )
    small_body_bytes: int = Field(
        64 * 1024, ge=1024, description="Body limit of the routes that take a few fields "
        "(import, promote, rollback, retrain).",
    )
    max_active_batch_jobs: int = Field(
        2, ge=1, description="Batch jobs pending or running at once (scheduled ones included); "
        "more are refused with 429 until one ends.",
    )
    max_active_retrains: int = Field(
        1, ge=1, description="Retraining jobs pending or running at once; more are refused with 429.",
    )


class ServeFeed(_Section):
    """The live feed and its alerts (`POST /v1/observe`, `GET /v1/alerts`; DESIGN §6)."""

    max_rows: int = Field(5000, ge=1, description="Rows one /v1/observe call may carry (413 above).")
    alerts_kept: int = Field(1000, ge=1, description="Alerts remembered (the oldest are forgotten first).")
    weights_history: int = Field(5000, ge=1, description="Weight changes kept for GET /v1/weights.")
    webhook_url: str | None = Field(
        None, description="URL each opened and closed alert is POSTed to (JSON); None: no webhook.",
    )
    webhook_timeout_s: float = Field(2.0, gt=0, description="Time allowed per webhook attempt.")
    webhook_retries: int = Field(3, ge=0, le=10, description="Attempts after a failed one (backoff doubles).")
    webhook_queue_size: int = Field(
        1000, ge=1, description="Alert events waiting for the webhook; more are dropped, never waited for.",
    )


class ServeMonitor(_Section):
    """fabray watching itself (`fabray.serve.monitor`, issue 13): each zone's rolling precision,
    recall and realised lead from the feed's own outcomes, input drift against the training
    statistics, and when to advise a retrain. Shown in GET /v1/feed (`monitor`) and exported to
    Prometheus."""

    window_min: int = Field(
        1440, ge=1, description="Minutes of outcomes (by prediction minute) each zone's precision, "
        "recall, F1 and median realised lead are computed over.",
    )
    drift_half_life_min: float = Field(
        360.0, gt=0, description="Half-life, in feed minutes, of the exponentially weighted recent "
        "mean and std of each input feature (all zones pooled, as the training statistics are); "
        "drift is scored once the feed has covered one half-life.",
    )
    drift_threshold: float = Field(
        1.0, gt=0, description="Retrain advised when a feature's drift score, |recent mean − training "
        "mean| / training std (the run's scaler), exceeds this: 1.0 = the recent mean has moved by "
        "one training standard deviation.",
    )
    recall_floor: float | None = Field(
        None, ge=0, le=1, description="Retrain advised also when the rolling recall over all zones "
        "falls below this (once `recall_min_events` event minutes are in the window); None: drift only.",
    )
    recall_min_events: int = Field(
        50, ge=1, description="Event minutes (tp + fn, all zones) the window needs before the recall floor applies.",
    )


class ServeConfig(_Section):
    """The Ray Serve application (`fabray serve`, `cluster/serve.yaml`; DESIGN §6)."""

    host: str = Field("127.0.0.1", description="Address the HTTP proxy listens on (loopback by default).")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port.")
    app_name: str = Field("fabray", min_length=1, description="Serve application name.")
    store_dir: str | None = Field(
        None, description="Versioned model store directory. None: `serve-store` next to the run.",
    )
    max_windows_per_request: int = Field(256, ge=1, description="Windows one /v1/predict call may carry.")
    max_body_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 above)."
    )
    max_batch_size: int = Field(64, ge=1, description="Windows @serve.batch groups into one model call.")
    batch_wait_timeout_s: float = Field(
        0.005, ge=0, description="Longest wait for a batch to fill before it is scored anyway: a "
        "lone request pays it, concurrent ones share model calls (16 clients, six default models, "
        "2 busy cores: 20 windows/s at 0, 27 at 0.002, 43 at 0.005; waiting only while other "
        "requests were in flight gave 28).",
    )
    max_ongoing_requests: int = Field(
        128, ge=1, description="Requests in flight per predictor replica (must exceed "
        "max_batch_size or batches never fill). The predictor is also the HTTP ingress, so the "
        "larger of this and limits.ingress_max_ongoing_requests applies.",
    )
    deadline_ms: float = Field(
        1000.0, gt=0, le=600_000, description="Time budget of a /v1/predict request (a request may "
        "set its own with ?deadline_ms=): windows the model zoo cannot answer within it are answered "
        "by the rules model alone, `degraded` (fabray/serve/deadline.py).",
    )
    ensemble_refresh_s: float = Field(
        1.0, gt=0, description="Longest a predictor replica's copy of the ensemble weights lags the "
        "keeper's (the replica that forwarded an outcome syncs at once).",
    )
    predictor_replicas: int = Field(1, ge=1, description="Predictor replicas when autoscaling is off.")
    autoscaling: ServeAutoscaling | None = Field(
        None, description="Autoscale the predictor between min and max replicas; None: fixed replicas.",
    )
    predictor_num_cpus: float = Field(0.25, gt=0, description="CPUs reserved per predictor replica.")
    ingress_num_cpus: float = Field(0.1, gt=0, description="CPUs reserved by the HTTP ingress replica.")
    model_threads: int | None = Field(
        None, ge=1, description="Threads TensorFlow/OpenMP may use in a predictor or batch-scorer "
        "replica. None: every CPU of the node (Ray would pin a replica with a fractional CPU "
        "reservation to OMP_NUM_THREADS=1, ~20-60% slower here).",
    )
    model_poll_interval_s: float = Field(
        2.0, gt=0, description="How often replicas check the store for a newly promoted version.",
    )
    access_log: bool = Field(
        False, description="Ray Serve's per-request access log lines in every replica (costs "
        "latency; the Prometheus metrics count requests either way).",
    )
    state_persist_interval_s: float = Field(
        30.0, gt=0, description="How often the ensemble's online state is written to the store.",
    )
    pending_predictions: int = Field(
        20_000, ge=1, description="Recent predictions remembered so /v1/feedback can find them.",
    )
    batch_interval_s: float = Field(
        600.0, gt=0, description="Scheduler period: score the latest window of every zone of "
        "`batch_source` this often.",
    )
    batch_source: str | None = Field(
        None, description="Zone-minute data file the scheduler scores; None: no scheduled batches.",
    )
    batch_num_cpus: float = Field(
        0.5, gt=0, description="CPUs reserved by the BatchScorer replica (the warm models batch "
        "jobs use, apart from the real-time predictor).",
    )
    batch_size_windows: int = Field(1024, ge=1, description="Windows per Ray Data batch.")
    retrain_overrides: dict[str, dict] = Field(
        default_factory=dict, description="Config sections merged into the champion's own config "
        "for a retrain started by /v1/retrain, e.g. {'train': {'max_concurrent': 1}} so that the "
        "trainers leave room for the serving replicas.",
    )
    promote_metric: Literal["pr_auc", "f1"] = Field(
        "pr_auc", description="Metric on recent held-out data that decides a challenger's promotion.",
    )
    promote_tolerance: float = Field(
        0.0, ge=0, description="A challenger this much worse than the champion still counts as not worse.",
    )
    api_token_env: str = Field(
        "FABRAY_API_TOKEN", description="Environment variable holding the bearer token of mutating endpoints.",
    )
    api_token_file: str | None = Field(
        None, description="File holding the token (read by the replica; wins over the variable).",
    )
    degraded: DegradedRules = Field(default_factory=DegradedRules, description="Degraded-window rules.")
    limits: ServeLimits = Field(
        default_factory=ServeLimits, description="What a client may ask of the service: data folders, "
        "body read deadline, request timeout, body and job limits.",
    )
    feed: ServeFeed = Field(default_factory=ServeFeed, description="The live feed, alerts and webhook.")
    monitor: ServeMonitor = Field(
        default_factory=ServeMonitor, description="Self-monitoring: rolling per-zone precision/recall, "
        "input drift, retrain advised.",
    )


class RoiConfig(_Section):
    """Return on investment (seed §6), computed by `fabray evaluate` from MEASURED recall and
    precision: the seed's figures are defaults here, not assumed results."""

    delays_per_day: float = Field(37.0, ge=0, description="Logistics delays a day in the fab (seed: 37).")
    cost_per_delay_krw: float = Field(
        2_000_000.0, ge=0, description="Cost of one delay that is not prevented, KRW (seed: 2,000,000).",
    )
    avoidable_fraction: float = Field(
        1.0, ge=0, le=1, description="Share of the delays caught in time that dispatchers actually "
        "prevent (1.0: every caught delay is avoided, the seed's implicit assumption).",
    )
    false_alarm_cost_krw: float = Field(
        0.0, ge=0, description="Cost of one false alarm (a dispatcher's needless intervention), KRW.",
    )
    gpu_cost_per_month_krw: float = Field(
        5_000_000.0, ge=0, description="Monthly cost of one H100, KRW (seed: 5,000,000).",
    )
    gpus: float = Field(1.0, ge=0, description="GPUs the system uses (Phase 1: 1).")
    days_per_month: float = Field(30.0, gt=0, description="Days in a month for monthly figures.")


class TrackingConfig(_Section):
    """Experiment tracking (`fabray[mlflow]` extra; `fabray.tracking`)."""

    mlflow_uri: str | None = Field(
        None, description="MLflow tracking URI (e.g. 'sqlite:///mlflow.db', a directory, or "
        "'http://mlflow:5000'); set: `fabray train` logs a parent run with one child per model, "
        "`fabray evaluate` its metrics and report. Credentials go in MLflow's environment "
        "variables (MLFLOW_TRACKING_TOKEN, ...), never in the URI. `--mlflow` overrides it.",
    )
    experiment: str = Field("fabray", min_length=1, description="MLflow experiment name.")


class FabrayConfig(_Section):
    """The whole configuration; every section has working defaults."""

    task: TaskConfig = Field(default_factory=TaskConfig, description="The prediction task.")
    split: SplitConfig = Field(default_factory=SplitConfig, description="Train/val/test split.")
    site: SiteConfig = Field(
        default_factory=SiteConfig, description="Calendar, plans and zone topology (context inputs)."
    )
    simulation: SimulationConfig = Field(
        default_factory=SimulationConfig, description="The fab-traffic simulator (`fabray simulate`)."
    )
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training on Ray.")
    retrain: RetrainConfig = Field(
        default_factory=RetrainConfig, description="Incremental retraining (`fabray retrain`)."
    )
    ensemble: EnsembleConfig = Field(
        default_factory=EnsembleConfig, description="The dynamic weighted ensemble."
    )
    roi: RoiConfig = Field(
        default_factory=RoiConfig, description="Return-on-investment parameters (`fabray evaluate`)."
    )
    serve: ServeConfig = Field(default_factory=ServeConfig, description="The Ray Serve application.")
    tracking: TrackingConfig = Field(
        default_factory=TrackingConfig, description="Experiment tracking (MLflow, optional extra)."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_models_section(cls, data: Any) -> Any:
        """`models.overrides` was a second place for per-model overrides; `train.model_overrides`
        is the one now. An empty `models` section (in runs' config.json written before) is
        dropped; one that sets anything is refused, naming where it goes."""
        if not isinstance(data, dict) or "models" not in data:
            return data
        section = data["models"]
        if section and (not isinstance(section, dict) or set(section) - {"overrides"} or section.get("overrides")):
            raise ValueError(
                "the `models` section is gone: per-model overrides live in `train.model_overrides` "
                "only (same form, {model: {field: value}}); move `models.overrides` there. "
                f"Received: models={section!r}"
            )
        return {key: value for key, value in data.items() if key != "models"}


def as_config(config: Any) -> FabrayConfig:
    """None (defaults), a YAML path, a mapping (validated) or a `FabrayConfig` → FabrayConfig
    (what the Python API's `config=` arguments accept); anything else → BadInputError."""
    if config is None or isinstance(config, (str, PathLike)):
        return load_config(config)
    if isinstance(config, FabrayConfig):
        return config
    if isinstance(config, Mapping):
        try:
            return FabrayConfig.model_validate(dict(config))
        except ValidationError as err:
            raise BadInputError(f"invalid config:\n{err}") from err
    raise BadInputError(
        f"config must be None, a YAML path, a mapping or a FabrayConfig. Received: {type(config).__name__}"
    )


def load_config(path: str | Path | None = None) -> FabrayConfig:
    """Read a YAML config (or the defaults when `path` is None); bad content → BadInputError."""
    if path is None:
        return FabrayConfig()
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise BadInputError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise BadInputError(f"{path}: expected a mapping at the top level. Received: {type(raw).__name__}")
    try:
        return FabrayConfig.model_validate(raw)
    except ValidationError as err:
        raise BadInputError(f"{path}: invalid config:\n{err}") from err
