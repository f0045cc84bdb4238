"""Keras blocks the seed models share (lstm / gru / cnn_lstm / spike): a residual recurrent
layer, multi-scale convolutions, a self-attention block and the dense head (pure `keras.layers` /
`keras.ops`, serializable, no tf.*, no ray).

Each block is a `keras.layers.Layer` subclass registered under package "fabray", with
`get_config`, so a saved `.keras` model reloads exactly. Sub-layers take the block's dtype policy
so a mixed_float16 policy reaches them; RNNs keep cuDNN-eligible settings (default activations,
no recurrent_dropout).
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="fabray")
class ResidualRecurrent(keras.layers.Layer):
    """A recurrent layer with a residual connection: `norm(rnn(x) + skip(x))`.

    `skip` is the identity when the input width equals `units`, else a Dense projection.
    With `return_sequences=False` the skip path uses the window's last step.

    Input `[B, L, C]` → output `[B, L, units]` (or `[B, units]`).
    """

    def __init__(
        self,
        units: int,
        cell: str = "gru",
        return_sequences: bool = True,
        use_norm: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(units) < 1:
            raise ValueError(f"ResidualRecurrent: units must be >= 1. Received: units={units}")
        if cell not in ("gru", "lstm"):
            raise ValueError(f"ResidualRecurrent: cell must be 'gru' or 'lstm'. Received: cell={cell!r}")
        self.units = int(units)
        self.cell = cell
        self.return_sequences = bool(return_sequences)
        self.use_norm = bool(use_norm)
        rnn_cls = keras.layers.GRU if cell == "gru" else keras.layers.LSTM
        self.rnn = rnn_cls(
            self.units, return_sequences=self.return_sequences, dtype=self.dtype_policy, name="rnn"
        )
        self.norm = (
            keras.layers.LayerNormalization(dtype=self.dtype_policy, name="norm")
            if self.use_norm
            else None
        )
        self.projection = None  # created in build when the widths differ

    def build(self, input_shape):
        self.rnn.build(input_shape)
        if input_shape[-1] != self.units:
            self.projection = keras.layers.Dense(
                self.units, dtype=self.dtype_policy, name="projection"
            )
            self.projection.build(input_shape)  # Dense acts on the last axis
        out_shape = self.compute_output_shape(input_shape)
        if self.norm is not None:
            self.norm.build(out_shape)

    def call(self, inputs, training=None):
        x = inputs  # [B, L, C]
        y = self.rnn(x, training=training)  # [B, L, U] or [B, U]
        skip = x if self.return_sequences else x[:, -1, :]  # [B, L, C] or [B, C]
        if self.projection is not None:
            skip = self.projection(skip)  # [..., U]
        y = y + skip
        if self.norm is not None:
            y = self.norm(y)
        return y

    def compute_output_shape(self, input_shape):
        if self.return_sequences:
            return tuple(input_shape[:-1]) + (self.units,)
        return (input_shape[0], self.units)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            cell=self.cell,
            return_sequences=self.return_sequences,
            use_norm=self.use_norm,
        )
        return config


@keras.saving.register_keras_serializable(package="fabray")
class MultiScaleConv1D(keras.layers.Layer):
    """Parallel `Conv1D(filters, k, padding="same")` for each k in `kernel_sizes`, concatenated.

    Input `[B, L, C]` → output `[B, L, filters * len(kernel_sizes)]`.
    """

    def __init__(
        self,
        filters: int,
        kernel_sizes: tuple[int, ...] | list[int] = (3, 5, 7),
        activation: str | None = "relu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        kernel_sizes = tuple(int(k) for k in kernel_sizes)
        if int(filters) < 1 or not kernel_sizes or min(kernel_sizes) < 1:
            raise ValueError(
                "MultiScaleConv1D: filters and every kernel size must be >= 1, with at least one "
                f"kernel size. Received: filters={filters}, kernel_sizes={kernel_sizes}"
            )
        self.filters = int(filters)
        self.kernel_sizes = kernel_sizes
        self.activation = activation
        self.convs = [
            keras.layers.Conv1D(
                self.filters, k, padding="same", activation=activation,
                dtype=self.dtype_policy, name=f"conv_k{k}",
            )
            for k in kernel_sizes
        ]

    def build(self, input_shape):
        for conv in self.convs:
            conv.build(input_shape)

    def call(self, inputs):
        x = inputs  # [B, L, C]
        return ops.concatenate([conv(x) for conv in self.convs], axis=-1)  # [B, L, filters * K]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters * len(self.kernel_sizes),)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters, kernel_sizes=list(self.kernel_sizes), activation=self.activation
        )
        return config


@keras.saving.register_keras_serializable(package="fabray")
class SelfAttentionBlock(keras.layers.Layer):
    """Multi-head self-attention over the window's minutes, residual + LayerNorm (post-norm).

    Input `[B, L, C]` → output `[B, L, C]`: `norm(x + dropout(MHA(x, x)))`.
    """

    def __init__(self, num_heads: int = 4, key_dim: int = 32, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if int(num_heads) < 1 or int(key_dim) < 1 or not 0.0 <= float(dropout) < 1.0:
            raise ValueError(
                "SelfAttentionBlock: num_heads and key_dim must be >= 1 and dropout in [0, 1). "
                f"Received: num_heads={num_heads}, key_dim={key_dim}, dropout={dropout}"
            )
        self.num_heads = int(num_heads)
        self.key_dim = int(key_dim)
        self.dropout = float(dropout)
        self.attention = keras.layers.MultiHeadAttention(
            num_heads=self.num_heads, key_dim=self.key_dim, dropout=self.dropout,
            dtype=self.dtype_policy, name="attention",
        )
        self.drop = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name="drop")
        self.norm = keras.layers.LayerNormalization(dtype=self.dtype_policy, name="norm")

    def build(self, input_shape):
        self.attention.build(input_shape, input_shape)
        self.norm.build(input_shape)

    def call(self, inputs, training=None):
        x = inputs  # [B, L, C]
        attended = self.attention(x, x, training=training)  # [B, L, C]
        return self.norm(x + self.drop(attended, training=training))  # [B, L, C]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads, key_dim=self.key_dim, dropout=self.dropout)
        return config


def dense_head(x, head_units: tuple[int, ...], dropout: float, prefix: str):
    """Dense(relu) layers then `Dense(1, dtype="float32")`: `[B, C]` → `[B, 1]`.

    The last layer is float32 so a mixed_float16 policy still returns float32 logits/values.
    """
    for i, units in enumerate(head_units):
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"{prefix}_dropout_{i}")(x)
        x = keras.layers.Dense(units, activation="relu", name=f"{prefix}_dense_{i}")(x)  # [B, units]
    return keras.layers.Dense(1, dtype="float32", name=f"{prefix}_out")(x)  # [B, 1]
