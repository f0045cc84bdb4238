"""PatchTST (Nie et al., ICLR 2023, "A Time Series is Worth 64 Words") in pure Keras 3.

Each channel's series is normalized per instance (RevIN), cut into patches, embedded and encoded
by a Transformer shared by all channels (channel independence), then read out by a flatten head:

- `task_head="score"` (the fab task): `[B, L, C] -> [B, 1]`, a logit. The head flattens every channel's encoding (`C * D * N`) into one `Dense(1)`,
  so channels meet only there. RevIN normalizes the inputs only (there is nothing to
  denormalize in a scalar score).
- `task_head="forecast"` (the paper's long-horizon benchmark): `[B, L, C] -> [B, horizon, C]`,
  a flatten head per channel (`D * N -> horizon`, weights shared across channels) followed by
  RevIN denormalization, exactly as the paper's supervised model.

Defaults fit the fab (lookback 100 -> 10 patches of 10 minutes); `benchmarks/ett.py` sets the
paper's ETTh1 hyper-parameters (patch 16, stride 8, end padding, d_model 16, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import keras

from fabray.errors import BadInputError
from fabray.models._checks import check_dropout, check_input_dims, check_sizes
from fabray.models.layers.patchtst import Patching, PatchTSTEncoder, RevIN, torch_like_dense
from fabray.models.layers.scaling import Scaling, scaled_window

__all__ = ["PatchTSTConfig", "build_patchtst"]


@dataclass(frozen=True)
class PatchTSTConfig:
    """Hyper-parameters of PatchTST (names follow the paper; defaults for the fab task)."""

    patch_len: int = 10  # P: steps per patch (10 minutes)
    stride: int = 10  # S: steps between patch starts (non-overlapping for the fab)
    padding_patch: Literal["none", "end"] = "none"  # "end": repeat the last step `stride` times
    num_layers: int = 3  # encoder layers (paper: e_layers)
    num_heads: int = 4
    d_model: int = 32
    d_ff: int = 64
    dropout: float = 0.2  # embedding, attention projection, residual and FFN dropout
    attn_dropout: float = 0.0  # dropout on the attention weights
    head_dropout: float = 0.0
    norm: Literal["batch", "layer"] = "batch"  # paper default: BatchNorm
    activation: str = "gelu"
    res_attention: bool = True  # add the previous layer's pre-softmax scores (official default)
    revin: bool = True
    revin_affine: bool = True  # learnable per-channel affine in RevIN
    task_head: Literal["score", "forecast"] = "score"
    horizon: int = 1  # forecast steps H (task_head="forecast" only)

    def __post_init__(self) -> None:
        choices = {
            "task_head": ("score", "forecast"),
            "padding_patch": ("none", "end"),
            "norm": ("batch", "layer"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise BadInputError(
                    f"patchtst: {name} must be one of {allowed}. Received: {name}={getattr(self, name)!r}"
                )
        sizes = ("patch_len", "stride", "num_layers", "num_heads", "d_model", "d_ff", "horizon")
        check_sizes("patchtst", allow_empty=(), **{name: (getattr(self, name),) for name in sizes})
        if self.d_model % self.num_heads:
            raise BadInputError(
                "patchtst: d_model must be divisible by num_heads. "
                f"Received: d_model={self.d_model}, num_heads={self.num_heads}"
            )
        for name in ("dropout", "attn_dropout", "head_dropout"):
            check_dropout("patchtst", getattr(self, name), name=name)


def build_patchtst(
    cfg: PatchTSTConfig, lookback: int, n_features: int, scaling: Scaling = None
) -> keras.Model:
    """Build PatchTST for windows of `lookback` steps x `n_features` channels.

    Returns a functional model of raw windows (z-scored by its first layer, `scaling`)
    `[B, lookback, n_features] -> [B, 1]` (`task_head="score"`) or
    `-> [B, horizon, n_features]` (`task_head="forecast"`); the last layer runs in float32.
    """
    check_input_dims("patchtst", lookback, n_features)
    patching = Patching(cfg.patch_len, cfg.stride, padding=cfg.padding_patch, name="patching")
    num_patches = patching.num_patches(lookback)  # raises if lookback < patch_len

    inputs, x = scaled_window(lookback, n_features, scaling)  # raw [B, L, C] → z-scores [B, L, C]
    revin = None
    if cfg.revin:
        revin = RevIN(affine=cfg.revin_affine, dtype="float32", name="revin")
        x, mean, std = revin(x, mode="norm")  # [B, L, C], [B, 1, C], [B, 1, C]
    x = patching(x)  # [B, C, N, P]
    x = PatchTSTEncoder(
        num_layers=cfg.num_layers,
        d_model=cfg.d_model,
        num_heads=cfg.num_heads,
        d_ff=cfg.d_ff,
        dropout=cfg.dropout,
        attn_dropout=cfg.attn_dropout,
        norm=cfg.norm,
        activation=cfg.activation,
        res_attention=cfg.res_attention,
        name="encoder",
    )(x)  # [B, C, N, D]
    # flatten d_model-major, as the official Flatten_Head does on [B, C, D, N]
    x = keras.layers.Permute((1, 3, 2), name="to_channel_dmodel_patch")(x)  # [B, C, D, N]

    if cfg.task_head == "score":
        x = keras.layers.Flatten(name="flatten")(x)  # [B, C * D * N]
        x = keras.layers.Dropout(cfg.head_dropout, name="head_dropout")(x)
        outputs = torch_like_dense(
            1, n_features * cfg.d_model * num_patches, dtype="float32", name="score"
        )(x)  # [B, 1]
    else:
        x = keras.layers.Reshape((n_features, cfg.d_model * num_patches), name="flatten")(x)  # [B, C, D*N]
        x = torch_like_dense(
            cfg.horizon, cfg.d_model * num_patches, dtype="float32" if revin is None else None, name="forecast"
        )(x)  # [B, C, H]
        x = keras.layers.Dropout(cfg.head_dropout, name="head_dropout")(x)
        x = keras.layers.Permute((2, 1), name="to_time_channel")(x)  # [B, H, C]
        outputs = revin([x, mean, std], mode="denorm") if revin is not None else x  # [B, H, C]
    return keras.Model(inputs, outputs, name=f"patchtst_{cfg.task_head}")
