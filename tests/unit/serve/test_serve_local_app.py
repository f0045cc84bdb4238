"""The whole Serve application in Serve's local testing mode (`serve.run(app,
_local_testing_mode=True)`: every deployment built in this process, handles between them, no Ray
cluster, no HTTP): the deployments' own logic, on a run of two real tiny Keras models.

What the deployments add to the pure parts they wrap: the Predictor (the HTTP ingress) scores a
request and combines it with its local copy of the keeper's weights; the predictions it answered
reach the keeper through its background queue before a feedback call is forwarded; the feedback
moves the keeper's weights and the same replica's next answer uses them; the keeper's view and the
replica's agree. (The same behaviour over real HTTP on a real cluster: tests/integration/test_serve.py.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fabray import schema
from fabray.data.scaler import Scaler

LOOKBACK = 20
F = len(schema.FEATURES)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A complete run of two saved, untrained tiny models (lstm, rule) over zones Z01, Z02."""
    from tests.unit.run_factory import keras_run

    scaler = Scaler(schema.FEATURES, (3.0,) * F, (2.0,) * F)
    return keras_run(tmp_path_factory.mktemp("run") / "r1", scaler, lookback=LOOKBACK)


@pytest.fixture(scope="module")
def app(run_dir, tmp_path_factory):
    """The application `fabray serve --run` builds, in local testing mode: its ingress handle."""
    from ray import serve

    from fabray.serve.app import ServeArgs, build_app

    store = tmp_path_factory.mktemp("serve") / "store"
    # Local testing mode has no teardown (a handle's shutdown is a no-op there): the replicas'
    # daemon threads idle in their poll loops until this process exits.
    return serve.run(build_app(ServeArgs(store=str(store), run=str(run_dir))), _local_testing_mode=True)


def _windows() -> np.ndarray:
    """Two raw windows [2, L, F] within the contract's ranges (a calm zone and a busy one)."""
    x = np.ones((2, LOOKBACK, F), np.float32)
    x[:, :, schema.FEATURES.index("vehicle_util")] = [[0.4], [0.97]]
    x[:, :, schema.FEATURES.index("transport_time_s")] = [[150.0], [240.0]]
    x[1, -10:, schema.FEATURES.index("queue_len")] = 30.0
    return x


def test_the_ingress_scores_combines_and_feedback_moves_the_weights_it_answers_with(app):
    zones = ["Z01", "Z02"]
    first = app.predict.remote(zones, _windows(), [[], []]).result()
    assert [a["zone"] for a in first] == zones and not any(a["degraded"] for a in first)
    for a in first:
        assert set(a["scores"]) == {"lstm", "rule"} and 0.0 <= a["probability"] <= 1.0
        assert a["weights"] == pytest.approx({"lstm": 0.5, "rule": 0.5})  # no fitted ensemble: uniform
        assert {c for c in a["contributions"]} == {"lstm", "rule"}
    z02 = first[1]
    outcome = int(z02["scores"]["lstm"] > z02["scores"]["rule"])  # the truth sides with the lstm

    # the answered predictions reach the keeper (background queue, flushed before feedback)
    fed = app.feedback.remote([{"prediction_id": z02["prediction_id"], "outcome": outcome}]).result()
    assert fed["applied"] == 1 and fed["unknown"] == []
    moved = fed["weights"][first[1]["model_version"]]["Z02"]
    assert moved["lstm"] > 0.5 > moved["rule"]

    second = app.predict.remote(zones, _windows(), [[], []]).result()
    assert second[1]["weights"] == pytest.approx(moved)  # the replica's copy moved at once
    assert second[0]["weights"] == pytest.approx(first[0]["weights"])  # another zone's did not
    assert second[1]["prediction_id"] != z02["prediction_id"]

    # the same prediction fed back twice is refused the second time (applied once)
    again = app.feedback.remote([{"prediction_id": z02["prediction_id"], "outcome": outcome}]).result()
    assert again["applied"] == 0
