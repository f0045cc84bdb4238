"""`spike`: the spike detector. Conv1D + 4-head self-attention (residual + norm) + BiLSTM(128).

Tuned for the rare delay-spike class: its loss for task "event" is a class-balanced binary focal
loss (Lin et al. 2017) on logits, `alpha` weighting the positive class and `gamma` focusing on
hard windows (see `fabray.models.model_loss`). `[B, L, F]` → `[B, 1]` (DESIGN §3).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from fabray.errors import BadInputError
from fabray.models._checks import check_dropout, check_input_dims, check_sizes
from fabray.models.layers.seed_blocks import SelfAttentionBlock, dense_head
from fabray.models.layers.scaling import Scaling, scaled_window


@dataclass(frozen=True)
class SpikeConfig:
    """Hyper-parameters of `spike` (and of its focal loss)."""

    conv_filters: int = 128  # model width d through attention
    conv_kernel_size: int = 5
    num_heads: int = 4
    key_dim: int = 32  # per head
    attention_dropout: float = 0.0
    bilstm_units: int = 128  # per direction
    head_units: tuple[int, ...] = (64,)
    dropout: float = 0.1
    focal_alpha: float = 0.75  # weight of the positive (delay) class in the focal loss
    focal_gamma: float = 2.0  # focusing: 0 gives plain (class-weighted) cross-entropy

    def __post_init__(self) -> None:
        check_sizes(
            "spike", conv_filters=(self.conv_filters,), conv_kernel_size=(self.conv_kernel_size,),
            num_heads=(self.num_heads,), key_dim=(self.key_dim,),
            bilstm_units=(self.bilstm_units,), head_units=self.head_units,
        )
        check_dropout("spike", self.dropout)
        check_dropout("spike", self.attention_dropout, "attention_dropout")
        if not 0.0 < float(self.focal_alpha) < 1.0 or float(self.focal_gamma) < 0.0:
            raise BadInputError(
                "spike: focal_alpha must be in (0, 1) and focal_gamma >= 0. "
                f"Received: focal_alpha={self.focal_alpha!r}, focal_gamma={self.focal_gamma!r}"
            )


def build_spike(cfg: SpikeConfig, lookback: int, n_features: int, scaling: Scaling = None) -> keras.Model:
    check_input_dims("spike", lookback, n_features)
    window, x = scaled_window(lookback, n_features, scaling)  # raw [B, L, F] → z-scores [B, L, F]
    x = keras.layers.Conv1D(
        cfg.conv_filters, cfg.conv_kernel_size, padding="same", activation="relu", name="conv"
    )(x)  # [B, L, d]
    x = SelfAttentionBlock(
        cfg.num_heads, cfg.key_dim, cfg.attention_dropout, name="self_attention"
    )(x)  # [B, L, d]
    x = keras.layers.Bidirectional(
        keras.layers.LSTM(cfg.bilstm_units), name="bilstm"
    )(x)  # [B, 2 * bilstm_units]
    out = dense_head(x, cfg.head_units, cfg.dropout, prefix="head")  # [B, 1]
    return keras.Model(window, out, name="spike")
