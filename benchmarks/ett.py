"""PatchTST on an ETT-format CSV with the paper's protocol (Nie et al., ICLR 2023, Table 3).

    python benchmarks/ett.py --data ../shared/data/ETTh1.csv --horizon 96 --json ett.json

Protocol (as the paper and its official code, yuqinie98/PatchTST, PatchTST_supervised):
- split by time into 12 / 4 / 4 months of 30 days: rows [0, 12m), [12m - L, 16m), [16m - L, 20m),
  where m is the number of rows in a month, read from the `date` column's step (hourly: m = 720,
  so [0, 8640), [8640 - L, 11520), [11520 - L, 14400)); rows past 20 months are not used;
- z-score every channel with the train split's mean and (population) std;
- every window of L steps followed by H steps is a sample; the model maps [B, L, C] -> [B, H, C];
- ETTh1 hyper-parameters of scripts/PatchTST/etth1.sh: L 336, patch 16, stride 8 (end padding,
  42 patches), 3 layers, 4 heads, d_model 16, d_ff 128, dropout 0.3, head dropout 0, RevIN
  without affine (run_longExp.py's default `--affine 0`), residual attention, BatchNorm;
  Adam, lr 1e-4, "type3" schedule (lr for 3 epochs, then x0.9 per epoch), batch 128 (train batches
  drop the remainder), MSE loss, up to 100 epochs, best validation MSE restored;
- test MSE / MAE over all windows and channels of the normalized test split. The official code's
  test loader drops the last partial batch (drop_last=True: 2688 of ETTh1's 2785 test windows at
  batch 128), which is what the paper reports; that figure is in `official_drop_last`. Rerun on all
  windows, the official code gives about 0.385 on ETTh1-96 (VEWOXIC/FITS README, "Result Update").

The baseline in the same run is the naive forecast (repeat the last observed value), so the ratio
`mse / baseline.mse` survives a noisy machine. The script works unchanged on any ETT-format file
(`date` + any number of numeric channels, a regular step that divides a day).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from fabray.errors import BadInputError  # noqa: E402

logger = logging.getLogger("benchmarks.ett")

# PatchTST/42 (L = 336) in the paper's Table 3, multivariate; keyed by (dataset, lookback, horizon).
PAPER_RESULTS: dict[tuple[str, int, int], dict[str, float]] = {
    ("ETTh1", 336, 96): {"paper_mse": 0.375, "paper_mae": 0.399},
}
DAYS_PER_MONTH = 30
SPLIT_MONTHS = (12, 4, 4)  # train, validation, test


def read_ett_csv(path: str | Path) -> tuple[pd.DatetimeIndex, np.ndarray, list[str]]:
    """Read an ETT-format CSV: `date` then numeric channels. Returns (dates, values [T, C], names)."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"ETT file not found. Received: --data {path}")
    frame = pd.read_csv(path)
    if "date" not in frame.columns:
        raise BadInputError(
            f"{path}: an ETT-format file needs a `date` column. Received: columns={list(frame.columns)}"
        )
    channels = [c for c in frame.columns if c != "date"]
    if not channels:
        raise BadInputError(f"{path}: no channel columns besides `date`")
    non_numeric = [c for c in channels if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        raise BadInputError(f"{path}: channels must be numeric. Received non-numeric columns: {non_numeric}")
    values = frame[channels].to_numpy(dtype=np.float64)  # [T, C]
    bad = np.argwhere(~np.isfinite(values))
    if len(bad):
        row, col = bad[0]
        raise BadInputError(
            f"{path}: {len(bad)} NaN/inf values, first at row {row + 2} (1-based, after the header), "
            f"column {channels[col]!r}"
        )
    dates = pd.DatetimeIndex(pd.to_datetime(frame["date"]))
    return dates, values, channels


def rows_per_month(dates: pd.DatetimeIndex) -> int:
    """Rows in a 30-day month, from the series' regular step (hourly -> 720, 15 min -> 2880)."""
    if len(dates) < 2:
        raise BadInputError(f"need at least 2 rows to read the time step. Received: {len(dates)} rows")
    steps_s = (dates[1:] - dates[:-1]).total_seconds().to_numpy()  # unit-safe (pandas 3 may not use ns)
    step_s = float(np.median(steps_s))
    if step_s <= 0 or 86400 % step_s:
        raise BadInputError(
            f"the `date` step must be positive and divide a day. Received: median step {step_s} s"
        )
    irregular = int(np.sum(steps_s != step_s))
    if irregular:
        logger.warning("%d of %d `date` steps differ from the median step %.0f s", irregular, len(steps_s), step_s)
    return int(86400 // step_s) * DAYS_PER_MONTH


def split_bounds(n_rows: int, month_rows: int, lookback: int, horizon: int) -> dict[str, tuple[int, int]]:
    """Row ranges [start, end) of train / val / test: 12 / 4 / 4 months, val and test start L early."""
    train_end = SPLIT_MONTHS[0] * month_rows
    val_end = train_end + SPLIT_MONTHS[1] * month_rows
    test_end = val_end + SPLIT_MONTHS[2] * month_rows
    if n_rows < test_end:
        raise BadInputError(
            f"the 12/4/4-month split needs {test_end} rows ({month_rows} per month). Received: {n_rows} rows"
        )
    bounds = {"train": (0, train_end), "val": (train_end - lookback, val_end), "test": (val_end - lookback, test_end)}
    for name, (start, end) in bounds.items():
        if start < 0 or end - start < lookback + horizon:
            raise BadInputError(
                f"the {name} split rows [{start}, {end}) hold no window of lookback + horizon = "
                f"{lookback + horizon} steps. Received: lookback={lookback}, horizon={horizon}"
            )
    return bounds


def make_windows(series: np.ndarray, lookback: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """All windows of a split: `series [T, C]` -> inputs `[W, L, C]`, targets `[W, H, C]`,
    W = T - L - H + 1 (float32 copies; ETT is small enough to hold every window)."""
    view = np.lib.stride_tricks.sliding_window_view(series, lookback + horizon, axis=0)  # [W, C, L+H]
    view = np.transpose(view, (0, 2, 1))  # [W, L+H, C]
    inputs = np.ascontiguousarray(view[:, :lookback], dtype=np.float32)
    targets = np.ascontiguousarray(view[:, lookback:], dtype=np.float32)
    return inputs, targets


def type3_learning_rate(epoch: int, base_lr: float) -> float:
    """The official code's default `lradj="type3"` for 0-based `epoch`: base for epochs 1-4
    (1-based; the schedule is applied after each epoch), then x0.9 per epoch."""
    return base_lr * 0.9 ** max(0, epoch - 3)


def paper_config(horizon: int, patch_len: int = 16, stride: int = 8):
    """PatchTST hyper-parameters of the official scripts/PatchTST/etth1.sh."""
    from fabray.models.patchtst import PatchTSTConfig

    return PatchTSTConfig(
        patch_len=patch_len,
        stride=stride,
        padding_patch="end",
        num_layers=3,
        num_heads=4,
        d_model=16,
        d_ff=128,
        dropout=0.3,
        attn_dropout=0.0,
        head_dropout=0.0,
        norm="batch",
        res_attention=True,
        revin=True,
        revin_affine=False,
        task_head="forecast",
        horizon=horizon,
    )


def run(
    data: str | Path,
    horizon: int = 96,
    lookback: int = 336,
    epochs: int = 100,
    patience: int = 100,
    batch_size: int = 128,
    learning_rate: float = 1e-4,
    patch_len: int = 16,
    stride: int = 8,
    seed: int = 2021,
    verbose: int = 2,
    save: str | Path | None = None,
) -> dict[str, Any]:
    """Train and test PatchTST on one ETT-format file; returns the result record."""
    import keras
    import tensorflow as tf

    from fabray.models.patchtst import build_patchtst

    started = time.perf_counter()
    dates, values, channels = read_ett_csv(data)
    month_rows = rows_per_month(dates)
    bounds = split_bounds(len(values), month_rows, lookback, horizon)
    train_start, train_end = bounds["train"]
    mean = values[train_start:train_end].mean(axis=0)  # [C]
    std = values[train_start:train_end].std(axis=0)  # [C], population std as sklearn's StandardScaler
    std = np.where(std > 0, std, 1.0)
    scaled = (values - mean) / std  # [T, C]
    windows = {name: make_windows(scaled[s:e], lookback, horizon) for name, (s, e) in bounds.items()}
    n_windows = {name: int(len(x)) for name, (x, _) in windows.items()}
    logger.info("%s: %d rows, %d channels, month=%d rows, splits %s, windows %s",
                data, len(values), len(channels), month_rows, bounds, n_windows)

    keras.utils.set_random_seed(seed)
    cfg = paper_config(horizon, patch_len=patch_len, stride=stride)
    model = build_patchtst(cfg, lookback, len(channels))
    # torch.optim.Adam's defaults (the official code): betas (0.9, 0.999), eps 1e-8
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, epsilon=1e-8), loss="mse", metrics=["mae"])

    x_train, y_train = windows["train"]
    steps = len(x_train) // batch_size
    if steps < 1:
        raise BadInputError(
            f"the train split has {len(x_train)} windows, fewer than one batch. Received: --batch-size {batch_size}"
        )
    train = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size, drop_remainder=True)  # as the official train loader
        .prefetch(2)
    )
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
    schedule = keras.callbacks.LearningRateScheduler(lambda epoch, lr: type3_learning_rate(epoch, learning_rate))
    history = model.fit(
        train,
        validation_data=windows["val"],
        validation_batch_size=batch_size * 4,
        epochs=epochs,
        callbacks=[stopper, schedule],
        shuffle=False,  # the tf.data pipeline reshuffles every epoch
        verbose=verbose,
    )
    val_losses = history.history["val_loss"]
    best_epoch = int(np.argmin(val_losses)) + 1

    x_test, y_test = windows["test"]
    pred = model.predict(x_test, batch_size=batch_size * 4, verbose=0).astype(np.float64)  # [W, H, C]
    err = pred - y_test
    naive = np.repeat(x_test[:, -1:, :], horizon, axis=1).astype(np.float64)  # last value, [W, H, C]
    naive_err = naive - y_test
    mse, mae = float(np.mean(err**2)), float(np.mean(np.abs(err)))
    # the official test loader drops the last partial batch (drop_last=True, batch 128): the
    # paper's figures are over those windows only; reported beside the all-windows figures
    kept = len(err) // batch_size * batch_size
    official = {"windows": kept, "mse": float(np.mean(err[:kept] ** 2)), "mae": float(np.mean(np.abs(err[:kept])))}
    if save is not None:
        Path(save).parent.mkdir(parents=True, exist_ok=True)
        model.save(save)
    baseline = {"name": "last_value", "mse": float(np.mean(naive_err**2)), "mae": float(np.mean(np.abs(naive_err)))}
    dataset = Path(data).stem
    return {
        "dataset": dataset,
        "horizon": horizon,
        "lookback": lookback,
        "mse": mse,
        "mae": mae,
        "epochs": len(val_losses),
        "seconds": round(time.perf_counter() - started, 1),
        **PAPER_RESULTS.get((dataset, lookback, horizon), {}),
        "best_epoch": best_epoch,
        "best_val_mse": float(val_losses[best_epoch - 1]),
        "official_drop_last": official,
        "baseline": baseline,
        "mse_ratio_to_baseline": mse / baseline["mse"],
        "channels": len(channels),
        "rows_per_month": month_rows,
        "splits": {name: list(b) for name, b in bounds.items()},
        "windows": n_windows,
        "params": int(model.count_params()),
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "patience": patience,
        "max_epochs": epochs,
        "seed": seed,
        "model": asdict(cfg),
    }


