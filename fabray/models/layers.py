"""Shared Keras 3 blocks (pure `keras.layers` / `keras.ops`, serializable, no tf.*, no ray).

Each block is a `keras.layers.Layer` subclass registered under package "fabray", with
`get_config`, so a saved `.keras` model reloads exactly.
"""

from __future__ import annotations

import keras
from keras import ops
