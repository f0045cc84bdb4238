"""The Ray Serve deployments of the fabray application, one module each; `fabray.serve.app`
binds them into the application (`build_app`).

- `keeper.py`: EnsembleKeeper, the single holder of the online state (ensemble weights, live feed).
- `predictor.py`: Predictor (and the BatchScorer, the same class): the live version's models.
- `jobs.py`: JobManager, batch and retraining jobs and the batch scheduler.
- `ingress.py`: Ingress, the FastAPI front (http.py) in front of the three above.
- `metrics.py`: the Prometheus metrics helpers they share.
"""
