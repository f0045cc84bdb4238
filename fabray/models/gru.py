"""`gru`: residual GRU 128→128→64 (residual connections around the GRU blocks), DESIGN §3.

Each block is `norm(GRU(x) + skip(x))`, the skip projected by a Dense where widths differ
(12→128 and 128→64 by default). `[B, L, F]` → `[B, 1]`.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from fabray.models._checks import check_dropout, check_input_dims, check_sizes
from fabray.models.layers.seed_blocks import ResidualRecurrent, dense_head
from fabray.models.layers.scaling import Scaling, scaled_window


@dataclass(frozen=True)
class GRUConfig:
    """Hyper-parameters of `gru`."""

    gru_units: tuple[int, ...] = (128, 128, 64)  # one residual GRU block per entry
    head_units: tuple[int, ...] = (64,)  # Dense(relu) layers before Dense(1)
    dropout: float = 0.1  # between blocks and before each head layer (not recurrent)
    use_norm: bool = True  # LayerNorm after each residual sum

    def __post_init__(self) -> None:
        check_sizes("gru", gru_units=self.gru_units, head_units=self.head_units)
        check_dropout("gru", self.dropout)


def build_gru(cfg: GRUConfig, lookback: int, n_features: int, scaling: Scaling = None) -> keras.Model:
    check_input_dims("gru", lookback, n_features)
    window, x = scaled_window(lookback, n_features, scaling)  # raw [B, L, F] → z-scores [B, L, F]
    last = len(cfg.gru_units) - 1
    for i, units in enumerate(cfg.gru_units):
        x = ResidualRecurrent(
            units, cell="gru", return_sequences=i < last, use_norm=cfg.use_norm, name=f"res_gru_{i}"
        )(x)  # [B, L, units], the last block [B, units]
        if i < last and cfg.dropout > 0:
            x = keras.layers.Dropout(cfg.dropout, name=f"gru_dropout_{i}")(x)
    out = dense_head(x, cfg.head_units, cfg.dropout, prefix="head")  # [B, 1]
    return keras.Model(window, out, name="gru")
