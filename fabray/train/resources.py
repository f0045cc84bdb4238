"""How much of the cluster each model's trainer reserves, and how many run at once (DESIGN §4, §10).

Pure: works on numbers read from the cluster by the caller. Each model trains on ONE Ray Train
worker (Keras 3 `fit` under MultiWorkerMirroredStrategy fails), so parallelism is across models:
several single-worker trainers share the cluster, GPUs by fractions. At least `reserve_cpus` stay
unreserved, or Ray Data's window tasks can starve and training hangs with no error.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fabray.config import TrainConfig
from fabray.errors import BadInputError

logger = logging.getLogger(__name__)

_EPS = 1e-9


@dataclass(frozen=True)
class WorkerResources:
    """What one model's single training worker reserves."""

    model: str
    cpus: float
    gpus: float  # 0.0 on a CPU-only run

    @property
    def use_gpu(self) -> bool:
        return self.gpus > 0

    def ray_resources(self) -> dict[str, float]:
        """`ScalingConfig.resources_per_worker`: no "GPU" key at all when GPUs are not used."""
        if self.use_gpu:
            return {"CPU": self.cpus, "GPU": self.gpus}
        return {"CPU": self.cpus}


def resolve_use_gpu(flag: str, cluster_gpus: float, *, can_autoscale: bool = False) -> bool:
    """'auto' → GPUs when the cluster has any; 'true' / 'false' as said.

    'true' on a cluster with no GPU is refused unless it can autoscale (a joined cluster may add
    GPU nodes on demand); an embedded local Ray never will, and the trainers would only wait.
    """
    if flag == "auto":
        return cluster_gpus > 0
    if flag == "false":
        return False
    if flag != "true":
        raise BadInputError(f"use_gpu must be 'auto', 'true' or 'false'. Received: {flag!r}")
    if cluster_gpus <= 0:
        if not can_autoscale:
            raise BadInputError(
                "use_gpu is 'true' but the Ray cluster has no GPU; use 'auto' or 'false', or join "
                "a cluster with GPUs (--address). Received: cluster GPUs = 0"
            )
        logger.warning("use_gpu is 'true' and the cluster has no GPU yet: trainers will wait for one")
    return True


def plan_resources(
    models: Sequence[str], train: TrainConfig, *, use_gpu: bool
) -> dict[str, WorkerResources]:
    """Per-model worker resources: the model's own entry in `resources_per_model`, else the default."""
    plan = {}
    for name in models:
        res = train.resources_per_model.get(name, train.resources)
        gpus = float(res.gpus) if use_gpu else 0.0
        if use_gpu and gpus <= 0:
            raise BadInputError(
                f"model {name!r}: GPUs are used but its resources ask for none; give it a GPU "
                f"fraction > 0 or run with use_gpu 'false'. Received: gpus={res.gpus}"
            )
        plan[name] = WorkerResources(model=name, cpus=float(res.cpus), gpus=gpus)
    return plan


def plan_concurrency(
    plan: Mapping[str, WorkerResources],
    cluster: Mapping[str, float],
    *,
    reserve_cpus: float,
    max_concurrent: int | None = None,
    can_autoscale: bool = False,
) -> int:
    """How many trainers to run at once so that `reserve_cpus` always stay free.

    `cluster` is `ray.cluster_resources()`. A model that alone does not fit is refused (it would
    wait forever) unless the cluster can autoscale. The count is what fits with the largest
    request, capped by `max_concurrent` and the number of models.
    """
    if not plan:
        raise BadInputError("no model to train. Received: models=[]")
    total_cpus = float(cluster.get("CPU", 0.0))
    total_gpus = float(cluster.get("GPU", 0.0))
    usable_cpus = total_cpus - reserve_cpus
    biggest_cpus = max(r.cpus for r in plan.values())
    biggest_gpus = max(r.gpus for r in plan.values())
    if not can_autoscale:
        for r in plan.values():
            if r.cpus > usable_cpus + _EPS:
                raise BadInputError(
                    f"model {r.model!r} asks for {r.cpus:g} CPUs but the cluster has {total_cpus:g} "
                    f"and {reserve_cpus:g} must stay free for Ray Data; lower train.resources.cpus. "
                    f"Received: cpus={r.cpus:g}"
                )
            if r.gpus > total_gpus + _EPS:
                raise BadInputError(
                    f"model {r.model!r} asks for {r.gpus:g} GPUs but the cluster has {total_gpus:g}. "
                    f"Received: gpus={r.gpus:g}"
                )
    fit = len(plan)
    if usable_cpus > 0 and biggest_cpus > 0:
        fit = min(fit, math.floor(usable_cpus / biggest_cpus + _EPS))
    if biggest_gpus > 0 and total_gpus > 0:
        fit = min(fit, math.floor(total_gpus / biggest_gpus + _EPS))
    if max_concurrent is not None:
        fit = min(fit, max_concurrent)
    return max(1, fit)
