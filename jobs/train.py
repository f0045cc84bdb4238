"""`ray job submit` entrypoint for training (DESIGN §4): the same flags as `fabray train`.

    ray job submit --address http://HEAD:8265 -- python jobs/train.py \
        --data /shared/fab.parquet --out /shared/runs/r1 --models lstm,gru --epochs 20

Under `ray job submit`, RAY_ADDRESS is set, so the run joins the job's cluster.
"""

from __future__ import annotations

import sys

from fabray.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
