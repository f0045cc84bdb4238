"""Serving on Ray Serve (DESIGN §6): the HTTP API, the model store, the ensemble keeper, jobs.

Modules: `schemas` (request/response bodies), `validation` (window checks, degraded rules),
`auth` (bearer token), `store` (versioned model store), `keeper` (online ensemble state),
`bundle` (a loaded version), `http` (the FastAPI app), `batch` / `retrain` (jobs), and `app`
(the Serve deployments and `build_app`). Only `app`, `batch` and `retrain` import Ray.
"""
