"""`ray job submit` of `jobs/train.py` to a Ray head started like the README says (issue 4).

The test starts its own head with the venv's `ray start --head --block` as a subprocess on
127.0.0.1 (free ports, its own RAY_TMPDIR, so it never meets the session's `ray_cluster` or
anyone else's Ray), submits `python jobs/train.py ...` with the repository as working dir
(`.rayignore` keeps the upload small) through `ray.job_submission.JobSubmissionClient`, waits
for SUCCEEDED and checks the run directory the job wrote.

Token authentication (on by default in Ray 2.60) is used, not disabled: the head gets a fresh
random token through `RAY_AUTH_MODE=token` + `RAY_AUTH_TOKEN` (never ~/.ray/auth_token), the
job driver inherits it from the head, and the client sends it as a bearer header; a client
without it is refused.

The head is stopped by its own means: SIGTERM to the `ray start --block` process, which shuts
down what it started; any process of the cluster still alive afterwards (found by the cluster's
RAY_TMPDIR) is ended by PID (`_local_clusters.ray_temp_dir`). Never `ray stop`. All of it starts
early in the session and runs in the background while the rest of the suite goes on
(`ISOLATED_JOB`, conftest.py); the test checks what it recorded.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
CONFIG = {"train": {"models": ["lstm"], "epochs": 1, "batch_size": 256, "shuffle_buffer": 1000,
                    "resources": {"cpus": 0.5},
                    "model_overrides": {"lstm": {"lstm_units": [8], "head_units": [8]}}}}


def _head_command(ports: dict[str, int]) -> list[str]:
    return [
        str(VENV_BIN / "ray"), "start", "--head", "--block",
        "--node-ip-address", "127.0.0.1", "--port", str(ports["gcs"]),
        "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
        "--dashboard-port", str(ports["dashboard"]),
        "--dashboard-agent-listen-port", str(ports["agent"]),
        "--dashboard-agent-grpc-port", str(ports["agent_grpc"]),
        "--ray-client-server-port", str(ports["client"]),
        "--metrics-export-port", str(ports["metrics"]),
        "--runtime-env-agent-port", str(ports["runtime_env"]),
        "--num-cpus", "2", "--object-store-memory", str(150 * 1024**2), "--disable-usage-stats",
    ]


def _client(url: str, token: str | None, timeout_s: float):
    """A JobSubmissionClient once the head's dashboard answers (it takes a while to start)."""
    from ray.job_submission import JobSubmissionClient

    headers = {"Authorization": f"Bearer {token}"} if token else None
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return JobSubmissionClient(url, headers=headers)
        except Exception:  # noqa: BLE001 - connection refused until the dashboard is up
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _isolated_job(work: Path, stop: threading.Event) -> dict[str, Any]:
    """Start the head, submit the job, wait for it, try a client without the token, stop the
    head; what happened, for the test to check."""
    from _local_clusters import free_port, isolated_env, log_tail, ray_temp_dir

    from fabray.data.io import write_table
    from fabray.data.simulate import simulate_preset

    data = write_table(simulate_preset("tiny", seed=6), work / "tiny.parquet")
    config = work / "job.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    run = work / "runs" / "job-r1"
    token = secrets.token_hex(32)
    ports = {k: free_port() for k in ("gcs", "dashboard", "agent", "agent_grpc", "client", "metrics", "runtime_env")}
    url = f"http://127.0.0.1:{ports['dashboard']}"
    out: dict[str, Any] = {"run": run, "status": None, "logs": "", "no_token_error": None}

    with ray_temp_dir("fbr-job-") as ray_tmp:
        env = isolated_env(ray_tmp)
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token,
                   PATH=f"{VENV_BIN}:{env.get('PATH', '')}")  # `python` in the entrypoint = the venv's
        head_log = work / "head.log"
        with open(head_log, "w") as log:
            head = subprocess.Popen(_head_command(ports), env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            client = _client(url, token, timeout_s=180)
            job_id = client.submit_job(
                entrypoint=f"python jobs/train.py --data {data} --out {run} --config {config}",
                runtime_env={"working_dir": str(REPO)},
            )
            deadline = time.monotonic() + 600
            status = client.get_job_status(job_id)
            while not status.is_terminal() and time.monotonic() < deadline and not stop.is_set():
                time.sleep(1)
                status = client.get_job_status(job_id)
            out.update(job_id=job_id, status=status, logs=client.get_job_logs(job_id))
            try:
                _client(url, None, timeout_s=0).list_jobs()  # no token: must be refused
            except Exception as err:  # noqa: BLE001 - the test checks what it says
                out["no_token_error"] = f"{type(err).__name__}: {err}"
        finally:
            head.send_signal(signal.SIGTERM)  # `ray start --block` shuts down what it started
            try:
                head.wait(timeout=60)
            except subprocess.TimeoutExpired:
                head.kill()
                head.wait()
            out["head_log_tail"] = log_tail(head_log)
    return out


ISOLATED_JOB = _isolated_job  # run in the background, started early (conftest.py)


def test_train_job_submitted_to_a_local_head_succeeds(isolated_runs):
    from ray.job_submission import JobStatus

    job = isolated_runs.result(__name__, _isolated_job)
    logs = job["logs"]
    assert job["status"] == JobStatus.SUCCEEDED, \
        f"job {job.get('job_id')}: {job['status']}\n{logs[-4000:]}\n{job['head_log_tail']}"
    assert job["no_token_error"] is not None, "a client without the token was not refused"
    assert re.search("(?i)auth|401|403|token", job["no_token_error"]), job["no_token_error"]

    assert "run:" in logs and "(complete)" in logs  # the CLI's last line, from the job's driver
    run = job["run"]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    entry = manifest["models"]["lstm"]
    assert entry["status"] == "ok" and (run / entry["model"]).is_file()
    assert manifest["cluster"]["resources"]["CPU"] == 2.0  # it joined the head, not an embedded Ray
