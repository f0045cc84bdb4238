"""Mixed-precision policy for a training worker (DESIGN §3, §10).

Keras has no "auto" policy: `mixed_float16` pays off only on a GPU with tensor cores (compute
capability >= 7.0); on this CPU it was 1.5–1.8× slower. The decision is a pure function over device
descriptions so it is testable without a GPU; `apply_precision` runs inside the Ray worker, because
the driver's global policy does not reach worker processes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

logger = logging.getLogger(__name__)

POLICIES = ("auto", "float32", "mixed_float16")
MIN_COMPUTE_CAPABILITY = (7, 0)


def _capability(device: Mapping[str, Any]) -> tuple[int, int] | None:
    """(major, minor) from a TF device-details dict, or None when it does not say."""
    value = device.get("compute_capability")
    if value is None:
        return None
    if isinstance(value, str):  # "8.0"
        major, _, minor = value.partition(".")
        value = (major, minor or 0)
    try:
        major, minor = value
        return int(major), int(minor)
    except (TypeError, ValueError):
        return None


def choose_precision(policy: str, gpu_devices: Sequence[Mapping[str, Any]]) -> str:
    """The Keras dtype policy to use for `policy` on a worker that sees `gpu_devices`.

    `gpu_devices` are TF's device details, one dict per visible GPU, e.g.
    `{"device_name": "NVIDIA H100", "compute_capability": (9, 0)}`. "auto" picks
    `mixed_float16` only when every visible GPU has compute capability >= 7.0 (a mixed set would
    run the slow one in float16 without tensor cores), else `float32`; an explicit policy is
    returned as given.
    """
    if policy not in POLICIES:
        raise ValueError(f"precision policy must be one of {POLICIES}. Received: {policy!r}")
    if policy != "auto":
        return policy
    if not gpu_devices:
        return "float32"
    capabilities = [_capability(d) for d in gpu_devices]
    if all(c is not None and c >= MIN_COMPUTE_CAPABILITY for c in capabilities):
        return "mixed_float16"
    return "float32"


def visible_gpu_details() -> list[dict[str, Any]]:
    """Device details of the GPUs TensorFlow sees in this process (empty on CPU)."""
    import tensorflow as tf

    details = []
    for device in tf.config.list_physical_devices("GPU"):
        try:
            details.append(dict(tf.config.experimental.get_device_details(device)))
        except (ValueError, RuntimeError):  # pragma: no cover - driver-specific
            details.append({"device_name": device.name})
    return details


def apply_precision(policy: str) -> str:
    """Decide the policy for this process's devices and set it as Keras' global policy."""
    import keras

    gpus = visible_gpu_details()
    chosen = choose_precision(policy, gpus)
    keras.mixed_precision.set_global_policy(chosen)
    logger.info("precision %s → %s (GPUs seen: %s)", policy, chosen, gpus or "none")
    return chosen


def float32_copy(model: Any, rebuild: Any) -> Any:
    """The same weights in a float32 model, for inference anywhere.

    A model trained under `mixed_float16` saves that policy in every layer's config, so loading
    it on a CPU would compute in float16 (slow there, and less exact). Its variables are float32
    under the mixed policy, so the weights copy over unchanged into the same architecture built
    under float32: `rebuild()` must build it (e.g. `build_model(name, lookback, F, overrides)`).
    The global policy is restored afterwards.
    """
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        clean = rebuild()
    finally:
        keras.mixed_precision.set_global_policy(previous)
    clean.set_weights([w.astype("float32") for w in model.get_weights()])
    return clean
