"""The `fabray capacity` report: host facts, the measured and projected figures as one dict, and
the text tables the command prints."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from fabray.capacity.measure import Measurement
from fabray.capacity.projection import GB, Assumptions, project_phases
from fabray.capacity.seed import SEED_PHASES, SeedPhase


MB = 1e6


def host_info() -> dict[str, Any]:
    import platform

    import psutil
    import tensorflow as tf

    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / GB, 1),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "tensorflow": tf.__version__,
        "platform": platform.platform(),
    }


def capacity_report(
    measurements: Sequence[Measurement],
    assumptions: Assumptions,
    phases: Sequence[SeedPhase] = SEED_PHASES,
    host: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON document `fabray capacity --json` writes."""
    device = "gpu" if measurements and all(m.device == "gpu" for m in measurements) else "cpu"
    return {
        "host": dict(host or {}),
        "measured": {
            "device": device,
            "note": ("measured on this machine's GPU" if device == "gpu" else
                     "measured on this machine's CPU: memory is the process's peak RSS above its "
                     "baseline (CPU figures, not GPU memory); throughput is CPU throughput"),
            "rows": [m.to_dict() for m in measurements],
        },
        "assumptions": assumptions.to_dict(),
        "projected": {
            "note": "projected from the measurements with the assumptions above, for the seed's "
                    "stages; not measured on an H100",
            "phases": project_phases(measurements, assumptions, phases),
        },
    }


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  ".join(str(c).rjust(w) if i else str(c).ljust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    return "\n".join([fmt(header), *[fmt(r) for r in rows]])


def _hours(h: float) -> str:
    return f"{h * 60:.1f} min" if h < 1 else f"{h:.2f} h"


def format_report(report: Mapping[str, Any]) -> str:
    """The measured table, the assumptions, and the projected table, as plain text."""
    measured = report["measured"]
    mem_label = "peak GPU MB" if measured["device"] == "gpu" else "peak RSS MB (CPU)"
    rows = []
    for r in measured["rows"]:
        peak = r["peak_train_bytes"]
        rows.append([r["model"], str(r["batch_size"]), f"{r['params']:,}",
                     f"{r['train_windows_per_s']:,.0f}", f"{r['infer_windows_per_s']:,.0f}",
                     "—" if peak is None else f"{peak / MB:,.0f}"])
    lines = [f"MEASURED here ({measured['device'].upper()}): {measured['note']}"]
    host = report.get("host") or {}
    if host:
        lines.append(f"host: {host.get('cpus')} CPUs, {host.get('memory_gb')} GB, GPUs: "
                     f"{host.get('gpus') or 'none'}, TensorFlow {host.get('tensorflow')}")
    lines.append(_table(["model", "batch", "params", "train win/s", "infer win/s", mem_label], rows))
    a = report["assumptions"]
    lines += ["", "ASSUMED (fabray.capacity.Assumptions; --gpu-speedup sets the speed ratio):",
              f"  H100 speed = {a['gpu_speedup']:g}x this machine (train and inference; 1x when "
              f"measured on a GPU); the zoo grows uniformly to the stage's parameters, compute "
              f"{'linear in' if a['params_scale_compute'] else 'independent of'} parameters, "
              f"activation memory {'linear in' if a['activations_scale_with_params'] else 'independent of'} them",
              f"  epoch = rows x {a['train_fraction']:g} windows; full training {a['full_train_epochs']} "
              f"epochs; daily retrain {a['retrain_epochs']} epochs over {a['retrain_data_fraction']:g} "
              f"of the rows, budget {a['retrain_budget_h']:g} h",
              f"  memory: {a['bytes_per_param_train']:g} B/param training, {a['bytes_per_param_serve']:g} "
              f"B/param per serving replica x {a['serving_replicas']}, {a['process_overhead_gb']:g} GB "
              f"per GPU process; H100 {a['gpu_memory_gb']:g} GB x {a['usable_memory_fraction']:g} usable",
              f"  load: {a['realtime_windows_per_s']:g} real-time windows/s + "
              f"{a['batch_windows_per_10min']:g} batch windows per 10 min, retraining at the same time"]
    prow = []
    for p in report["projected"]["phases"]:
        prow.append([
            f"{p['phase']}", f"{p['data_rows']:,}", f"{p['model_params'] / 1e6:.2f}M",
            str(p["batch_size"]), _hours(p["epoch_s_here"] / 3600), _hours(p["epoch_s_h100"] / 3600),
            _hours(p["full_train_h_h100"]),
            _hours(p["daily_retrain_h_h100"]) + ("" if p["retrain_within_budget"] else " (!)"),
            f"{p['train_memory_gb']:.1f}", f"{p['serve_memory_gb']:.1f}",
            f"{p['total_memory_gb']:.1f}", f"{p['memory_per_gpu_gb']:.1f}", f"{p['seed_memory_gb']:g}",
            f"{p['h100_needed']} ({p['h100_needed_by_memory']}m/{p['h100_needed_by_compute']}c)",
            str(p["seed_h100"]),
        ])
    lines += ["", "PROJECTED for the seed's stages (not measured on an H100):",
              _table(["phase", "rows", "params", "batch", "epoch here", "epoch H100",
                      "full train H100", "daily retrain H100", "train GB", "serve GB",
                      "total GB", "GB/GPU", "seed GB", "H100 needed", "seed H100"], prow),
              "H100 needed = max(by memory 'm', by compute 'c') for real-time + batch + "
              "retraining at once; the seed's plan adds a development GPU in phase 2."]
    return "\n".join(lines)
