"""The keeper deployment's feed path without Ray (its class called directly, a fake predictor
handle): state on disk after every call, and a restarted keeper that first reloads the
version's ensemble and pending predictions, so the outcomes that come due after the restart
still move the weights (none is lost as an unknown prediction)."""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd

from fabray import schema
from fabray.config import EnsembleConfig

L, H = 6, 3
ZONES = ["Z01", "Z02"]
MODELS = ["lstm", "rule"]
META = {"version": "v1", "zones": ZONES, "lookback": L, "horizon": H, "task": "event", "threshold": 0.5,
        "nominal_s": {z: 100.0 for z in ZONES}, "sla_delay_s": 60.0, "context": None}
PARAMS = EnsembleConfig().to_params(MODELS).to_dict()


def row(zone: str, minute: int) -> dict:
    values = {name: 1.0 for name in schema.FEATURES}
    values.update(queue_len=15.0 if minute % 20 >= 12 else 2.0, vehicle_util=0.5,
                  mean_speed=1.0 + 0.01 * (minute % 7), stocker_fill=0.3 + 0.01 * (minute % 5),
                  transport_time_s=220.0 if minute % 20 >= 14 else 110.0)
    return {"timestamp": (pd.Timestamp("2025-01-06") + pd.Timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M"),
            "zone": zone, **values}


class _Remote:
    def __init__(self, fn):
        self.fn = fn

    async def remote(self, *args):
        return self.fn(*args)


class FakePredictor:
    """What the keeper asks of the Predictor deployment: raw scores of the feed's windows (the
    keeper combines them), handing the ensemble over."""

    def __init__(self, keeper_deployment):
        self.ensured = 0

        def score_raw(item):
            from fabray.serve.answers import ScoredBatch

            queue = item["windows"][:, -1, schema.FEATURES.index("queue_len")]
            scores = np.stack([np.where(queue > 10, 0.9, 0.1), np.full(len(queue), 0.5)], axis=1)
            return ScoredBatch(version="v1", run_id="r1", threshold=0.5, model_names=tuple(MODELS), scores=scores,
                               rules=scores[:, 1], fired=[[{"rule": "queue_growth", "activation": 0.9}]] * len(queue),
                               fast=np.zeros(len(queue), dtype=bool), last_rows=item["windows"][:, -1, :])

        def ensure():
            self.ensured += 1
            keeper_deployment.keeper.ensure("v1", None, PARAMS, MODELS)

        self.score_raw = _Remote(score_raw)
        self.ensure_ensemble = _Remote(ensure)


async def _keeper(store):
    from fabray.serve.deployments.keeper import EnsembleKeeperDeployment

    dep = object.__new__(EnsembleKeeperDeployment.func_or_class)
    await EnsembleKeeperDeployment.func_or_class.__init__(dep, str(store), 3600.0, 10_000, {})
    dep._predictor = FakePredictor(dep)
    return dep


def test_a_restarted_keeper_continues_the_feed_and_loses_no_outcome(tmp_path):
    async def scenario():
        first = await _keeper(tmp_path / "store")
        for m in range(30):
            await first.observe([row(z, m) for z in ZONES], META)
        assert first._predictor.ensured == 1  # a fresh keeper asks for the version once
        state = first.desk.full_state()
        weights = first.keeper.weights("v1", ZONES)
        first._loop.cancel()

        second = await _keeper(tmp_path / "store")  # the replica was killed and replaced
        assert second.desk.full_state() == state and not second.keeper.has("v1")
        out = await second.observe([row(z, 30) for z in ZONES], META)
        assert second._predictor.ensured == 1  # reloaded before the outcomes were applied
        assert out["outcomes"]["applied"] == out["outcomes"]["due"] == 2  # minute 27's, by its ids
        assert {z["status"] for z in out["zones"]} == {"scored"}
        assert second.keeper.weights("v1", ZONES) != weights  # the outcomes moved them
        alerts = await second.alerts(None, None, 100)
        assert alerts["alerts"] and alerts["alerts"][-1]["rules_fired"] == [{"rule": "queue_growth", "activation": 0.9}]
        history = await second.weight_history("v1", ZONES, "Z01", 1000)
        assert history["current"]["Z01"] == second.keeper.weights("v1", ["Z01"])["Z01"] and history["history"]
        second._loop.cancel()

    asyncio.run(scenario())
