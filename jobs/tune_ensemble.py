"""`ray job submit` entrypoint for the ensemble fit (DESIGN §5): the same flags as `fabray ensemble`.

    ray job submit --address http://HEAD:8265 -- python jobs/tune_ensemble.py \
        --run /shared/runs/r1 --trials 64

Under `ray job submit`, RAY_ADDRESS is set, so the Ray Tune trials run on the job's cluster.
"""

from __future__ import annotations

import sys

from fabray.cli import main

if __name__ == "__main__":
    sys.exit(main(["ensemble", *sys.argv[1:]]))
