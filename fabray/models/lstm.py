"""`lstm`: stacked LSTM 128→128→64 + Dense 128→64→1 (the seed's first model, DESIGN §3).

`[B, L, F]` window → `[B, 1]` (a logit for task "event").
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from fabray.models._checks import check_dropout, check_input_dims, check_sizes
from fabray.models.layers.seed_blocks import dense_head
from fabray.models.layers.scaling import Scaling, scaled_window


@dataclass(frozen=True)
class LSTMConfig:
    """Hyper-parameters of `lstm`; larger Phase 2–3 models are a change of these sizes."""

    lstm_units: tuple[int, ...] = (128, 128, 64)  # one LSTM layer per entry
    head_units: tuple[int, ...] = (128, 64)  # Dense(relu) layers before Dense(1)
    dropout: float = 0.1  # between LSTM layers and before each head layer (not recurrent)

    def __post_init__(self) -> None:
        check_sizes("lstm", lstm_units=self.lstm_units, head_units=self.head_units)
        check_dropout("lstm", self.dropout)


def build_lstm(cfg: LSTMConfig, lookback: int, n_features: int, scaling: Scaling = None) -> keras.Model:
    check_input_dims("lstm", lookback, n_features)
    window, x = scaled_window(lookback, n_features, scaling)  # raw [B, L, F] → z-scores [B, L, F]
    last = len(cfg.lstm_units) - 1
    for i, units in enumerate(cfg.lstm_units):
        # Default activations, no recurrent_dropout: cuDNN-eligible on a GPU.
        x = keras.layers.LSTM(units, return_sequences=i < last, name=f"lstm_{i}")(x)
        if i < last and cfg.dropout > 0:  # x: [B, L, units]
            x = keras.layers.Dropout(cfg.dropout, name=f"lstm_dropout_{i}")(x)
    out = dense_head(x, cfg.head_units, cfg.dropout, prefix="head")  # [B, units] → [B, 1]
    return keras.Model(window, out, name="lstm")
