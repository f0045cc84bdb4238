"""`fabray capacity`: the projection's arithmetic (pure, hand-checked) and the command on a tiny case."""

from __future__ import annotations

import json
import math

import pytest

from fabray import capacity as cap
from fabray.cli import main
from fabray.errors import BadInputError

MB = 1e6


def _m(model, batch, params, train_wps, infer_wps, peak, device="cpu"):
    return cap.Measurement(
        model=model, batch_size=batch, params=params, train_windows_per_s=train_wps,
        infer_windows_per_s=infer_wps, peak_train_bytes=peak, memory_source="cpu_rss_peak_delta",
        tf_allocator_peak_bytes=None, device=device, steps=3,
    )


# Two models, 100k + 400k parameters; peak memory = fixed + slope x batch (1 MB and 2 MB/window).
MEASURED = [
    _m("a", 32, 100_000, 1000.0, 10_000.0, 50 * MB + 32 * 1 * MB),
    _m("a", 64, 100_000, 1000.0, 10_000.0, 50 * MB + 64 * 1 * MB),
    _m("b", 32, 400_000, 250.0, 2_000.0, 80 * MB + 32 * 2 * MB),
    _m("b", 64, 400_000, 500.0, 5_000.0, 80 * MB + 64 * 2 * MB),
]
PHASE = cap.SeedPhase(9, "test", data_rows=1_000_000, model_params=1_000_000, batch_size=64,
                      seed_memory_gb=10.0, seed_h100=1, seed_plan="test")
ASSUME = cap.Assumptions(gpu_speedup=10.0, train_fraction=0.5, full_train_epochs=20,
                         retrain_epochs=3, retrain_data_fraction=0.3, retrain_budget_h=2.0,
                         process_overhead_gb=0.6, serving_replicas=2,
                         realtime_windows_per_s=10.0, batch_windows_per_10min=600.0)


def test_projection_matches_hand_arithmetic():
    p = cap.project_phase(PHASE, MEASURED, ASSUME)
    # scale = 1M / (100k + 400k) = 2; at batch 64: (1/1000 + 1/500) s/window x 2 = 0.006 s
    assert p["params_scale"] == pytest.approx(2.0)
    assert p["epoch_windows"] == pytest.approx(500_000)
    assert p["epoch_s_here"] == pytest.approx(3000.0)
    assert p["epoch_s_h100"] == pytest.approx(300.0)
    assert p["full_train_h_h100"] == pytest.approx(300 * 20 / 3600)
    assert p["daily_retrain_h_h100"] == pytest.approx(300 * 3 * (0.3 / 0.5) / 3600)  # 0.15 h
    assert p["retrain_within_budget"] is True
    # training: 16 B x 1M + (1 + 2) MB/window x 64 x scale 2 + 2 processes x 0.6 GB
    assert p["train_memory_gb"] == pytest.approx((16e6 + 3e6 * 64 * 2 + 2 * 0.6e9) / 1e9)
    # serving: 2 replicas x (4 B x 1M + 0.6 GB)
    assert p["serve_memory_gb"] == pytest.approx(2 * (4e6 + 0.6e9) / 1e9)
    assert p["total_memory_gb"] == pytest.approx(p["train_memory_gb"] + p["serve_memory_gb"])
    # serving: (10 + 1) windows/s x (1/10000 + 1/5000) s x 2 / 10
    assert p["serving_gpu_share"] == pytest.approx(11 * 3e-4 * 2 / 10)
    assert p["retrain_gpu_share"] == pytest.approx(0.15 / 2.0)
    assert (p["h100_needed_by_memory"], p["h100_needed_by_compute"], p["h100_needed"]) == (1, 1, 1)
    assert p["seed_memory_gb"] == 10.0 and p["memory_per_gpu_gb"] == pytest.approx(p["total_memory_gb"])


def test_unmeasured_batch_uses_the_nearest_measured_one():
    at_48 = cap.project_phase(cap.SeedPhase(9, "t", 1_000_000, 1_000_000, 48, 1, 1, "t"), MEASURED, ASSUME)
    at_64 = cap.project_phase(PHASE, MEASURED, ASSUME)
    at_40 = cap.project_phase(cap.SeedPhase(9, "t", 1_000_000, 1_000_000, 40, 1, 1, "t"), MEASURED, ASSUME)
    assert at_48["epoch_s_here"] == pytest.approx(at_64["epoch_s_here"])  # tie 32/64 → the larger
    # batch 40 → the batch-32 row: (1/1000 + 1/250) x 2 x 500k
    assert at_40["epoch_s_here"] == pytest.approx(0.010 * 500_000)


