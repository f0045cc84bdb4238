"""Numeric helpers every wing shares (numpy only)."""

from __future__ import annotations

import numpy as np


def sigmoid(logit: np.ndarray | float) -> np.ndarray:
    """The logistic function, float64, safe for any finite or infinite logit (clipped to ±60)."""
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(logit, dtype=np.float64), -60.0, 60.0)))


__all__ = ["sigmoid"]
