"""The registry's contract: names, overrides, errors, losses and the `fabray models` table."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fabray.cli import main
from fabray.errors import BadInputError
from fabray.models import (
    MODELS,
    build_model,
    forward_latency_ms,
    make_config,
    model_loss,
    model_table,
)

LOGITS = np.array([[0.5], [1.0], [-2.0]], dtype="float32")
LABELS = np.array([[1.0], [0.0], [0.0]], dtype="float32")


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def test_seed_claims_are_recorded() -> None:
    claims = {name: spec.seed_param_claim for name, spec in MODELS.items()}
    assert claims == {"lstm": 340_000, "gru": 280_000, "cnn_lstm": 450_000, "spike": 520_000,
                      "rule": 85_000, "patchtst": None}
    assert all(spec.name == name and spec.description for name, spec in MODELS.items())


def test_unknown_model_name_lists_the_known_ones() -> None:
    with pytest.raises(BadInputError, match="known models: lstm, gru, cnn_lstm, spike, rule, patchtst"):
        build_model("transformer", 20, 12)


def test_unknown_or_invalid_hyper_parameters_are_named() -> None:
    with pytest.raises(BadInputError, match=r"lstm: unknown hyper-parameter\(s\) \['units'\]"):
        make_config("lstm", {"units": [8]})
    with pytest.raises(BadInputError, match="lstm_units must be a list of positive integers"):
        make_config("lstm", {"lstm_units": [8, 0]})
    with pytest.raises(BadInputError, match="dropout must be in"):
        make_config("gru", {"dropout": 1.5})
    with pytest.raises(BadInputError, match="focal_alpha"):
        make_config("spike", {"focal_alpha": 1.0})
    with pytest.raises(BadInputError, match="patchtst: .*d_model"):
        make_config("patchtst", {"d_model": 10, "num_heads": 4})
    with pytest.raises(BadInputError, match="patchtst: cannot build"):
        build_model("patchtst", 5, 12)  # a window shorter than one patch


def test_overrides_change_the_built_model() -> None:
    small = build_model("lstm", 20, 12, {"lstm_units": [4], "head_units": []})
    # LSTM(4) on 12 features + Dense(1): exactly these weights.
    assert small.count_params() == 4 * (4 * (12 + 4) + 4) + (4 + 1)


def test_event_loss_is_binary_cross_entropy_on_logits() -> None:
    expected = np.mean([-math.log(_sigmoid(0.5)), -math.log(1 - _sigmoid(1.0)),
                        -math.log(1 - _sigmoid(-2.0))])
    assert float(model_loss("lstm", "event")(LABELS, LOGITS)) == pytest.approx(expected, rel=1e-5)


def test_spike_event_loss_is_class_balanced_focal_loss_by_hand() -> None:
    alpha, gamma = 0.75, 2.0  # SpikeConfig defaults
    terms = []
    for y, z in zip(LABELS[:, 0], LOGITS[:, 0]):
        p_true = _sigmoid(z) if y == 1 else 1 - _sigmoid(z)
        alpha_t = alpha if y == 1 else 1 - alpha
        terms.append(-alpha_t * (1 - p_true) ** gamma * math.log(p_true))
    loss = model_loss("spike", "event")
    assert float(loss(LABELS, LOGITS)) == pytest.approx(np.mean(terms), rel=1e-4)
    # Config reaches the loss: gamma 0 and alpha 0.5 is half the plain cross-entropy.
    plain = float(model_loss("lstm", "event")(LABELS, LOGITS))
    tuned = model_loss("spike", "event", {"focal_gamma": 0.0, "focal_alpha": 0.5})
    assert float(tuned(LABELS, LOGITS)) == pytest.approx(0.5 * plain, rel=1e-4)


def test_only_the_event_task_has_a_loss() -> None:
    for task in ("delay", "classify"):  # "delay" (a regression) was removed, issue 10
        with pytest.raises(BadInputError, match=r"task must be one of \('event',\)"):
            model_loss("lstm", task)


def test_model_table_rows_and_latency_on_a_tiny_model() -> None:
    tiny = {"rule": {"lstm_units": 4, "head_units": [4]}}
    (row,) = model_table(20, 12, tiny, names=["rule"], repeats=2, batch_size=8)
    assert row["name"] == "rule" and row["seed_param_claim"] == 85_000
    assert row["params"] == build_model("rule", 20, 12, tiny["rule"]).count_params()
    assert row["latency_single_ms"] > 0 and row["latency_batch8_ms"] > 0
    model = build_model("lstm", 20, 12, {"lstm_units": [4], "head_units": []})
    assert forward_latency_ms(model, batch_size=3, repeats=2, warmup=1) > 0


def test_cli_models_prints_an_aligned_table_and_writes_json(tmp_path, capsys) -> None:
    config = tmp_path / "fabray.yaml"
    config.write_text(
        "task: {lookback: 20}\n"
        "train:\n"
        "  model_overrides:\n"
        "    lstm: {lstm_units: [4], head_units: []}\n"
        "    rule: {lstm_units: 4, head_units: [4]}\n"
    )
    out = tmp_path / "models.json"
    code = main(["models", "--config", str(config), "--names", "lstm,rule", "--repeats", "0",
                 "--json", str(out)])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:4] == ["model", "params", "seed_claim", "ratio"]
    lstm_line = next(line for line in lines if line.startswith("lstm"))
    assert lstm_line.split()[1] == f"{4 * (4 * 16 + 4) + 5:,}"
    assert len({len(line) for line in lines[:1] + [lstm_line]}) == 1  # aligned columns
    data = json.loads(out.read_text())
    assert data["lookback"] == 20 and [r["name"] for r in data["models"]] == ["lstm", "rule"]


def test_cli_models_bad_input_exits_2(tmp_path, capsys) -> None:
    assert main(["models", "--names", "lstm,nope", "--repeats", "0"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    config = tmp_path / "bad.yaml"
    config.write_text("train:\n  model_overrides:\n    lstm: {units: 3}\n")
    assert main(["models", "--config", str(config), "--repeats", "0"]) == 2
    assert "units" in capsys.readouterr().err
    config.write_text("models:\n  overrides:\n    lstm: {lstm_units: [4]}\n")  # the removed second place
    assert main(["models", "--config", str(config), "--repeats", "0"]) == 2
    assert "train.model_overrides" in capsys.readouterr().err


def test_cli_models_accepts_a_config_with_the_gbt_members_overrides_and_mentions_it(tmp_path, capsys) -> None:
    config = tmp_path / "gbt.yaml"
    config.write_text("train:\n  model_overrides:\n    gbt: {n_estimators: 50}\n    lstm: {lstm_units: [4], head_units: [4]}\n")
    assert main(["models", "--config", str(config), "--repeats", "0"]) == 0
    out = capsys.readouterr().out
    assert "gbt: the LightGBM member" in out and out.splitlines()[0].split()[0] == "model"
