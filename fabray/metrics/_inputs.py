"""Input handling every metric of `fabray.metrics` shares: drop undefined targets, refuse
non-finite predictions, read 0/1 events and alarms, 0/0 ratios as 0.0, equal lengths."""

from __future__ import annotations

import numpy as np


def _defined_pairs(y_true: np.ndarray, y_pred: np.ndarray, pred_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Drop rows whose target is NaN; refuse non-finite predictions on the rows that remain."""
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)  # [N]
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)  # [N]
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"targets and {pred_name} must have the same length. "
            f"Received: {y_true.shape[0]} targets, {y_pred.shape[0]} {pred_name}"
        )
    keep = ~np.isnan(y_true)
    y_true, y_pred = y_true[keep], y_pred[keep]
    bad = ~np.isfinite(y_pred)
    if bad.any():
        raise ValueError(
            f"{pred_name} must be finite where the target is defined. "
            f"Received: {int(bad.sum())} NaN/inf values, first at defined row {int(np.argmax(bad))}"
        )
    if np.isinf(y_true).any():
        raise ValueError("targets must be finite or NaN (undefined). Received: inf")
    return y_true, y_pred


def _events(y_true: np.ndarray) -> np.ndarray:
    """0/1 float targets → bool; anything else is an error."""
    is_binary = (y_true == 0) | (y_true == 1)
    if not is_binary.all():
        bad = y_true[~is_binary][:5]
        raise ValueError(f"event targets must be 0, 1 or NaN. Received: {bad.tolist()}")
    return y_true == 1


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else 0.0


def _as_alarm(alarm: np.ndarray) -> np.ndarray:
    alarm = np.asarray(alarm).reshape(-1)
    if alarm.dtype != bool:
        alarm = np.nan_to_num(alarm.astype(np.float64), nan=0.0) != 0
    return alarm


def _check_lengths(n: int, **arrays: np.ndarray) -> None:
    for name, arr in arrays.items():
        if arr.shape[0] != n:
            raise ValueError(
                f"{name} must have one value per row of event. Received: {arr.shape[0]} values for {n} rows"
            )
