"""`ray job submit` entrypoint for incremental retraining (DESIGN §4): the flags of `fabray retrain`.

    ray job submit --address http://HEAD:8265 --working-dir . -- python jobs/retrain.py \
        --run /shared/runs/r1 --data /shared/latest.parquet --out /shared/runs/r2 --budget-minutes 110

Under `ray job submit`, RAY_ADDRESS is set, so the retrain joins the job's cluster.
"""

from __future__ import annotations

import sys

from fabray.cli import main

if __name__ == "__main__":
    sys.exit(main(["retrain", *sys.argv[1:]]))
