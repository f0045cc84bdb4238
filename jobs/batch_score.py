"""`ray job submit` entrypoint for offline batch scoring (DESIGN §8): the same flags as `fabray predict`.

    ray job submit --address http://HEAD:8265 -- python jobs/batch_score.py \
        --run /shared/runs/r1 --data /shared/day.parquet --out /shared/scores/day.parquet --workers 4

Under `ray job submit`, RAY_ADDRESS is set, so the Ray Data scoring actors run on the job's
cluster (the run directory must be on the file system every node mounts).
"""

from __future__ import annotations

import sys

from fabray.cli import main

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
