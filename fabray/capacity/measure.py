"""Step 1 of `fabray capacity`, measured on this machine (`measure_zoo`): for every model and
batch size, on synthetic windows, parameters, training and inference throughput and the peak
memory of training (the GPU allocator's peak, or the process's peak RSS on CPU)."""

from __future__ import annotations

import dataclasses
import gc
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fabray.capacity.seed import SEED_MODELS
from fabray.errors import BadInputError

logger = logging.getLogger(__name__)


DEFAULT_BATCH_SIZES = (32, 64, 128)


@dataclass(frozen=True)
class Measurement:
    """One model at one batch size, measured on this machine."""

    model: str
    batch_size: int
    params: int
    train_windows_per_s: float
    infer_windows_per_s: float
    peak_train_bytes: int | None  # peak memory of training above the baseline (see memory_source)
    memory_source: str  # "gpu_allocator_peak" | "cpu_rss_peak_delta" | "unavailable"
    tf_allocator_peak_bytes: int | None  # TF's own allocator peak for the device, where kept
    device: str  # "gpu" | "cpu"
    steps: int  # timed steps (after one warm-up step that traces the function)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _gpu_present() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


class _PeakRSS:
    """Peak resident memory of this process during a `with` block, above its value at entry.

    Linux: resets the kernel's high-water mark (`/proc/self/clear_refs` ← 5) and reads VmHWM at
    exit, so nothing is missed between samples. Elsewhere (or if the reset is refused): a thread
    samples RSS every 2 ms.
    """

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self._sampler: threading.Thread | None = None
        self._stop = threading.Event()
        self.baseline = 0
        self.peak = 0

    @staticmethod
    def _hwm_bytes() -> int | None:
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def _reset_hwm(self) -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            return False
        hwm = self._hwm_bytes()
        return hwm is not None and hwm <= self._process.memory_info().rss * 1.05

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> _PeakRSS:
        gc.collect()
        self.baseline = self._process.memory_info().rss
        self.peak = self.baseline
        if not self._reset_hwm():
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._sampler is not None:
            self._stop.set()
            self._sampler.join()
        else:
            self.peak = max(self.peak, self._hwm_bytes() or 0)
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def delta(self) -> int:
        return max(0, self.peak - self.baseline)


def _release_memory() -> None:
    """Drop Keras' graph state and hand freed heap back to the OS (glibc's malloc_trim), so the
    next RSS baseline is live memory and the next case's allocations show up as growth."""
    import ctypes
    import ctypes.util

    import keras

    keras.backend.clear_session()
    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the peaks are then lower bounds
        pass


def _tf_allocator_peak(device: str) -> int | None:
    import tensorflow as tf

    try:
        return int(tf.config.experimental.get_memory_info(device)["peak"])
    except (ValueError, RuntimeError, KeyError):  # not kept for this device
        return None


def _reset_tf_allocator(device: str) -> None:
    import tensorflow as tf

    try:
        tf.config.experimental.reset_memory_stats(device)
    except (ValueError, RuntimeError):
        pass


def measure_one(model: Any, name: str, batch_size: int, *, steps: int, seed: int = 0) -> Measurement:
    """Throughput and peak training memory of a compiled (optimizer + loss) `model` at `batch_size`.

    One warm-up step (tracing) then `steps` timed `train_on_batch` calls; then one warm-up and
    `steps` timed `predict_on_batch` calls. The memory peak covers the warm-up and timed training
    steps (optimizer slots are created in the first one).
    """
    if steps < 1 or batch_size < 1:
        raise BadInputError(f"steps and batch_size must be >= 1. Received: steps={steps}, batch_size={batch_size}")
    rng = np.random.default_rng(seed)
    lookback, n_features = model.input_shape[1:]
    x = rng.standard_normal((batch_size, lookback, n_features)).astype("float32")  # [B, L, F]
    y = (rng.random((batch_size, 1)) < 0.2).astype("float32")  # [B, 1]
    gpu = _gpu_present()
    device = "GPU:0" if gpu else "CPU:0"
    _reset_tf_allocator(device)
    with _PeakRSS() as rss:
        model.train_on_batch(x, y)  # warm-up: traces the train function, creates Adam's slots
        start = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(x, y)
        train_s = time.perf_counter() - start
    tf_peak = _tf_allocator_peak(device)
    model.predict_on_batch(x)  # warm-up: traces the predict function
    start = time.perf_counter()
    for _ in range(steps):
        model.predict_on_batch(x)
    infer_s = time.perf_counter() - start
    if gpu:
        peak, source = tf_peak, "gpu_allocator_peak" if tf_peak is not None else "unavailable"
    else:
        peak, source = rss.delta, "cpu_rss_peak_delta"
    return Measurement(
        model=name,
        batch_size=batch_size,
        params=int(model.count_params()),
        train_windows_per_s=batch_size * steps / max(train_s, 1e-9),
        infer_windows_per_s=batch_size * steps / max(infer_s, 1e-9),
        peak_train_bytes=peak,
        memory_source=source,
        tf_allocator_peak_bytes=tf_peak,
        device="gpu" if gpu else "cpu",
        steps=steps,
    )


def measure_zoo(
    models: Sequence[str] = SEED_MODELS,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    *,
    lookback: int = 100,
    n_features: int = 12,
    steps: int = 5,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    on_measured: Callable[[Measurement], None] | None = None,
) -> list[Measurement]:
    """Measure every model at every batch size.

    Each case builds the model afresh with its default hyper-parameters (the seed's sizes) unless
    `overrides` says otherwise, compiled with Adam and its training loss for the "event" task.
    """
    import keras

    from fabray.models import get_spec

    if not models:
        raise BadInputError("no model to measure. Received: models=[]")
    for name in models:
        get_spec(name)  # unknown names are bad input before anything is built
    sizes = sorted({int(b) for b in batch_sizes})
    if not sizes or sizes[0] < 1:
        raise BadInputError(f"batch sizes must be >= 1. Received: {list(batch_sizes)}")
    overrides = overrides or {}
    tf_logger = logging.getLogger("tensorflow")
    tf_level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)  # a fresh model per case retraces by design: no warnings
    try:
        out = _measure_cases(models, sizes, lookback, n_features, steps, overrides, on_measured)
    finally:
        tf_logger.setLevel(tf_level)
        keras.backend.clear_session()
    return out


def _measure_cases(
    models: Sequence[str], sizes: Sequence[int], lookback: int, n_features: int, steps: int,
    overrides: Mapping[str, Mapping[str, Any]], on_measured: Callable[[Measurement], None] | None,
) -> list[Measurement]:
    import keras

    from fabray.models import build_model, model_loss

    out = []
    for name in models:
        for batch_size in sizes:
            # A fresh model per case: every peak then holds the same fixed costs (tracing, Adam's
            # slots), so the growth across batch sizes is the activations' share.
            _release_memory()
            keras.utils.set_random_seed(0)
            model = build_model(name, lookback, n_features, overrides.get(name))
            model.compile(optimizer=keras.optimizers.Adam(1e-3),
                          loss=model_loss(name, "event", overrides.get(name)))
            m = measure_one(model, name, batch_size, steps=steps)
            del model
            logger.debug("measured %s", m)
            out.append(m)
            if on_measured is not None:
                on_measured(m)
    return out
