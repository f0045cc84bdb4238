"""The evaluation wing: how good a run is, on data it never trained on (`fabray evaluate`).

- `run`: the evaluation itself: every model, both ensembles and the baselines scored on the same
  test windows, the leaderboard by the headline lead score, JSON (DESIGN §8);
- `baselines`: persistence, the rules alone, LightGBM on lag features;
- `roi`: the seed's return on investment from the measured metrics;
- `report`: report.md and its plots (`--report`);
- `model_card`: the run's model card (per-zone and per-shift metrics, failure modes).

The names below are the wing's public API (`from fabray.evaluate import evaluate_run`); modules
inside the wing import one another by their module path, never through this package.
"""

from fabray.evaluate.run import (
    HEADLINE,
    KINDS,
    Candidate,
    EvaluationResult,
    block_bootstrap_f1,
    evaluate_run,
    lead_policy,
    leaderboard_text,
    minute_delays,
    score_candidate,
    write_outputs,
)

__all__ = [
    "HEADLINE", "KINDS", "Candidate", "EvaluationResult", "block_bootstrap_f1", "evaluate_run", "lead_policy",
    "leaderboard_text", "minute_delays", "score_candidate", "write_outputs",
]
