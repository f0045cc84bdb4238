"""The ensemble (DESIGN §5). Pure numpy: no Ray, no files.

- `EnsembleParams`: the dynamic weights' hyper-parameters (frozen, validated, `to_dict`/`from_dict`).
- `DynamicEnsemble`: online error-tracking weights (`combine`, `update`, `to_state`); `replay`:
  the same rule (`weight_rule`) run offline over a scored series, vectorized.
- `gate`: the learned gate (softmax over members from context + recent errors), cross-fitted.
- `calibrate`: Platt / isotonic maps chosen by cross-fitted Brier.
- `ServedEnsemble` (`served`): what a run serves (member / static / dynamic / gate, calibrated,
  thresholded), one object online (the serving keeper) and offline (`run_online`, evaluate).
- `objective`: every form scored on validation by the lead score; `fit_served` builds the winner.
- `search_space`: Tune's ranges as plain data; `diversity`: error correlation, leave-one-out.
"""

from fabray.ensemble.dynamic import DynamicEnsemble
from fabray.ensemble.objective import score_params
from fabray.ensemble.params import LOSSES, EnsembleParams
from fabray.ensemble.replay import replay
from fabray.ensemble.search_space import params_from_sample, sample_search_space, search_space
from fabray.ensemble.served import ServedEnsemble, run_online

__all__ = [
    "LOSSES",
    "DynamicEnsemble",
    "EnsembleParams",
    "ServedEnsemble",
    "params_from_sample",
    "replay",
    "run_online",
    "sample_search_space",
    "score_params",
    "search_space",
]
