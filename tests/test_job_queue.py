"""The book of jobs on the registry's real databases and audit log: what may be submitted, the
order in which jobs start (a slot per project, one line for the GPUs), cancelling, and each
change recorded. The runs themselves are in test_e2e_jobs."""

from __future__ import annotations

import hashlib
import json

import pytest

from enclave_hub.audit import AuditLog
from enclave_hub.audit.query import records
from enclave_hub.core.jobs import (
    CANCELLED,
    QUEUED,
    SUCCEEDED,
    JobBook,
    Start,
    Submission,
    ended_job,
)
from enclave_hub.core.registry import NotFound, Registry, RegistryError
from enclave_hub.core.site_config import JobSettings, Profile
from enclave_hub.core.validation import InvalidInput

NOTEBOOK = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode()
PROFILES = {
    "default": Profile(job_profiles=["one-gpu", "two-gpus"]),
    "one-gpu": Profile(gpus=1),
    "two-gpus": Profile(gpus=2),
}


@pytest.fixture
def world(tmp_path, database_url):
    log = AuditLog(tmp_path / "audit", tmp_path / "signing.key", interval=3600)
    registry = Registry(database_url, tmp_path / "data", list(PROFILES), log.append)
    for project in ("alpha", "beta", "gamma", "delta"):
        registry.create_project("carol", project, project.title())
        registry.add_member("carol", project, "rita")
    book = JobBook(registry, JobSettings(max_queued=3), PROFILES, gpu_pool=[0, 1])
    yield book, tmp_path / "audit"
    log.close()


def submit(book, project="alpha", name="run.ipynb", code=NOTEBOOK, **more) -> dict:
    return book.submit(Submission("rita", project, name, code, **more))


def test_what_may_be_submitted(world):
    book, _ = world
    refusals = [
        ({"name": "../run.py", "code": b"print(1)"}, "without folders"),
        ({"name": ".hidden.py", "code": b"print(1)"}, "without folders"),
        ({"name": "run.sh", "code": b"echo"}, "runs only .ipynb, .py, .r files"),
        ({"name": "run.py", "code": b""}, "is empty"),
        ({"name": "run.py", "code": b"\xff\xfe"}, "not UTF-8"),
        ({"name": "run.ipynb", "code": b"{"}, "is not a notebook"),
        ({"name": "run.ipynb", "code": b"[]"}, "is not a notebook: no cells"),
        ({"name": "run.py", "code": b"x" * (20 * 1024**2 + 1)}, "more than the"),
        ({"parameters": {"not a name": 1}}, "not a valid variable name"),
        ({"parameters": {"when": object()}}, "not JSON values"),
        ({"profile": "huge"}, "jobs of project 'alpha' run with 'default'"),
    ]
    for given, message in refusals:
        with pytest.raises(InvalidInput, match=message):
            submit(book, **given)
    with pytest.raises(RegistryError, match="rita may not run jobs in project 'nowhere'"):
        submit(book, project="nowhere")
    small = JobBook(book.registry, book.settings, PROFILES, gpu_pool=[0])
    with pytest.raises(InvalidInput, match=r"asks for 2 GPU\(s\); jobs here have 1"):
        small.submit(Submission("rita", "alpha", "run.py", b"print(1)", "two-gpus"))
    job = submit(book, name="Train.R", code=b"cat(1)", parameters={"alpha": 0.05})
    assert (job["kind"], job["status"], job["position"]) == ("r", QUEUED, 1)
    assert job["parameters"] == {"alpha": 0.05}
    for _ in range(2):
        submit(book)
    with pytest.raises(RegistryError, match="has 3 jobs waiting already"):
        submit(book)


def test_each_project_runs_one_job_at_a_time_first_come_first_served(world):
    book, audit = world
    first, second = submit(book), submit(book)
    other = submit(book, project="beta")
    assert book.startable() == [Start(first["id"], ()), Start(other["id"], ())]
    book.started(first["id"], (), 7000)
    waiting = book.show(second["id"])
    assert waiting["position"] == 1
    assert waiting["waiting_for"] == "the project's 1 job slot(s), all in use"
    third = submit(book)
    assert book.show(third["id"])["waiting_for"] == "1 earlier job(s) of the project"
    assert [s.job_id for s in book.startable()] == [other["id"]]
    outputs = [{"name": "result.csv", "sha256": "ab" * 32, "size": 3}]
    book.ended(first["id"], SUCCEEDED, "finished", 0, outputs)
    assert [s.job_id for s in book.startable()] == [second["id"], other["id"]]
    assert ended_job(book.registry, first["id"], "alpha")["outputs"] == outputs
    with pytest.raises(RegistryError, match="is queued: its outputs are known once it ends"):
        ended_job(book.registry, second["id"], "alpha")
    with pytest.raises(NotFound, match=f"no job {first['id']} in project 'beta'"):
        ended_job(book.registry, first["id"], "beta")
    events = [(r["action"], r["target"]) for r in records(audit)]
    target = f"job/{first['id']}"
    assert [a for a, t in events if t == target] == ["job.submit", "job.start", "job.end"]


def test_the_gpus_have_one_line(world):
    book, _ = world
    holder = submit(book, profile="one-gpu")
    book.started(holder["id"], (0,), 7000)
    pair = submit(book, project="beta", profile="two-gpus")
    single = submit(book, project="gamma", profile="one-gpu")
    cpu = submit(book, project="delta")
    assert book.startable() == [Start(cpu["id"], ())]
    assert book.show(pair["id"])["waiting_for"] == "2 GPU(s): 1 free"
    # GPU 1 is free, but the job asking for two came first.
    assert (
        book.show(single["id"])["waiting_for"] == "1 GPU(s), after an earlier job waiting for GPUs"
    )
    book.ended(holder["id"], SUCCEEDED, "finished", 0)
    assert book.startable() == [Start(pair["id"], (0, 1)), Start(cpu["id"], ())]


def test_cancelling(world):
    book, audit = world
    running, queued = submit(book), submit(book)
    book.started(running["id"], (), 7000)
    cancelled = book.cancel("rita", queued["id"], "alpha")
    assert (cancelled["status"], cancelled["cancelled_by"]) == (CANCELLED, "rita")
    assert cancelled["reason"] == "cancelled by rita before it started"
    stopping = book.cancel("rita", running["id"])
    assert (stopping["status"], stopping["cancelled_by"]) == ("running", "rita")
    with pytest.raises(RegistryError, match="is being cancelled already"):
        book.cancel("rita", running["id"])
    with pytest.raises(RegistryError, match="has ended already"):
        book.cancel("rita", queued["id"])
    with pytest.raises(NotFound, match="no job 999"):
        book.cancel("rita", 999)
    cancels = [r["target"] for r in records(audit) if r["action"] == "job.cancel"]
    assert cancels == [f"job/{queued['id']}", f"job/{running['id']}"]


def test_the_code_is_kept_as_submitted(world):
    book, _ = world
    code = b"import enclave\nprint(enclave.job_parameters())\n"
    job = submit(book, name="train.py", code=code)
    assert book.code_of(job["id"]) == ("train.py", "python", code)
    assert job["code_sha256"] == hashlib.sha256(code).hexdigest()
