"""A training job checked before anything is written or Ray is touched (`fabray train`,
`fabray retrain`): the data file reads and validates, the windows exist, every model builds
with its overrides (bad overrides are exit 2, not a worker crash after retries). Pure: no Ray.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabray import schema
from fabray.config import FabrayConfig
from fabray.errors import BadInputError
from fabray.files import sha256_file
from fabray import run as rd
from fabray.train.replay import TrainSeries


def effective_overrides(config: FabrayConfig, names: Sequence[str]) -> dict[str, dict]:
    """Per-model hyper-parameter overrides as the models are built: `train.model_overrides`
    (the one place they are set). The scaler's statistics are not overrides: every model gets
    them as its first layer (`build_model(..., scaler=)`)."""
    from fabray.models.gbt import GBT
    from fabray.models import MODELS

    stray = sorted(set(config.train.model_overrides) - {*MODELS, GBT})
    if stray:
        raise BadInputError(f"overrides name unknown model(s) {stray}; known: {', '.join(MODELS)}")
    out = {}
    for name in names:
        out[name] = dict(config.train.model_overrides.get(name, {}))
    return out


def check_models(
    names: Sequence[str], overrides: dict[str, dict], config: FabrayConfig, n_features: int
) -> dict[str, int | None]:
    """Build each model once (tiny cost) to refuse unknown names and bad overrides as bad input.
    Returns the parameter count per model (None for the LightGBM member "gbt", whose overrides
    are checked as `GBTConfig` fields and which needs the `gbt` extra)."""
    import keras

    from fabray.models.gbt import GBT, gbt_config, require_lightgbm
    from fabray.models import MODELS, build_model, model_loss

    unknown = [n for n in names if n not in MODELS and n != GBT]
    if unknown:
        raise BadInputError(f"unknown model(s) {unknown}; known: {', '.join((*MODELS, GBT))}. Received: {list(names)}")
    if len(set(names)) != len(names):
        raise BadInputError(f"a model is listed twice. Received: {list(names)}")
    require_lightgbm(names)
    params: dict[str, Any] = {}
    for name in names:
        if name == GBT:
            gbt_config(overrides[name], n_jobs=1, seed=config.train.seed)
            params[name] = None
            continue
        model = build_model(name, config.task.lookback, n_features, overrides[name])
        model_loss(name, config.task.task, overrides[name])
        params[name] = int(model.count_params())
        del model
    keras.backend.clear_session()
    return params


def check_windows(prepared: Any) -> None:
    for split in ("train", "val"):
        if len(prepared.splits[split]) == 0:
            raise BadInputError(
                f"no complete {split} window: each zone needs more minutes than lookback + horizon "
                f"per split. Received: {prepared.n_rows} rows, {len(prepared.zones)} zones, "
                f"lookback={prepared.lookback}, horizon={prepared.horizon}"
            )


def data_info(path: Path, df: Any, prepared: Any) -> dict[str, Any]:
    ts = df[schema.TIMESTAMP]
    return {
        "path": str(path.resolve()),
        "fingerprint": sha256_file(path),
        "bytes": path.stat().st_size,
        "rows": int(len(df)),
        "zones": list(prepared.zones),
        "first_timestamp": str(ts.min()),
        "last_timestamp": str(ts.max()),
        "windows": {k: int(len(v)) for k, v in prepared.splits.items()},
    }


def apply_cli_overrides(
    config: FabrayConfig, *, models: Sequence[str] | None = None, epochs: int | None = None,
    use_gpu: str | None = None, budget: str | float | None = None,
) -> FabrayConfig:
    """The config with the command line's --models / --epochs / --use-gpu / --budget applied
    (validated; `budget`: a duration such as '60m' or '1h30m', or minutes)."""
    from pydantic import ValidationError

    from fabray.config import TrainConfig

    updates: dict[str, Any] = {}
    if models:
        updates["models"] = tuple(models)
    if epochs is not None:
        updates["epochs"] = epochs
    if use_gpu is not None:
        updates["use_gpu"] = use_gpu
    if budget is not None:
        from fabray.train.budget import parse_duration_minutes

        updates["budget_min"] = parse_duration_minutes(budget)
    if not updates:
        return config
    try:
        train = TrainConfig.model_validate({**config.train.model_dump(), **updates})
    except ValidationError as err:
        raise BadInputError(f"invalid training options: {err}") from err
    return config.model_copy(update={"train": train})


@dataclass
class PreparedRun:
    """A checked training job, before anything is written or Ray is touched.

    `prepared` is the data file's windows (its scaler and nominal times land with the models;
    its validation split scores every epoch). A retrain also sets `series` (the new data plus
    replay windows), `warm_start` (model → the parent's model.keras), `deadline_unix` (stop
    training then), `carry_over` (a model the budget leaves no time for lands as the parent's),
    `carry_models` (models landed as the parent's without training: not selected for this
    retrain), and `manifest_extra` (parent, replay, budget: merged into the manifest).
    """

    data: Path
    out: Path
    config: FabrayConfig
    prepared: Any  # fabray.data.windows.PreparedData
    data_info: dict[str, Any]
    overrides: dict[str, dict]
    params: dict[str, int]
    series: TrainSeries | None = None
    warm_start: dict[str, Path] = field(default_factory=dict)
    deadline_unix: float | None = None
    carry_over: bool = False
    carry_models: frozenset[str] = frozenset()
    manifest_extra: dict[str, Any] = field(default_factory=dict)

    def train_series(self) -> TrainSeries:
        return self.series if self.series is not None else TrainSeries.of(self.prepared)


def prepare_run(data: str | Path, out: str | Path, config: FabrayConfig) -> PreparedRun:
    """Everything that can be refused as bad input, with no Ray and no file written: the run
    directory is free, the data file reads and validates, the windows exist, the models build."""
    from fabray.data.context import ContextSpec
    from fabray.data.validate import load_validated
    from fabray.data.windows import prepare

    out = rd.check_run_dir_free(out)
    if config.tracking.mlflow_uri:
        from fabray.tracking import require_mlflow

        require_mlflow()  # asked for tracking without the extra: exit 2 before any work
    data = Path(data)
    df = load_validated(data)
    context = ContextSpec.from_site(config.site, config.task.horizon, list(df.columns))
    prepared = prepare(df, config.task, config.split, context=context)
    check_windows(prepared)
    info = data_info(data, df, prepared)
    names = list(config.train.models)
    overrides = effective_overrides(config, names)
    params = check_models(names, overrides, config, int(prepared.features.shape[1]))
    return PreparedRun(data, out, config, prepared, info, overrides, params)