def _table(result: dict[str, Any]) -> str:
    rows = [("PatchTST", result["mse"], result["mae"]), ("last value", result["baseline"]["mse"], result["baseline"]["mae"])]
    dropped = result["official_drop_last"]
    rows.append((f"PatchTST, {dropped['windows']} windows", dropped["mse"], dropped["mae"]))
    if "paper_mse" in result:
        rows.append(("paper PatchTST/42", result["paper_mse"], result["paper_mae"]))
    lines = [f"{result['dataset']} L={result['lookback']} H={result['horizon']} "
             f"epochs={result['epochs']} (best {result['best_epoch']}) {result['seconds']} s",
             f"{'model':<20}{'MSE':>8}{'MAE':>8}"]
    lines += [f"{name:<20}{m:>8.3f}{a:>8.3f}" for name, m, a in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="ETT-format CSV: `date` + channels")
    parser.add_argument("--horizon", type=int, default=96, help="forecast steps H")
    parser.add_argument("--json", required=True, help="where to write the result JSON")
    parser.add_argument("--epochs", type=int, default=100, help="maximum epochs (paper: 100)")
    parser.add_argument("--patience", type=int, default=100,
                        help="early-stopping patience on validation MSE (official default: 100)")
    parser.add_argument("--lookback", type=int, default=336, help="look-back L (paper: 336)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--patch-len", type=int, default=16)
    parser.add_argument("--stride", type=int, default=8)
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--save", default=None, help="also save the trained model (.keras)")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        result = run(
            args.data, horizon=args.horizon, lookback=args.lookback, epochs=args.epochs,
            patience=args.patience, batch_size=args.batch_size, learning_rate=args.lr,
            patch_len=args.patch_len, stride=args.stride, seed=args.seed, verbose=0 if args.quiet else 2,
            save=args.save,
        )
    except BadInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
