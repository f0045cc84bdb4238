"""The Ray Serve deployments of the fabray application, one module each; `fabray.serve.app`
binds them into the application (`build_app`).

- `predictor.py`: Predictor, the HTTP ingress and the live version's models (validates, scores
  and combines /v1/predict in one replica); BatchScorer, the same models warm for batch jobs.
- `ingress.py`: `HttpFront`, the FastAPI front's service (http.py) the Predictor inherits: every
  route but the scoring, calling the two below.
- `keeper.py`: EnsembleKeeper, the single holder of the online state (ensemble weights, live feed).
- `jobs.py`: JobManager, batch and retraining jobs and the batch scheduler.
- `metrics.py`: the Prometheus metrics helpers they share.
"""

#: Deployment names (the handles find one another by them).
PREDICTOR = "Predictor"
BATCH_SCORER = "BatchScorer"
