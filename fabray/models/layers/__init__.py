"""Every custom Keras layer of the zoo, in one place (CONVENTIONS habit 1: shared blocks in one
module of layers), one file per family as Keras lays out its own `keras/src/layers/`:

- `scaling`: `FeatureScaling`, the training split's z-scoring, the first layer of every model
  (`scaled_window` builds a model's input and that layer; `prepend_scaling` wraps a format-1
  model);
- `seed_blocks`: the blocks the seed models share (`ResidualRecurrent`, `MultiScaleConv1D`,
  `SelfAttentionBlock`, `dense_head`);
- `patchtst`: PatchTST's blocks (`RevIN`, `Patching`, the channel-independent encoder).

Every layer is a `keras.layers.Layer` subclass registered under package "fabray" with
`get_config`, so a saved `.keras` model reloads exactly; the registered names do not depend on
the file a layer lives in. Pure `keras.layers` / `keras.ops`: no tf.*, no ray, no files.
"""

from fabray.models.layers.patchtst import (
    Patching,
    PatchTSTEncoder,
    PatchTSTEncoderLayer,
    ResidualMultiHeadAttention,
    RevIN,
    torch_like_dense,
)
from fabray.models.layers.scaling import FeatureScaling, Scaling, prepend_scaling, scaled_window, scaling_stats
from fabray.models.layers.seed_blocks import MultiScaleConv1D, ResidualRecurrent, SelfAttentionBlock, dense_head

__all__ = [
    "FeatureScaling",
    "MultiScaleConv1D",
    "PatchTSTEncoder",
    "PatchTSTEncoderLayer",
    "Patching",
    "ResidualMultiHeadAttention",
    "ResidualRecurrent",
    "RevIN",
    "Scaling",
    "SelfAttentionBlock",
    "dense_head",
    "prepend_scaling",
    "scaled_window",
    "scaling_stats",
    "torch_like_dense",
]
