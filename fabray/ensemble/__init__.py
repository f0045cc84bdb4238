"""The dynamic weighted ensemble (DESIGN §5). Pure numpy: no Ray, no files.

- `EnsembleParams`: its hyper-parameters (frozen, validated, `to_dict`/`from_dict`).
- `DynamicEnsemble`: the online object serving uses (`combine`, `update`, `to_state`).
- `replay`: the same rule run offline over a scored series (what Ray Tune scores).
- `search_space`: Tune's ranges as plain data; `score_params`: the objective Tune calls.
"""

from fabray.ensemble.dynamic import DynamicEnsemble, replay
from fabray.ensemble.objective import score_params
from fabray.ensemble.params import LOSSES, EnsembleParams
from fabray.ensemble.search_space import params_from_sample, sample_search_space, search_space

__all__ = [
    "LOSSES",
    "DynamicEnsemble",
    "EnsembleParams",
    "params_from_sample",
    "replay",
    "sample_search_space",
    "score_params",
    "search_space",
]
