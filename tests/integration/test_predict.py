"""`fabray predict` (DESIGN §8: offline batch, Ray Data) on the session's tiny run with its fitted
ensemble: the Parquet file it writes holds Forecaster.predict's frame, computed in-process on
the same data, window for window (the models' forward passes ran in Ray Data actors instead).
The command joins the session's Ray (`ray_cluster`, 2 CPUs) and leaves it running."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

COLUMNS = ["zone", "end_time", "score_lstm", "score_rule", "probability", "threshold", "decision"]


def test_predict_writes_forecaster_predicts_frame_through_ray_data(tiny_ensemble_run, tiny_run, tmp_path, capsys):
    from fabray.api import Forecaster
    from fabray.cli import main

    run, data = tiny_ensemble_run, tiny_run.data
    out = tmp_path / "scores.parquet"
    # batches of 2048 windows: several batches, returned by Ray Data in any order
    assert main(["predict", "--run", str(run), "--data", str(data), "--out", str(out), "--batch-size", "2048"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    scores = pd.read_parquet(out)

    expected = Forecaster.load(run).predict(data)  # in-process scoring, the same ensemble replay
    assert list(scores.columns) == COLUMNS == list(expected.columns)
    assert len(scores) == len(expected) > 4 * 2048  # every complete window of the 4 zones
    assert scores["zone"].tolist() == expected["zone"].tolist()
    assert (scores["end_time"].to_numpy() == expected["end_time"].to_numpy()).all()
    for column in ("score_lstm", "score_rule", "probability"):
        assert np.isfinite(scores[column]).all(), column
        np.testing.assert_allclose(scores[column], expected[column], rtol=1e-5, atol=1e-6, err_msg=column)
    assert (scores["threshold"] == expected["threshold"]).all()
    # the decision is probability >= threshold; a window on the threshold may flip with a last-bit difference
    near = np.isclose(expected["probability"], expected["threshold"], rtol=0, atol=1e-6)
    assert (scores["decision"] == expected["decision"])[~near].all()
    assert printed.startswith(f"{out}: {len(expected):,} windows of 4 zones")

    latest = tmp_path / "latest.parquet"
    assert main(["predict", "--run", str(run), "--data", str(data), "--out", str(latest), "--latest"]) == 0
    newest = pd.read_parquet(latest)
    tail = expected.groupby("zone", sort=False).tail(1).reset_index(drop=True)
    assert newest["zone"].tolist() == tail["zone"].tolist() and len(newest) == 4
    np.testing.assert_allclose(newest["probability"], tail["probability"], rtol=1e-5, atol=1e-6)
