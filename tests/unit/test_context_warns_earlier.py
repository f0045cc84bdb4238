"""A model given the context inputs warns earlier than the same model without them (issue 11).

A small seeded fab where every delay follows a planned lot release: the releases are in the plan
(`lots_planned`) before they happen, and nothing observed moves until the lots arrive. Episodes
start before the arrival (the next 10 minutes are then late on average), so only a model that
sees the plan for t+1 … t+10 can warn at the start. LightGBM on the window's lag features (the
`gbt` baseline's model) is trained on each input set with the same seed; thresholds come from
validation by the lead score, as everywhere.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fabray.evaluate import baselines as bl
from fabray import schema
from fabray.config import SiteConfig, SplitConfig, TaskConfig
from fabray.data.context import ContextSpec
from fabray.data.windows import prepare, segment_positions
from fabray.metrics import best_lead_threshold, lead_episodes

pytest.importorskip("lightgbm")

TASK = TaskConfig(early_warning_min=5)
SPLIT = SplitConfig(train_fraction=0.6, val_fraction=0.2)


def _planned_release_fab(zones: int = 2, minutes: int = 6000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for z in range(zones):
        plan = np.zeros(minutes)
        delay = np.zeros(minutes)
        queue = rng.poisson(3, minutes).astype(float)
        t = int(rng.integers(20, 80))
        while t < minutes - 40:
            size = int(rng.integers(15, 30))
            plan[t] = size
            late = slice(t + 2, t + 16)  # the lots arrive at t and clog the zone from t + 2
            delay[late] += 150.0
            queue[t + 1:t + 16] += size / 2
            t += int(rng.integers(70, 160))
        ts = pd.date_range("2025-03-03 00:00", periods=minutes, freq="min")
        frame = pd.DataFrame({schema.TIMESTAMP: ts, schema.ZONE: f"Z{z + 1:02d}"})
        for f in schema.FEATURES:
            frame[f] = rng.poisson(5, minutes).astype(float)
        frame["vehicle_util"] = rng.uniform(0.3, 0.6, minutes)
        frame["stocker_fill"] = rng.uniform(0.3, 0.6, minutes)
        frame["queue_len"] = queue
        frame[schema.TRANSPORT_TIME] = 100.0 + delay + rng.normal(0, 5, minutes)
        frame["lots_planned"] = plan
        frame["pm_planned"] = 0.0
        parts.append(frame)
    return pd.concat(parts, ignore_index=True)


def _warned_at_start(df: pd.DataFrame, site: SiteConfig) -> tuple[int, int]:
    spec = ContextSpec.from_site(site, TASK.horizon, list(df.columns))
    p = prepare(df, TASK, SPLIT, context=spec)
    before, _ = segment_positions(p.zone_codes, p.timestamps)
    segment = np.arange(len(before)) - before

    def x(ends):
        return bl.lag_features(p.features, ends, TASK.lookback, scaler=p.scaler)  # z-scored, as the models see them

    tr, va, te = p.splits["train"], p.splits["val"], p.splits["test"]
    model = bl.fit_gbt(x(tr), p.fit_target[tr].astype(float), x(va), p.fit_target[va].astype(float),
                       bl.GBTConfig(seed=0))
    threshold, _ = best_lead_threshold(p.target[va], bl.gbt_scores(model, x(va)), segment[va],
                                       p.minute_delay_s[va], TASK.sla_delay_s, TASK.horizon)
    alarm = bl.gbt_scores(model, x(te)) >= threshold
    records = lead_episodes(p.target[te], alarm, segment[te], p.minute_delay_s[te], TASK.sla_delay_s, TASK.horizon)
    return int(records.warned_at_start.sum()), records.n_episodes


def test_the_plan_lets_a_model_warn_at_the_start_of_planned_delays():
    df = _planned_release_fab()
    blind, episodes = _warned_at_start(df, SiteConfig(calendar=False, plan=False, neighbours=False))
    seeing, episodes_again = _warned_at_start(df, SiteConfig(calendar=False, neighbours=False))
    assert episodes == episodes_again >= 10
    # Without the plan nothing observed moves before the start: (almost) no warning in time.
    assert blind <= 0.2 * episodes, (blind, episodes)
    assert seeing >= 0.8 * episodes, (seeing, episodes)
