"""PatchTST's Keras blocks (Nie et al., ICLR 2023): RevIN, patching and the channel-independent
Transformer encoder (pure `keras.layers` / `keras.ops`, serializable, no tf.*, no ray).

Each block is a `keras.layers.Layer` subclass registered under package "fabray", with
`get_config`, so a saved `.keras` model reloads exactly.
"""

from __future__ import annotations

import keras
from keras import ops


# --- PatchTST blocks (Nie et al., ICLR 2023): RevIN, patching, channel-independent encoder ---
#
# Faithful to the paper and its official code (yuqinie98/PatchTST, PatchTST_supervised/layers):
# post-norm Transformer encoder with BatchNorm, GELU feed-forward, learnable positional encoding
# (uniform(-0.02, 0.02)), optional residual attention (pre-softmax scores of layer k are added to
# those of layer k+1), and linear layers initialised like torch.nn.Linear's default
# (uniform(+-1/sqrt(fan_in))). Shapes: B batch, L lookback, C channels, N patches, P patch length,
# D d_model, H heads.


def torch_like_dense(units: int, fan_in: int, **kwargs) -> keras.layers.Dense:
    """A Dense layer initialised like torch.nn.Linear (the official PatchTST code's layers):
    kernel and bias uniform(+-1/sqrt(fan_in)) (kaiming_uniform with a=sqrt(5) for the kernel)."""
    bound = 1.0 / float(fan_in) ** 0.5
    return keras.layers.Dense(
        units,
        kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
        bias_initializer=keras.initializers.RandomUniform(-bound, bound),
        **kwargs,
    )


def _patchtst_norm(norm: str, name: str) -> keras.layers.Layer:
    if norm == "batch":
        # torch BatchNorm1d(momentum=0.1, eps=1e-5) == keras momentum 0.9; statistics over (B*C, N)
        return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)
    if norm == "layer":
        return keras.layers.LayerNormalization(epsilon=1e-5, name=name)
    raise ValueError(f'`norm` must be "batch" or "layer". Received: norm={norm!r}')


