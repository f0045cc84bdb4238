"""fabray.evaluate.model_card: per-zone and per-shift metrics, failure modes and the Markdown, on a small
hand-made evaluation (two zones, one delay episode each: zone A warned ahead, zone B missed)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from fabray.evaluate import Candidate
from fabray.evaluate.model_card import build_model_card, model_card_markdown, shift_codes, write_model_card

W = 240  # windows per zone: 04:00 … 07:59 on one day


def _result() -> SimpleNamespace:
    stamps_zone = np.datetime64("2026-03-02T04:00") + np.arange(W).astype("timedelta64[m]")
    target = np.zeros(2 * W)
    delay = np.zeros(2 * W)
    for z in (0, 1):  # an episode 05:40-05:59, observed from 05:50
        target[z * W + 100: z * W + 120] = 1
        delay[z * W + 110: z * W + 126] = 100.0
    warned = np.zeros(2 * W, dtype=bool)
    warned[90:120] = True  # zone A: alarm from 05:30, before the episode's start
    prob = warned.astype(float) * 0.9 + 0.05
    ens = Candidate("ensemble", "ensemble", prob, 0.5, metrics={"lead_score": 50.0})
    ens.alarm = warned
    lstm = Candidate("lstm", "model", prob * 0.5, 0.3, metrics={"lead_score": 20.0})
    lstm.alarm = lstm.prob >= 0.3
    return SimpleNamespace(
        run="r1", task={"horizon": 10, "sla_delay_s": 60.0, "lookback": 100},
        data={"path": "/data/test.parquet", "fingerprint": "sha256:test", "windows": 2 * W,
              "windows_used": "all windows with a defined target",
              "first_timestamp": "2026-03-02T04:00", "last_timestamp": "2026-03-02T07:59"},
        candidates={"lstm": lstm, "ensemble": ens}, target=target, minute_delay_s=delay,
        zone_codes=np.repeat([0, 1], W), zones=("A", "B"), segments=np.repeat([0, 1], W),
        timestamps=np.concatenate([stamps_zone, stamps_zone]),
    )


MANIFEST = {
    "run_id": "r1", "status": "complete", "created_at": "2026-03-03T10:00:00+00:00",
    "code": {"fabray": "0.1.0", "git_commit": "0123456789abcdef"},
    "models": {"lstm": {"status": "ok"}, "gru": {"status": "failed"}},
    "data": {"path": "/runs/r1.data.parquet", "fingerprint": "sha256:train", "rows": 5760,
             "zones": ["A", "B"], "first_timestamp": "2026-03-01 00:00:00",
             "last_timestamp": "2026-03-01 23:59:00", "windows": {"train": 3000, "val": 800, "test": 700},
             "source": {"url": "sqlite:///fab.db", "table": "oht"}},
}


def test_shift_codes_follow_the_shift_changes_and_wrap_past_midnight():
    stamps = np.array(["2026-01-01T05:59", "2026-01-01T06:00", "2026-01-01T13:59", "2026-01-01T14:00",
                       "2026-01-01T22:00", "2026-01-02T00:30"], dtype="datetime64[m]")
    codes, names = shift_codes(stamps, [360, 840, 1320])
    assert names == ["06:00–14:00", "14:00–22:00", "22:00–06:00"]
    assert codes.tolist() == [2, 0, 0, 1, 2, 2]
    assert shift_codes(stamps, [])[1] == ["all day"]


def test_per_zone_and_per_shift_metrics_and_measured_failure_modes():
    card = build_model_card(_result(), MANIFEST, [360, 840, 1320])
    zones = {r["group"]: r for r in card["per_zone"]}
    assert zones["A"]["episodes"] == zones["B"]["episodes"] == 1
    assert zones["A"]["warned_at_start_fraction"] == 1.0 and zones["B"]["warned_at_start_fraction"] == 0.0
    assert zones["B"]["recall"] == 0.0 and zones["A"]["recall"] == 1.0
    assert zones["A"]["windows"] == W and "best_model_lead_score" in zones["A"]
    shifts = {r["group"]: r for r in card["per_shift"]}
    assert set(shifts) == {"22:00–06:00", "06:00–14:00"}  # no window in 14:00–22:00
    assert shifts["22:00–06:00"]["episodes"] == 2 and shifts["06:00–14:00"]["episodes"] == 0
    assert shifts["22:00–06:00"]["windows"] == 2 * 120
    measured = " ".join(card["failure_modes"]["measured"])
    assert "Weakest zone: B" in measured and "0% of its 1 delay episodes" in measured
    assert card["training_data"]["first_timestamp"] == "2026-03-01 00:00:00"
    assert card["run"]["models"] == ["lstm"]  # the failed model is not part of what is served
    json.dumps(card)  # JSON-able


def test_no_warned_episode_anywhere_is_said_once_per_grouping():
    result = _result()
    result.candidates["ensemble"].alarm = np.zeros(2 * W, dtype=bool)
    measured = build_model_card(result, MANIFEST, [360])["failure_modes"]["measured"]
    assert "No zone had any of its delay episodes warned at or before their start (2 episodes in all)." in measured
    assert not any("Weakest" in m for m in measured)


def test_unseen_zones_and_overlapping_periods_are_named():
    manifest = {**MANIFEST, "data": {**MANIFEST["data"], "zones": ["A"], "last_timestamp": "2026-03-02 05:00:00"}}
    measured = " ".join(build_model_card(_result(), manifest, [360])["failure_modes"]["measured"])
    assert "never trained on: ['B']" in measured
    assert "before the training data ends" in measured


def test_markdown_and_files(make_run, tmp_path):
    run = make_run(tmp_path / "r1", MANIFEST["models"], extra={k: v for k, v in MANIFEST.items() if k != "models"},
                   files={"config.json": json.dumps({"site": {"shift_changes": ["07:00", "19:00"]}})})
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.md").write_text("# fabray evaluation\n\nleaderboard\n")
    path = write_model_card(_result(), run, report)
    text = path.read_text()
    for needle in ("## Model card", "**Intended use.**", "**Not for.**", "sha256:train",
                   "2026-03-01 00:00:00 … 2026-03-01 23:59:00", "sqlite:///fab.db (table oht)",
                   "### Per zone", "### Per shift (shift changes 07:00–19:00, 19:00–07:00",
                   "### Known failure modes", "Weakest zone: B"):
        assert needle in text, needle
    assert "| A | 240 |" in text
    full = (report / "report.md").read_text()
    assert full.startswith("# fabray evaluation") and full.rstrip().endswith(text.rstrip())
    assert json.loads((report / "model_card.json").read_text())["shift_changes"] == ["07:00–19:00", "19:00–07:00"]


@pytest.mark.parametrize("changes", [[], [0]])
def test_one_shift_is_all_windows(changes):
    card = build_model_card(_result(), MANIFEST, changes)
    assert len(card["per_shift"]) == 1 and card["per_shift"][0]["windows"] == 2 * W
    assert "## Model card" in model_card_markdown(card)
