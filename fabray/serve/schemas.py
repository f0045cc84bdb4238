"""Request and response bodies of the HTTP API (DESIGN §6), with a description on every field.

Numbers are strict: a JSON string or boolean where a number belongs is refused, and so is a
non-finite value (Python's JSON reader accepts `NaN` and `Infinity`; these models do not). A
missing value is `null`. Shapes (rows × features) depend on the served model version and are
checked by `fabray.serve.validation`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model, model_validator

from fabray import schema

#: A finite JSON number (an integer is accepted as a float; strings, booleans, NaN, inf are not).
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
#: A JSON true/false only ("yes", 1, "true" are refused).
Flag = Annotated[bool, Field(strict=True)]
MAX_PATH_CHARS = 1024


def _server_path(value: str) -> str:
    if "\x00" in value:
        raise ValueError("a path must not contain a NUL character")
    if any(len(part) > 255 for part in value.split("/")):
        raise ValueError("a path component is longer than 255 characters")
    return value


#: A file or directory on the server, as a client names it (checked against the allowed folders
#: by the service, `fabray.serve.paths`).
ServerPath = Annotated[str, Field(min_length=1, max_length=MAX_PATH_CHARS), AfterValidator(_server_path)]

_FEATURES = ", ".join(schema.FEATURES)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WindowIn(_Body):
    """One window of one zone to score."""

    zone: str = Field(min_length=1, max_length=128, description="Zone id, as in the training data (e.g. 'Z01').")
    window: list[list[Number | None]] = Field(
        description=f"`lookback` rows (100 by default), oldest minute first, each with the 12 "
        f"features in this order, raw units: {_FEATURES}. `null` marks a missing value: an empty "
        "transport_time_s (no completions) is carried forward; other missing values are a gap "
        "(a few minutes are filled and the window is flagged `degraded`).",
    )
    timestamp: str | None = Field(
        None, max_length=40,
        description="The window's last minute, ISO-8601 in site time (e.g. '2025-01-06T08:00'), "
        "for the calendar inputs (time of day, shift changes). Default: the server's current "
        "minute (a real-time window ends now); send it when scoring a past window.",
    )
    neighbours: dict[str, list[list[Number | None]]] | None = Field(
        None, max_length=16,
        description="Windows of the zone's neighbours on the site topology over the same minutes "
        "(zone → rows like `window`). A neighbour not given is treated as absent (less context).",
    )
    plan: dict[str, list[Number]] | None = Field(
        None, max_length=8,
        description="Known-future plan columns (e.g. lots_planned, pm_planned) → lookback + horizon "
        "values: the window's minutes and the next `horizon` ones. Absent: the plan is unknown.",
    )


class RuleFired(BaseModel):
    """A rule that fired on the window."""

    rule: str = Field(description="The rule's name (the run's `rule` model config).")
    activation: float = Field(description="How much it fires, 0 to 1.")


class Contribution(BaseModel):
    """One member's part of the ensemble's answer."""

    score: float = Field(description="The member's score.")
    weight: float = Field(description="Its ensemble weight for this window.")
    contribution: float = Field(description="weight × score.")
    share: float = Field(description="Its share of the members' summed contributions.")


class PredictionOut(BaseModel):
    """The answer for one window."""

    prediction_id: str = Field(description="Id to quote in /v1/feedback when the outcome is known.")
    zone: str = Field(description="The window's zone.")
    model_version: str = Field(description="Store version of the models that scored it (v1, v2, ...).")
    run_id: str = Field(description="Training run those models came from.")
    scores: dict[str, float | None] = Field(
        description="Each model's score: the probability of a delay event; null when the model "
        "gave no finite score "
        "(the window is then `degraded` and answered by the rules model)."
    )
    probability: float = Field(
        description="The ensemble's probability of a delay event."
    )
    decision: bool = Field(description="True when `probability` >= `threshold`: raise a delay alarm.")
    threshold: float = Field(description="Alarm threshold applied (the ensemble's).")
    weights: dict[str, float] = Field(description="Ensemble weight of each model used for this window.")
    degraded: bool = Field(
        description="True when the window had a gap or a stuck sensor, or its deadline left no time "
        "for the model zoo: it was answered by the rules model alone."
    )
    degraded_reasons: list[str] = Field(description="Why the window is degraded (empty when it is not).")
    rules_fired: list[RuleFired] = Field(
        default_factory=list, description="The rules of the rules model that fire on this window "
        "(activation >= 0.5), strongest first.",
    )
    contributions: dict[str, Contribution] = Field(
        default_factory=dict, description="Each member's part of `probability` before calibration: "
        "weight × score, and its share; largest first (members with weight 0 left out).",
    )


class FeedbackItem(_Body):
    """The observed outcome of an earlier prediction."""

    prediction_id: str = Field(min_length=1, max_length=64, description="`prediction_id` of the prediction.")
    outcome: Number = Field(
        description="What happened over the horizon: 1 delay event, 0 none."
    )


class FeedbackOut(BaseModel):
    """What the feedback changed."""

    applied: int = Field(description="Outcomes that moved the ensemble weights.")
    skipped_degraded: int = Field(description="Outcomes of degraded predictions (they move nothing).")
    unknown: list[str] = Field(
        description="Prediction ids not found: never issued, already given feedback, or forgotten "
        "(only the most recent `serve.pending_predictions` are kept)."
    )
    weights: dict[str, dict[str, dict[str, float]]] = Field(
        description="New weights: version → zone → model → weight, for each zone touched."
    )


class PromoteIn(_Body):
    """Promote a stored version to live."""

    force: Flag = Field(
        False, description="Promote even if its window shape or task differs from the live "
        "version's (clients must send the new shape)."
    )
    reason: str = Field("", max_length=500, description="Why; kept in the store's event log.")


class ImportIn(_Body):
    """Add a finished run directory on the server to the model store."""

    run: ServerPath = Field(description="Path of the run directory on the server, under one of the "
                            "service's data folders (`data_dirs`).")
    promote: Flag = Field(False, description="Also promote it (same checks as /v1/models/{version}/promote).")
    force: Flag = Field(False, description="With promote: accept a different window shape or task.")
    note: str = Field("", max_length=500, description="Free text kept with the version.")


class RollbackIn(_Body):
    """Return to the version that was live before the current one."""

    reason: str = Field("", max_length=500, description="Why; kept in the store's event log.")


class BatchIn(_Body):
    """A batch scoring job: a data file on the server, or windows in the body (exactly one)."""

    path: ServerPath | None = Field(
        None, description="Zone-minute data file (.parquet or .csv) on the server, in the data contract, "
        "under one of the service's data folders (`data_dirs`).",
    )
    windows: list[WindowIn] | None = Field(None, description="Windows to score (as in /v1/predict).")
    all_windows: Flag = Field(
        False, description="With `path`: score every complete window, not only the latest per zone "
        "(refused with `windows`)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> BatchIn:
        if (self.path is None) == (self.windows is None):
            raise ValueError("give exactly one of 'path' or 'windows'")
        if self.windows is not None and not self.windows:
            raise ValueError("'windows' is empty")
        if self.windows is not None and self.all_windows:
            raise ValueError("'all_windows' applies to a data file ('path'), not to 'windows'")
        return self


class RetrainIn(_Body):
    """Incremental retraining of the live version on newer data."""

    data: ServerPath = Field(description="Zone-minute data file on the server, under one of the "
                             "service's data folders (`data_dirs`).")
    epochs: int | None = Field(None, ge=1, le=1000, strict=True,
                               description="Epochs (default: the live run's config).")
    promote: Flag = Field(True, description="Promote the challenger when it is not worse than the champion.")


class JobOut(BaseModel):
    """A batch or retraining job."""

    job_id: str = Field(description="Job id.")
    kind: Literal["batch", "retrain"] = Field(description="What the job does.")
    status: Literal["pending", "running", "succeeded", "failed"] = Field(description="Where it is.")
    model_version: str | None = Field(None, description="Version it scores with (batch) or started from (retrain).")
    submitted_at: str = Field(description="UTC time of submission.")
    finished_at: str | None = Field(None, description="UTC time it ended.")
    output: str | None = Field(None, description="Output path (batch: a Parquet file).")
    n_windows: int | None = Field(None, description="Windows scored (batch).")
    scheduled: bool = Field(False, description="Started by the periodic scheduler.")
    result: dict[str, Any] | None = Field(None, description="Kind-specific result (retrain: evaluation, promotion).")
    error: str | None = Field(None, description="Why it failed.")


class ErrorOut(BaseModel):
    """Every 4xx/5xx answer has this body."""

    error: str = Field(description="Kind: bad_request, invalid_input, unauthorized, forbidden, not_found, "
                       "conflict, too_large, unavailable, internal.")
    message: str = Field(description="What was wrong, for a person.")
    details: list[Any] | None = Field(None, description="Per-field problems, when there are several.")


# ---------------------------------------------------------------------------- the live feed

_ROW_FIELDS: dict[str, Any] = {
    name: ((Number | None) if name in schema.NULLABLE_FEATURES else Number,
           Field(description=f"{name}, raw units" + (" (null: no transport completed in the minute)"
                                                     if name in schema.NULLABLE_FEATURES else "")))
    for name in schema.FEATURES
}
_ROW_FIELDS.update({
    name: (Number | None, Field(None, description=f"Plan column {name!r} for this minute (known ahead), optional."))
    for name in schema.PLAN_COLUMNS
})


class _ObserveRowBase(_Body):
    timestamp: str = Field(min_length=1, max_length=40, description="The row's minute, ISO-8601 in site time "
                           "(e.g. '2025-01-06T08:00').")
    zone: str = Field(min_length=1, max_length=128, description="Zone id, as in the training data.")
    plan_ahead: dict[str, list[Number]] | None = Field(
        None, max_length=8, description="Plan columns for the next `horizon` minutes after this one "
        "(known-future inputs), e.g. {'lots_planned': [0, 2, ...]}. Absent: the plan ahead is unknown.",
    )


ObserveRow = create_model(
    "ObserveRow", __base__=_ObserveRowBase, __doc__="One zone-minute row of the data contract.", **_ROW_FIELDS,
)


class ObserveIn(_Body):
    """The latest minute rows of one or many zones (send every zone's minute in one call: each
    zone's neighbour inputs come from the rows the feed holds when it is scored)."""

    rows: list[ObserveRow] = Field(min_length=1, description="Rows, any zone order; one zone's rows oldest first.")  # type: ignore[valid-type]


class ObservedZone(BaseModel):
    zone: str = Field(description="Zone.")
    timestamp: str = Field(description="The zone's newest minute.")
    status: Literal["scored", "warming_up", "gap", "unscored"] = Field(
        description="'scored': `prediction` holds the answer; 'warming_up': fewer minutes than a "
        "window needs yet; 'gap': too many minutes missing in the window; 'unscored': the models "
        "did not answer (the next minute is scored again).")
    prediction: PredictionOut | None = Field(None, description="As /v1/predict answers.")
    reason: str | None = Field(None, description="Why the zone was not scored.")


class ObserveOut(BaseModel):
    """What one observe call did."""

    accepted: int = Field(description="Rows taken in.")
    zones: list[ObservedZone] = Field(description="Every zone that received a row, scored or why not.")
    gaps: list[dict[str, Any]] = Field(description="Missing minutes found: zone, after, before, missing_minutes.")
    outcomes: dict[str, int] = Field(
        description="Outcomes of earlier predictions that came due with these rows: 'applied' moved "
        "the ensemble weights, 'undefined' had a gap or no completion in their horizon.")
    alerts: dict[str, list[str]] = Field(description="Alert ids 'opened' and 'closed' by this call.")
