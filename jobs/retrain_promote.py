"""`ray job submit` entrypoint of the daily retrain that lands (issue 15): retrain the serving
store's live version on the newest data, evaluate champion and challenger on held-out recent
data, store the challenger and promote it only if it is not worse, exactly as `POST /v1/retrain`
does (`fabray.serve.retrain.run_scheduled_retrain`). The serving replicas hot-swap to it.

    ray job submit --address http://HEAD:8265 -- python jobs/retrain_promote.py \
        --store /fabray/serve-store --data /fabray/data/latest.parquet --config /fabray/fabray.yaml

Its status is a job of the store: `GET /v1/jobs/<job_id>` on the serving app shows it.
"""

from __future__ import annotations

import sys

from fabray.serve.retrain import main

if __name__ == "__main__":
    sys.exit(main())
