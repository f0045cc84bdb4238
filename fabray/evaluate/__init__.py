"""The evaluation wing: how good a run is, on data it never trained on (`fabray evaluate`).

- `run`: the evaluation itself: every model, both ensembles and the baselines scored on the same
  test windows (`evaluate_run`); `result`: `Candidate`, `EvaluationResult`, the ranking by the
  headline lead score and the JSON (DESIGN §8); `scoring`: one candidate's metrics, lead policy
  and F1 interval; `outputs`: the printed leaderboard, `--json` and `--report`;
- `baselines`: persistence, the rules alone, LightGBM on lag features;
- `roi`: the seed's return on investment from the measured metrics;
- `report`: report.md (`--report`), with its plots in `report_plots` and tables in `report_tables`;
- `model_card`: the run's model card (per-zone and per-shift metrics, failure modes).

The names below are the wing's public API (`from fabray.evaluate import evaluate_run`); modules
inside the wing import one another by their module path, never through this package.
"""

from fabray.evaluate.outputs import leaderboard_text, write_outputs
from fabray.evaluate.result import HEADLINE, KINDS, Candidate, EvaluationResult
from fabray.evaluate.run import evaluate_run
from fabray.evaluate.scoring import block_bootstrap_f1, lead_policy, minute_delays, score_candidate

__all__ = [
    "HEADLINE", "KINDS", "Candidate", "EvaluationResult", "block_bootstrap_f1", "evaluate_run", "lead_policy",
    "leaderboard_text", "minute_delays", "score_candidate", "write_outputs",
]
