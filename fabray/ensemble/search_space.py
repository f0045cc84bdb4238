"""Ray Tune's search space for the ensemble's hyper-parameters, as plain data.

Nothing here imports Ray: the Tune driver (in `fabray/train/`) turns each entry into
`tune.uniform` / `tune.loguniform` / `tune.choice` / `tune.randint`, and each trial turns its
sampled dict back into `EnsembleParams` with `params_from_sample`. `sample_search_space` draws
from the same space with numpy, for a Ray-free random search and for tests.

Entry forms: {"type": "uniform" | "loguniform", "low": a, "high": b},
{"type": "randint", "low": a, "high": b} (b excluded), {"type": "choice", "values": [...]}.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fabray.ensemble.params import LOSSES, EnsembleParams

BASE_WEIGHT_PREFIX = "base_weight_"

#: Ranges, and why. Steps are outcomes of one zone (one a minute).
_COMMON: dict[str, dict[str, Any]] = {
    # 5 minutes (a burst) … ~3.5 days (a slow drift); loguniform: the scale is what matters.
    "half_life": {"type": "loguniform", "low": 5.0, "high": 5000.0},
    # floor = floor_share / M: 0 = a model can be switched off, 0.5 = keeps half a uniform share.
    "floor_share": {"type": "uniform", "low": 0.0, "high": 0.5},
    # Largest weight move per step; 1.0 = no cap.
    "step_cap": {"type": "loguniform", "low": 0.002, "high": 1.0},
    # In loss units (Brier in [0, 1]; clipped log-loss ~[0, 9.2]).
    "temperature": {"type": "loguniform", "low": 0.002, "high": 2.0},
    # Events are a minority class: the best F1 threshold is usually below 0.5.
    "threshold": {"type": "uniform", "low": 0.05, "high": 0.95},
    "loss": {"type": "choice", "values": list(LOSSES)},
}
#: Each model's prior weight, before normalization.
_BASE_WEIGHT: dict[str, Any] = {"type": "uniform", "low": 0.05, "high": 1.0}


def search_space(model_names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The space for these models: the common ranges plus one `base_weight_<name>` per model."""
    space = {key: dict(value) for key, value in _COMMON.items()}
    for name in model_names:
        space[f"{BASE_WEIGHT_PREFIX}{name}"] = dict(_BASE_WEIGHT)
    return space


def static_sample(model_names: Sequence[str], threshold: float = 0.5) -> dict[str, Any]:
    """A point (for Tune's `points_to_evaluate`) that is the static, uniform-weight ensemble, so
    the search is never scored below the baseline it must beat."""
    sample: dict[str, Any] = {
        "half_life": math.inf, "floor_share": 0.0, "step_cap": 1.0, "temperature": 1.0,
        "threshold": threshold, "loss": "brier",
    }
    sample.update({f"{BASE_WEIGHT_PREFIX}{name}": 1.0 for name in model_names})
    return sample


def params_from_sample(sample: Mapping[str, Any], model_names: Sequence[str]) -> EnsembleParams:
    """A sampled point → EnsembleParams. Keys the space does not define are ignored (a Tune
    config may carry data references); a missing base weight is an error."""
    missing = [n for n in model_names if f"{BASE_WEIGHT_PREFIX}{n}" not in sample]
    if missing:
        raise ValueError(
            f"the sample has no base weight for models {missing}. Received keys: {sorted(sample)}"
        )
    base = tuple(float(sample[f"{BASE_WEIGHT_PREFIX}{n}"]) for n in model_names)
    defaults = EnsembleParams(base_weights=base)
    return EnsembleParams(
        base_weights=base,
        half_life=float(sample.get("half_life", defaults.half_life)),
        floor=float(sample.get("floor_share", defaults.floor * len(base))) / len(base),
        step_cap=float(sample.get("step_cap", defaults.step_cap)),
        threshold=float(sample.get("threshold", defaults.threshold)),
        temperature=float(sample.get("temperature", defaults.temperature)),
        loss=str(sample.get("loss", defaults.loss)),
    )


def sample_search_space(space: Mapping[str, Mapping[str, Any]], rng: np.random.Generator) -> dict[str, Any]:
    """Draw one point from `space` with numpy (the same distributions Tune would use)."""
    out: dict[str, Any] = {}
    for key, spec in space.items():
        kind = spec["type"]
        if kind == "uniform":
            out[key] = float(rng.uniform(spec["low"], spec["high"]))
        elif kind == "loguniform":
            out[key] = float(math.exp(rng.uniform(math.log(spec["low"]), math.log(spec["high"]))))
        elif kind == "randint":
            out[key] = int(rng.integers(spec["low"], spec["high"]))
        elif kind == "choice":
            values = list(spec["values"])
            out[key] = values[int(rng.integers(len(values)))]
        else:
            raise ValueError(
                f"unknown search space entry type for {key!r}. Received: {kind!r}; "
                "expected uniform, loguniform, randint or choice"
            )
    return out


# ---------------------------------------------------------------------------- forms and members

#: The forms Tune chooses between (a single member is a fixed candidate, see `fixed_candidates`).
SEARCHED_FORMS: tuple[str, ...] = ("static", "dynamic", "gate")
_GATE: dict[str, dict[str, Any]] = {
    # Recent-error inputs of the gate: a burst (5 min) … a day and a half.
    "gate_half_life": {"type": "loguniform", "low": 5.0, "high": 2000.0},
    # L2 on the gate's coefficients: large = close to equal weights.
    "gate_l2": {"type": "loguniform", "low": 1e-4, "high": 10.0},
}


def form_search_space(model_names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The whole space of `fabray ensemble`: the form, the member subset (one `use_<name>` flag
    per model; an empty subset means all), the dynamic ensemble's ranges (`search_space`, used by
    static/dynamic) and the gate's."""
    space: dict[str, dict[str, Any]] = {"form": {"type": "choice", "values": list(SEARCHED_FORMS)}}
    space.update({f"use_{name}": {"type": "choice", "values": [True, False]} for name in model_names})
    space.update(search_space(model_names))
    space.update({key: dict(value) for key, value in _GATE.items()})
    return space


def fixed_candidates(model_names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Candidates every search scores besides its trials, so the winner is never worse on
    validation than any of them: each model alone, the uniform static ensemble of all models,
    and the gate over all models at its default hyper-parameters."""
    out: dict[str, dict[str, Any]] = {f"member_{n}": {"form": "member", "members": [n]} for n in model_names}
    out["static_all"] = {"form": "static", "members": list(model_names)}
    out["gate_all"] = {"form": "gate", "members": list(model_names)}
    return out
