"""Per-model worker resources and how many trainers run at once (pure, no Ray)."""

from __future__ import annotations

import pytest

from fabray.config import ModelResources, TrainConfig
from fabray.errors import BadInputError
from fabray.train.resources import plan_concurrency, plan_resources, resolve_use_gpu

SIX = ("lstm", "gru", "cnn_lstm", "spike", "rule", "patchtst")


def test_use_gpu_auto_follows_the_cluster():
    assert resolve_use_gpu("auto", 1.0) is True
    assert resolve_use_gpu("auto", 0.0) is False
    assert resolve_use_gpu("false", 2.0) is False


def test_use_gpu_true_without_gpu_is_refused_on_a_fixed_cluster_only():
    with pytest.raises(BadInputError, match="no GPU"):
        resolve_use_gpu("true", 0.0)
    assert resolve_use_gpu("true", 0.0, can_autoscale=True) is True


def test_six_models_share_one_gpu_by_fractions():
    plan = plan_resources(SIX, TrainConfig(), use_gpu=True)
    assert sum(r.gpus for r in plan.values()) <= 1.0
    assert plan["lstm"].ray_resources() == {"CPU": 1.0, "GPU": 0.16}
    n = plan_concurrency(plan, {"CPU": 16, "GPU": 1}, reserve_cpus=1)
    assert n == 6


def test_cpu_run_has_no_gpu_key_and_per_model_overrides_apply():
    train = TrainConfig(resources_per_model={"spike": ModelResources(cpus=2.0, gpus=0.3)})
    plan = plan_resources(["lstm", "spike"], train, use_gpu=False)
    assert plan["lstm"].ray_resources() == {"CPU": 1.0}
    assert plan["spike"].ray_resources() == {"CPU": 2.0}
    assert not plan["spike"].use_gpu


def test_concurrency_leaves_reserve_cpus_free():
    train = TrainConfig(resources=ModelResources(cpus=0.5))
    plan = plan_resources(["lstm", "gru", "rule"], train, use_gpu=False)
    # 2 CPUs, 1 kept for Ray Data: two half-CPU trainers at a time.
    assert plan_concurrency(plan, {"CPU": 2}, reserve_cpus=1) == 2
    assert plan_concurrency(plan, {"CPU": 2}, reserve_cpus=1, max_concurrent=1) == 1
    assert plan_concurrency(plan, {"CPU": 64}, reserve_cpus=1) == 3


def test_a_model_that_cannot_fit_is_refused_by_name():
    plan = plan_resources(["lstm"], TrainConfig(), use_gpu=False)  # 1 CPU
    with pytest.raises(BadInputError, match="'lstm' asks for 1 CPUs.*Received: cpus=1"):
        plan_concurrency(plan, {"CPU": 1}, reserve_cpus=1)
    assert plan_concurrency(plan, {"CPU": 1}, reserve_cpus=1, can_autoscale=True) == 1


def test_gpu_requested_with_zero_fraction_is_refused():
    train = TrainConfig(resources=ModelResources(cpus=1, gpus=0))
    with pytest.raises(BadInputError, match="gpus=0"):
        plan_resources(["lstm"], train, use_gpu=True)
