"""`cnn_lstm`: multi-scale Conv1D (64 filters at kernels 3/5/7, concatenated) + LSTM 128→64.

The convolutions see short bursts at three time scales; the LSTMs carry them over the window.
`[B, L, F]` → `[B, L, 192]` → `[B, 64]` → `[B, 1]` (DESIGN §3).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from fabray.models._checks import check_dropout, check_input_dims, check_sizes
from fabray.models.layers.seed_blocks import MultiScaleConv1D, dense_head
from fabray.models.layers.scaling import Scaling, scaled_window


@dataclass(frozen=True)
class CNNLSTMConfig:
    """Hyper-parameters of `cnn_lstm`."""

    conv_filters: int = 64  # filters per kernel size
    kernel_sizes: tuple[int, ...] = (3, 5, 7)
    lstm_units: tuple[int, ...] = (128, 64)
    head_units: tuple[int, ...] = (64,)
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check_sizes(
            "cnn_lstm", conv_filters=(self.conv_filters,), kernel_sizes=self.kernel_sizes,
            lstm_units=self.lstm_units, head_units=self.head_units,
        )
        check_dropout("cnn_lstm", self.dropout)


def build_cnn_lstm(cfg: CNNLSTMConfig, lookback: int, n_features: int, scaling: Scaling = None) -> keras.Model:
    check_input_dims("cnn_lstm", lookback, n_features)
    window, x = scaled_window(lookback, n_features, scaling)  # raw [B, L, F] → z-scores [B, L, F]
    x = MultiScaleConv1D(cfg.conv_filters, cfg.kernel_sizes, name="multiscale_conv")(x)
    # x: [B, L, conv_filters * len(kernel_sizes)]
    last = len(cfg.lstm_units) - 1
    for i, units in enumerate(cfg.lstm_units):
        x = keras.layers.LSTM(units, return_sequences=i < last, name=f"lstm_{i}")(x)
        if i < last and cfg.dropout > 0:  # x: [B, L, units]
            x = keras.layers.Dropout(cfg.dropout, name=f"lstm_dropout_{i}")(x)
    out = dense_head(x, cfg.head_units, cfg.dropout, prefix="head")  # [B, units] → [B, 1]
    return keras.Model(window, out, name="cnn_lstm")
