"""Jobs: a notebook or script run apart from the session, in a sandbox of its project, which
goes on when the session stops.

    job = enclave.submit_job("analysis.ipynb", parameters={"alpha": 0.05})
    enclave.jobs()                   # the project's jobs; waiting ones with their place
    enclave.wait_for_job(job["id"])  # until it ends
    enclave.cancel_job(job["id"])

The code is recorded as it is at submission (its SHA-256 too), and runs in
`/project/jobs/<id>/`: a notebook through papermill (its parameters injected after the cell
tagged `parameters`), which leaves `<name>.executed.ipynb` there; a script (`.py`, `.R`) reads
its parameters with `enclave.job_parameters()`. Its log is `job.log`, and what it writes in
its folder are its outputs. A job has the project's datasets, `/project` and the member's
home, with its profile's resources; it reaches no Enclave service (no Dask gateway: use a
local cluster). To export its outputs, name it: `enclave.request_export([...], "...",
job=7)`, and the release record carries its code's hash.
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

from .session_services import call

URL_VARIABLE = "ENCLAVE_JOBS_URL"
PARAMETERS_VARIABLE = "ENCLAVE_JOB_PARAMETERS"
ENDED = ("succeeded", "failed", "cancelled", "stopped")


class JobError(RuntimeError):
    """The job service refused, or cannot be reached; the message says why."""


def _jobs(path: str, **request) -> dict:
    return call(URL_VARIABLE, "job service", JobError, path, **request)


def submit_job(
    path: str | os.PathLike, profile: str | None = None, parameters: dict | None = None
) -> dict:
    """Queue the notebook or script at `path` as a job of this session's project; the job,
    with its place in the queue. `profile`: one the project's jobs may use (default: the
    project's own)."""
    file = Path(path).expanduser()
    try:
        code = file.read_bytes()
    except OSError as error:
        raise JobError(f"{path}: {error.strerror or error}") from None
    body = {
        "name": file.name,
        "code": base64.b64encode(code).decode(),
        "profile": profile,
        "parameters": parameters or {},
    }
    return _jobs("api/jobs", method="POST", json=body)


def jobs() -> list[dict]:
    """The jobs of this session's project, newest first."""
    return _jobs("api/jobs")["jobs"]


def job_profiles() -> list[str]:
    """The profiles this project's jobs may run with, its own first."""
    return _jobs("api/jobs")["profiles"]


def job(job_id: int) -> dict:
    """One job of this session's project."""
    return _jobs(f"api/jobs/{int(job_id)}")


def cancel_job(job_id: int) -> dict:
    """Cancel one's own job, waiting or running."""
    return _jobs(f"api/jobs/{int(job_id)}/cancel", method="POST")


def wait_for_job(job_id: int, timeout: float | None = None, every: float = 2.0) -> dict:
    """The job once it has ended; JobError if `timeout` seconds pass first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        found = job(job_id)
        if found["status"] in ENDED:
            return found
        if deadline is not None and time.monotonic() > deadline:
            raise JobError(f"job {job_id} is still {found['status']} after {timeout} s")
        time.sleep(every)


def job_parameters() -> dict:
    """In a job: the parameters it was submitted with (empty elsewhere)."""
    return json.loads(os.environ.get(PARAMETERS_VARIABLE) or "{}")
