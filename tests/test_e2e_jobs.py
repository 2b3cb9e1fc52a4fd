"""Jobs against a real `enclave up`: a notebook submitted from a session runs in a sandbox of
its project after the session has stopped and leaves its executed copy and outputs in
`/project/jobs/<id>/`; the project's next jobs wait for its one slot, each with its place;
`enclave job cancel` stops one; suspending the project stops another; every step is in the
audit log; and an output exported through the airlock names its job, whose code's hash the
release record carries.

The project `job-study` (conftest.py) has one researcher, jody, and the two demo checkers. Its
jobs are submitted once, in the first test, and followed through the others in order."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time

import httpx
import pytest

from enclave_harness import SessionNotebook, create_api_token, login, project_cli
from enclave_hub.audit.query import records

pytestmark = pytest.mark.e2e

PROJECT = "job-study"
AIRLOCK = "/services/enclave-airlock/"
NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "metadata": {"tags": ["parameters"]},
            "source": "seconds = 1\nlabel = 'none'\n",
            "outputs": [],
            "execution_count": None,
        },
        {
            "cell_type": "code",
            "metadata": {},
            "source": (
                "import pathlib, time\n"
                "pathlib.Path('started').write_text('yes')\n"
                "time.sleep(seconds)\n"
                "pathlib.Path('result.csv').write_text(f'label,seconds\\n{label},{seconds}\\n')\n"
                "print('done', label)\n"
            ),
            "outputs": [],
            "execution_count": None,
        },
    ],
    "metadata": {"kernelspec": {"name": "enclave-python", "language": "python"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}
SLEEPER = (
    "import enclave, pathlib, time\n"
    "parameters = enclave.job_parameters()\n"
    "pathlib.Path('started').write_text(repr(parameters))\n"
    "time.sleep(parameters['seconds'])\n"
)
JOBS: dict[str, int] = {}  # the jobs the first test submits, by their part in the story


def job_cli(enclave, *argv: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "enclave_hub.cli", "job", *argv]
    result = subprocess.run(
        [*command, "--config", str(enclave.base / "enclave.yaml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result


def show(enclave, job_id: int) -> dict:
    return json.loads(job_cli(enclave, "show", str(job_id)).stdout)


def wait_for_status(enclave, job_id: int, statuses: tuple[str, ...], timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = show(enclave, job_id)
        if found["status"] in statuses:
            return found
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} is still {found['status']} after {timeout} s: {found}")


def job_folder(enclave, job_id: int):
    return enclave.site.sessions.workspace_root / PROJECT / "shared" / "jobs" / str(job_id)


def job_events(enclave, job_id: int) -> list[dict]:
    return [r for r in records(enclave.state_dir / "audit") if r.get("target") == f"job/{job_id}"]


def test_a_notebook_job_outlives_its_session_and_the_next_ones_wait(enclave):
    jody = SessionNotebook(enclave, "jody", PROJECT)
    submitted = jody.run(
        "import enclave, json, pathlib, time\n"
        f"pathlib.Path('slow.ipynb').write_text({json.dumps(NOTEBOOK)!r})\n"
        f"pathlib.Path('sleeper.py').write_text({SLEEPER!r})\n"
        "first = enclave.submit_job('slow.ipynb', parameters={'seconds': 12, 'label': 'a'})\n"
        "second = enclave.submit_job('slow.ipynb', parameters={'seconds': 1, 'label': 'b'})\n"
        "third = enclave.submit_job('sleeper.py', parameters={'seconds': 600})\n"
        "fourth = enclave.submit_job('sleeper.py', parameters={'seconds': 600})\n"
        "deadline = time.monotonic() + 30\n"
        "while enclave.job(first['id'])['status'] == 'queued' and time.monotonic() < deadline:\n"
        "    time.sleep(0.2)\n"
        "print(json.dumps({'ids': [first['id'], second['id'], third['id'], fourth['id']],\n"
        "    'jobs': enclave.jobs(), 'profiles': enclave.job_profiles(),\n"
        "    'code': __import__('hashlib').sha256(pathlib.Path('slow.ipynb').read_bytes())"
        ".hexdigest()}))\n"
    )
    first, second, third, fourth = submitted["ids"]
    JOBS.update(first=first, second=second, third=third, fourth=fourth)
    listed = {job["id"]: job for job in submitted["jobs"]}
    assert listed[first]["status"] == "running", json.dumps(listed[first])
    assert listed[first]["code_sha256"] == submitted["code"]
    assert [(listed[j]["status"], listed[j]["position"]) for j in (second, third, fourth)] == [
        ("queued", 1),
        ("queued", 2),
        ("queued", 3),
    ]
    assert listed[second]["waiting_for"] == "the project's 1 job slot(s), all in use"
    assert submitted["profiles"] == ["default"]

    menu = httpx.get(
        jody.url + "lab/api/settings/@jupyterlab/mainmenu-extension:plugin",
        headers={"Authorization": f"token {jody.token}"},
    ).json()
    run_menu = next(
        m for m in menu["schema"]["properties"]["menus"]["default"] if m["id"] == "jp-mainmenu-run"
    )
    assert any(
        item.get("args", {}).get("url") == f"/user/jody/{PROJECT}/enclave/jobs/"
        for item in run_menu["items"]
    ), run_menu

    jody.stop()
    assert show(enclave, first)["status"] == "running"  # the session is gone, the job is not
    done = wait_for_status(enclave, first, ("succeeded", "failed"))
    folder = job_folder(enclave, first)
    assert done["status"] == "succeeded", (done, (folder / "job.log").read_text())
    assert (folder / "result.csv").read_text() == "label,seconds\na,12\n"
    executed = json.loads((folder / "slow.executed.ipynb").read_text())
    printed = "".join("".join(o.get("text", "")) for o in executed["cells"][-1]["outputs"])
    assert printed == "done a\n"
    outputs = {o["name"]: o["sha256"] for o in done["outputs"]}
    assert outputs["result.csv"] == hashlib.sha256(b"label,seconds\na,12\n").hexdigest()
    assert {"slow.ipynb", "slow.executed.ipynb", "job.log", "parameters.json"} <= set(outputs)
    session_stop = next(
        r["time"]
        for r in records(enclave.state_dir / "audit")
        if r["action"] == "session.stop" and r.get("actor") == "jody"
    )
    assert session_stop < next(
        r["time"] for r in job_events(enclave, first) if r["action"] == "job.end"
    )

    after = wait_for_status(enclave, second, ("succeeded", "failed"))
    assert after["status"] == "succeeded"
    assert after["started_at"] >= done["ended_at"]
    assert (job_folder(enclave, second) / "result.csv").read_text() == "label,seconds\nb,1\n"


def test_a_job_output_leaves_through_the_airlock_with_its_code_hash(enclave):
    first = JOBS["first"]
    jody = SessionNotebook(enclave, "jody", PROJECT)
    try:
        made = jody.run(
            "import enclave, json, pathlib, shutil\n"
            f"out = '/project/jobs/{first}/result.csv'\n"
            "pathlib.Path('altered.csv').write_text('label,seconds\\na,13\\n')\n"
            "try:\n"
            f"    enclave.request_export(['altered.csv'], 'changed after the job', job={first})\n"
            "    refused = ''\n"
            "except enclave.ExportError as error:\n"
            "    refused = str(error)\n"
            f"r = enclave.request_export([out], 'timings of the job', job={first})\n"
            "print(json.dumps({'id': r.id, 'status': r.status, 'refused': refused}))\n"
        )
    finally:
        jody.stop()
    assert f"altered.csv is not an output of job {first}" in made["refused"], made
    assert made["status"] == "in-review", made
    for checker in ("erin", "rose"):
        client, _ = login(enclave, checker)
        token = create_api_token(client, checker)
        reply = httpx.post(
            f"{enclave.url}{AIRLOCK}api/requests/{made['id']}/reviews",
            headers={"Authorization": f"token {token}"},
            json={"decision": "approve", "comment": "timings only"},
            timeout=60,
        )
        assert reply.status_code == 201, reply.text
    client, _ = login(enclave, "jody")
    record = client.get(f"{enclave.url}{AIRLOCK}requests/{made['id']}/files/release.json").json()
    job = show(enclave, first)
    assert record["job"]["id"] == first
    assert record["job"]["code_sha256"] == job["code_sha256"]
    assert record["job"]["name"] == "slow.ipynb" and record["job"]["status"] == "succeeded"
    assert record["files"][0]["name"] == f"project/jobs/{first}/result.csv"


def test_cancelling_and_suspending_stop_running_jobs_each_step_recorded(enclave):
    third, fourth = JOBS["third"], JOBS["fourth"]
    wait_for_status(enclave, third, ("running",))
    assert "\n" in job_cli(enclave, "list", "--project", PROJECT).stdout
    cancelled = job_cli(enclave, "cancel", str(third))
    assert "being stopped" in cancelled.stdout
    ended = wait_for_status(enclave, third, ("cancelled",), timeout=30)
    assert ended["reason"].startswith("cancelled by command line")
    assert (job_folder(enclave, third) / "started").read_text() == "{'seconds': 600}"

    wait_for_status(enclave, fourth, ("running",))
    project_cli(enclave, "suspend", PROJECT)
    stopped = wait_for_status(enclave, fourth, ("stopped",), timeout=30)
    assert "is not in force" in stopped["reason"]

    steps = {
        job: [(r["action"], r.get("detail", {}).get("status")) for r in job_events(enclave, job)]
        for job in (JOBS["first"], third, fourth)
    }
    assert steps[JOBS["first"]] == [
        ("job.submit", None),
        ("job.start", None),
        ("job.end", "succeeded"),
    ]
    assert steps[third] == [
        ("job.submit", None),
        ("job.start", None),
        ("job.cancel", None),
        ("job.end", "cancelled"),
    ]
    assert steps[fourth] == [("job.submit", None), ("job.start", None), ("job.end", "stopped")]
    assert all(r["actor"] == "jody" for r in job_events(enclave, fourth))