@keras.saving.register_keras_serializable(package="fabray")
class RevIN(keras.layers.Layer):
    """Reversible instance normalization (Kim et al., ICLR 2022), per instance and channel.

    `mode="norm"`: `x [B, L, C]` -> `(y [B, L, C], mean [B, 1, C], std [B, 1, C])`, with
    `y = (x - mean) / std * weight + bias` (statistics over time, not differentiated through).
    `mode="denorm"`: `[y [B, H, C], mean, std]` -> `y [B, H, C]` in the input's units.
    Call the *same* layer for both so the learnable affine (one weight and bias per channel) is
    shared. Run it in float32 (`dtype="float32"`) under mixed precision.
    """

    def __init__(self, affine: bool = True, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.affine = bool(affine)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(
                f"RevIN needs a known number of channels (last axis). Received: input_shape={input_shape}"
            )
        if self.affine:
            self.affine_weight = self.add_weight(shape=(channels,), initializer="ones", name="affine_weight")
            self.affine_bias = self.add_weight(shape=(channels,), initializer="zeros", name="affine_bias")

    def call(self, inputs, mode: str = "norm"):
        if mode == "norm":
            x = inputs  # [B, L, C]
            mean = ops.stop_gradient(ops.mean(x, axis=1, keepdims=True))  # [B, 1, C]
            var = ops.var(x, axis=1, keepdims=True)  # population variance, as the official code
            std = ops.stop_gradient(ops.sqrt(var + self.epsilon))  # [B, 1, C]
            y = (x - mean) / std
            if self.affine:
                y = y * self.affine_weight + self.affine_bias
            return y, mean, std
        if mode == "denorm":
            y, mean, std = inputs  # [B, H, C], [B, 1, C], [B, 1, C]
            if self.affine:
                y = (y - self.affine_bias) / (self.affine_weight + self.epsilon * self.epsilon)
            return y * std + mean
        raise ValueError(f'RevIN mode must be "norm" or "denorm". Received: mode={mode!r}')

    def get_config(self):
        return {**super().get_config(), "affine": self.affine, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="fabray")
class Patching(keras.layers.Layer):
    """Split each channel's series into (possibly overlapping) patches: `[B, L, C] -> [B, C, N, P]`.

    Patch i of channel c holds `x[:, i * stride : i * stride + patch_len, c]`, for
    `N = (L' - patch_len) // stride + 1` patches, where `L' = L` with `padding="none"` and
    `L' = L + stride` with `padding="end"` (the last value repeated `stride` times, as the official
    code's `ReplicationPad1d((0, stride))`). A tail shorter than a patch is dropped (like `unfold`).
    """

    def __init__(self, patch_len: int, stride: int, padding: str = "none", **kwargs):
        super().__init__(**kwargs)
        if int(patch_len) < 1 or int(stride) < 1:
            raise ValueError(
                f"patch_len and stride must be >= 1. Received: patch_len={patch_len}, stride={stride}"
            )
        if padding not in ("none", "end"):
            raise ValueError(f'padding must be "none" or "end". Received: padding={padding!r}')
        self.patch_len = int(patch_len)
        self.stride = int(stride)
        self.padding = padding

    def num_patches(self, lookback: int) -> int:
        """Number of patches N for a series of `lookback` steps."""
        padded = lookback + (self.stride if self.padding == "end" else 0)
        if padded < self.patch_len:
            raise ValueError(
                f"lookback is shorter than one patch (patch_len={self.patch_len}). "
                f"Received: lookback={lookback}"
            )
        return (padded - self.patch_len) // self.stride + 1

    def build(self, input_shape):
        if input_shape[1] is None:
            raise ValueError(f"Patching needs a known lookback (axis 1). Received: input_shape={input_shape}")
        self.num_patches(input_shape[1])  # fails early when the lookback is shorter than a patch

    def call(self, inputs):
        n = self.num_patches(inputs.shape[1])
        x = ops.transpose(inputs, (0, 2, 1))  # [B, C, L]
        if self.padding == "end":
            last = x[:, :, -1:]  # [B, C, 1]
            x = ops.concatenate([x] + [last] * self.stride, axis=-1)  # [B, C, L + stride]
        starts = [i * self.stride for i in range(n)]
        index = ops.convert_to_tensor(
            [[s + j for j in range(self.patch_len)] for s in starts], dtype="int32"
        )  # [N, P]
        return ops.take(x, index, axis=2)  # [B, C, N, P]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2], self.num_patches(input_shape[1]), self.patch_len)

    def get_config(self):
        return {
            **super().get_config(),
            "patch_len": self.patch_len,
            "stride": self.stride,
            "padding": self.padding,
        }


@keras.saving.register_keras_serializable(package="fabray")
class ResidualMultiHeadAttention(keras.layers.Layer):
    """Scaled dot-product self-attention whose pre-softmax scores can take the previous layer's
    (residual attention, He et al. 2020, as PatchTST's `res_attention=True`).

    `x [B', N, D]`, optional `prev_scores [B', H, N, N]` -> `(out [B', N, D], scores [B', H, N, N])`.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        attn_dropout: float = 0.0,
        proj_dropout: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if d_model % num_heads:
            raise ValueError(
                f"d_model must be divisible by num_heads. Received: d_model={d_model}, num_heads={num_heads}"
            )
        self.d_model = int(d_model)
        self.num_heads = int(num_heads)
        self.attn_dropout = float(attn_dropout)
        self.proj_dropout = float(proj_dropout)
        self.head_dim = self.d_model // self.num_heads
        self.query = torch_like_dense(self.d_model, self.d_model, name="query")
        self.key = torch_like_dense(self.d_model, self.d_model, name="key")
        self.value = torch_like_dense(self.d_model, self.d_model, name="value")
        self.output_projection = torch_like_dense(self.d_model, self.d_model, name="output")
        self.attn_dropout_layer = keras.layers.Dropout(self.attn_dropout)
        self.proj_dropout_layer = keras.layers.Dropout(self.proj_dropout)

    def build(self, input_shape):
        for dense in (self.query, self.key, self.value, self.output_projection):
            dense.build((None, None, self.d_model))

    def _split_heads(self, x, n):
        x = ops.reshape(x, (-1, n, self.num_heads, self.head_dim))  # [B', N, H, Dh]
        return ops.transpose(x, (0, 2, 1, 3))  # [B', H, N, Dh]

    def call(self, inputs, prev_scores=None, training=None):
        n = ops.shape(inputs)[1]
        q = self._split_heads(self.query(inputs), n)  # [B', H, N, Dh]
        k = self._split_heads(self.key(inputs), n)
        v = self._split_heads(self.value(inputs), n)
        scale = ops.cast(self.head_dim**-0.5, q.dtype)
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * scale  # [B', H, N, N]
        if prev_scores is not None:
            scores = scores + prev_scores
        weights = ops.softmax(scores, axis=-1)
        weights = self.attn_dropout_layer(weights, training=training)
        out = ops.matmul(weights, v)  # [B', H, N, Dh]
        out = ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (-1, n, self.d_model))  # [B', N, D]
        out = self.proj_dropout_layer(self.output_projection(out), training=training)
        return out, scores

    def get_config(self):
        return {
            **super().get_config(),
            "d_model": self.d_model,
            "num_heads": self.num_heads,
            "attn_dropout": self.attn_dropout,
            "proj_dropout": self.proj_dropout,
        }


@keras.saving.register_keras_serializable(package="fabray")
class PatchTSTEncoderLayer(keras.layers.Layer):
    """One post-norm Transformer encoder layer of PatchTST (attention, add & norm, GELU FFN,
    add & norm; dropout on the attention projection, both residual branches and inside the FFN).

    `x [B', N, D]`, optional `prev_scores` -> `(x [B', N, D], scores [B', H, N, N])`.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        norm: str = "batch",
        activation: str = "gelu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.d_model = int(d_model)
        self.num_heads = int(num_heads)
        self.d_ff = int(d_ff)
        self.dropout = float(dropout)
        self.attn_dropout = float(attn_dropout)
        self.norm = norm
        self.activation = activation
        self.attention = ResidualMultiHeadAttention(
            d_model, num_heads, attn_dropout=attn_dropout, proj_dropout=dropout, name="attention"
        )
        self.attention_dropout = keras.layers.Dropout(self.dropout)
        self.attention_norm = _patchtst_norm(norm, "attention_norm")
        self.ff_in = torch_like_dense(self.d_ff, self.d_model, activation=activation, name="ff_in")
        self.ff_dropout = keras.layers.Dropout(self.dropout)
        self.ff_out = torch_like_dense(self.d_model, self.d_ff, name="ff_out")
        self.ffn_dropout = keras.layers.Dropout(self.dropout)
        self.ffn_norm = _patchtst_norm(norm, "ffn_norm")

    def build(self, input_shape):
        shape = (None, None, self.d_model)
        self.attention.build(shape)
        self.attention_norm.build(shape)
        self.ff_in.build(shape)
        self.ff_out.build((None, None, self.d_ff))
        self.ffn_norm.build(shape)

    def call(self, inputs, prev_scores=None, training=None):
        attended, scores = self.attention(inputs, prev_scores=prev_scores, training=training)
        x = inputs + self.attention_dropout(attended, training=training)  # [B', N, D]
        x = self.attention_norm(x, training=training)
        h = self.ff_dropout(self.ff_in(x), training=training)  # [B', N, d_ff]
        x = x + self.ffn_dropout(self.ff_out(h), training=training)  # [B', N, D]
        x = self.ffn_norm(x, training=training)
        return x, scores

    def get_config(self):
        return {
            **super().get_config(),
            "d_model": self.d_model,
            "num_heads": self.num_heads,
            "d_ff": self.d_ff,
            "dropout": self.dropout,
            "attn_dropout": self.attn_dropout,
            "norm": self.norm,
            "activation": self.activation,
        }


@keras.saving.register_keras_serializable(package="fabray")
class PatchTSTEncoder(keras.layers.Layer):
    """Channel-independent patch encoder (the official code's `TSTiEncoder`).

    `patches [B, C, N, P] -> [B, C, N, D]`: every channel's patches go through the *same* linear
    patch embedding, learnable positional encoding, dropout and encoder stack, with channels
    folded into the batch (`[B * C, N, D]`), so no information flows between channels.
    """

    def __init__(
        self,
        num_layers: int,
        d_model: int,
        num_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        norm: str = "batch",
        activation: str = "gelu",
        res_attention: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_layers) < 1:
            raise ValueError(f"num_layers must be >= 1. Received: num_layers={num_layers}")
        self.num_layers = int(num_layers)
        self.d_model = int(d_model)
        self.num_heads = int(num_heads)
        self.d_ff = int(d_ff)
        self.dropout = float(dropout)
        self.attn_dropout = float(attn_dropout)
        self.norm = norm
        self.activation = activation
        self.res_attention = bool(res_attention)
        self.embedding_dropout = keras.layers.Dropout(self.dropout)
        self.encoder_layers = [
            PatchTSTEncoderLayer(
                d_model, num_heads, d_ff, dropout=dropout, attn_dropout=attn_dropout,
                norm=norm, activation=activation, name=f"encoder_layer_{i}",
            )
            for i in range(self.num_layers)
        ]

    def build(self, input_shape):
        _, channels, num_patches, patch_len = input_shape
        if channels is None or num_patches is None or patch_len is None:
            raise ValueError(
                f"PatchTSTEncoder needs known [C, N, P]. Received: input_shape={input_shape}"
            )
        self.patch_embedding = torch_like_dense(self.d_model, patch_len, name="patch_embedding")
        self.patch_embedding.build((None, channels, num_patches, patch_len))
        self.positional_encoding = self.add_weight(
            shape=(num_patches, self.d_model),
            initializer=keras.initializers.RandomUniform(-0.02, 0.02),
            name="positional_encoding",
        )
        for layer in self.encoder_layers:
            layer.build((None, num_patches, self.d_model))

    def call(self, inputs, training=None):
        _, channels, num_patches, _ = inputs.shape
        x = self.patch_embedding(inputs)  # [B, C, N, D]
        x = ops.reshape(x, (-1, num_patches, self.d_model))  # [B * C, N, D]
        x = self.embedding_dropout(x + self.positional_encoding, training=training)
        scores = None
        for layer in self.encoder_layers:
            x, new_scores = layer(x, prev_scores=scores, training=training)
            scores = new_scores if self.res_attention else None
        return ops.reshape(x, (-1, channels, num_patches, self.d_model))  # [B, C, N, D]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], input_shape[2], self.d_model)

    def get_config(self):
        return {
            **super().get_config(),
            "num_layers": self.num_layers,
            "d_model": self.d_model,
            "num_heads": self.num_heads,
            "d_ff": self.d_ff,
            "dropout": self.dropout,
            "attn_dropout": self.attn_dropout,
            "norm": self.norm,
            "activation": self.activation,
            "res_attention": self.res_attention,
        }