def test_measured_on_a_gpu_takes_no_speedup():
    on_gpu = [cap.Measurement(**{**m.to_dict(), "device": "gpu"}) for m in MEASURED]
    p = cap.project_phase(PHASE, on_gpu, ASSUME)
    assert p["epoch_s_h100"] == pytest.approx(p["epoch_s_here"]) == pytest.approx(3000.0)


def test_h100_count_grows_with_memory_and_with_compute():
    heavy_memory = cap.Assumptions(**{**ASSUME.to_dict(), "process_overhead_gb": 30.0})
    p = cap.project_phase(PHASE, MEASURED, heavy_memory)
    # (2 + 2) processes x 30 GB + ~0.4 GB > 72 GB usable per H100 → 2 by memory
    assert p["h100_needed_by_memory"] == 2 and p["h100_needed"] == 2
    assert p["memory_per_gpu_gb"] == pytest.approx(p["total_memory_gb"] / 2)

    slow_gpu = cap.Assumptions(**{**ASSUME.to_dict(), "gpu_speedup": 0.05})
    p = cap.project_phase(PHASE, MEASURED, slow_gpu)
    # retrain = 0.15 h x 200 = 30 h against a 2 h budget → 15 GPUs' worth, and over budget
    assert p["daily_retrain_h_h100"] == pytest.approx(30.0)
    assert p["retrain_within_budget"] is False
    assert p["h100_needed_by_compute"] == math.ceil(15.0 + p["serving_gpu_share"])


def test_activation_slope():
    a_rows = [m for m in MEASURED if m.model == "a"]
    assert cap.activation_bytes_per_window(a_rows) == pytest.approx(1 * MB)
    assert cap.activation_bytes_per_window(a_rows[:1]) == pytest.approx((50 + 32) * MB / 32)  # upper bound
    shrinking = [_m("c", 32, 1, 1.0, 1.0, 90 * MB), _m("c", 64, 1, 1.0, 1.0, 60 * MB)]
    assert cap.activation_bytes_per_window(shrinking) == 0.0  # noise never makes memory negative
    assert cap.activation_bytes_per_window([_m("c", 32, 1, 1.0, 1.0, None)]) == 0.0


def test_seed_table_is_the_seeds():
    assert [(p.data_rows, p.model_params, p.batch_size, p.seed_memory_gb) for p in cap.SEED_PHASES] == [
        (781_163, 1_670_000, 32, 24.0), (1_000_000, 2_500_000, 64, 32.0), (1_500_000, 4_000_000, 128, 48.0)
    ]
    assert [p.seed_h100 for p in cap.SEED_PHASES] == [1, 2, 2]
    with pytest.raises(BadInputError, match="phase=4"):
        cap.seed_phase(4)


def test_bad_assumptions_are_refused():
    with pytest.raises(BadInputError, match="gpu_speedup"):
        cap.Assumptions(gpu_speedup=0)
    with pytest.raises(BadInputError, match="train_fraction"):
        cap.Assumptions(train_fraction=-0.1)
    with pytest.raises(BadInputError, match="measurement"):
        cap.project_phase(PHASE, [], ASSUME)


def test_capacity_command_measures_and_prints_the_table(tmp_path, capsys):
    out = tmp_path / "capacity.json"
    code = main(["capacity", "--quick", "--models", "rule", "--batch-sizes", "8,16", "--phase", "3",
                 "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "MEASURED here (CPU)" in text and "PROJECTED" in text and "seed GB" in text
    report = json.loads(out.read_text())
    rows = report["measured"]["rows"]
    assert [(r["model"], r["batch_size"]) for r in rows] == [("rule", 8), ("rule", 16)]
    from fabray.models import build_model

    assert rows[0]["params"] == build_model("rule", 100, 12).count_params()
    for r in rows:
        assert r["train_windows_per_s"] > 0 and r["infer_windows_per_s"] > 0
        assert r["memory_source"] == "cpu_rss_peak_delta" and r["peak_train_bytes"] >= 0
    (phase,) = report["projected"]["phases"]
    assert (phase["phase"], phase["data_rows"], phase["seed_memory_gb"]) == (3, 1_500_000, 48.0)
    assert phase["h100_needed"] >= 1
    assert report["assumptions"]["gpu_speedup"] == 30.0
    # the table row of phase 3 carries the seed's claim beside the projection
    row = next(line for line in text.splitlines() if line.startswith("3 ") and "1,500,000" in line)
    assert "48" in row.split()


@pytest.mark.parametrize("argv, needle", [
    (["--batch-sizes", "0"], "--batch-sizes"),
    (["--batch-sizes", "x"], "--batch-sizes"),
    (["--models", "transformerx"], "transformerx"),
    (["--gpu-speedup", "0"], "gpu_speedup"),
])
def test_capacity_bad_input_exits_2(argv, needle, capsys):
    assert main(["capacity", "--quick", *argv]) == 2
    assert needle in capsys.readouterr().err
