"""The audit service's HTTP ingest in batches: events recorded at once by many callers of one
client travel together, each answered with its own event's number once durable; a batch's bad
event is refused alone. (The real service and log on loopback.)"""

from __future__ import annotations

import asyncio
import contextlib
import secrets

import httpx
import pytest
from tornado import httpserver

from enclave_harness import free_port
from enclave_hub.audit import AuditLog
from enclave_hub.audit.attribution import TokenResolver
from enclave_hub.audit.checkpoints import PUBLIC_KEY_FILE, load_public_key
from enclave_hub.audit.query import records
from enclave_hub.audit.ratelimit import FailureLimiter
from enclave_hub.audit.service import MAX_BATCH, AuditService, make_app
from enclave_hub.audit.verify import verify_log
from enclave_hub.core import audit_client
from enclave_hub.core.audit_client import AuditClient, AuditRefused
from enclave_hub.core.services import AUDIT_EVENTS_PATH
from enclave_hub.core.site_config import SiteConfig


@contextlib.asynccontextmanager
async def audit_service(folder):
    """The service over a log in `folder`; yields (events URL, ingest token, request paths)."""
    token, port = secrets.token_hex(16), free_port()
    log = AuditLog(folder / "audit", folder / "signing.key", interval=3600)
    resolver = TokenResolver(f"http://127.0.0.1:{free_port()}/hub/api")  # no session sends here
    service = AuditService(log, token, resolver, FailureLimiter())
    app = make_app(service, SiteConfig(state_dir=folder), token)
    requests: list[str] = []
    app.settings["log_function"] = lambda handler: requests.append(handler.request.path)
    server = httpserver.HTTPServer(app)
    server.listen(port, address="127.0.0.1")
    try:
        yield f"http://127.0.0.1:{port}{AUDIT_EVENTS_PATH}", token, requests
    finally:
        server.stop()
        await resolver.close()
        log.close()


def test_events_recorded_at_once_go_together_and_each_gets_its_own_number(tmp_path):
    async def scenario() -> list:
        async with audit_service(tmp_path) as (url, token, requests):
            client = AuditClient(url, token)
            numbers = await asyncio.gather(
                *(
                    client.record(actor="hub", action="test.event", target=str(n))
                    for n in range(300)
                )
            )
            return numbers, len(requests)

    numbers, requests = asyncio.run(scenario())
    assert requests < 30, f"{requests} requests for 300 events"
    logged = {r["seq"]: r["target"] for r in records(tmp_path / "audit")}
    assert [logged[number] for number in numbers] == [str(n) for n in range(300)]
    verdict = verify_log(tmp_path / "audit", load_public_key(tmp_path / "audit" / PUBLIC_KEY_FILE))
    assert verdict.ok, verdict.reason


def test_a_bad_event_of_a_batch_is_refused_alone_and_an_oversized_batch_whole(tmp_path):
    async def scenario() -> tuple:
        async with audit_service(tmp_path) as (url, token, _):
            headers = {"Authorization": f"token {token}"}
            async with httpx.AsyncClient() as http:
                batch = [
                    {"actor": "hub", "action": "test.event", "target": "first"},
                    {"action": "test.event", "target": "no actor"},
                    {"actor": "hub", "action": "test.event", "target": "third"},
                ]
                answered = await http.post(url, json=batch, headers=headers)
                oversized = [batch[0]] * (MAX_BATCH + 1)
                refused = await http.post(url, json=oversized, headers=headers)
                anonymous = await http.post(url, json=batch)
        return answered, refused, anonymous

    answered, refused, anonymous = asyncio.run(scenario())
    assert answered.status_code == 200
    first, bad, third = answered.json()["results"]
    assert (first["status"], bad["status"], third["status"]) == (201, 400, 201)
    assert bad["error"] == "'actor' is required" and third["seq"] == first["seq"] + 1
    assert refused.status_code == 400 and str(MAX_BATCH) in refused.json()["error"]
    assert anonymous.status_code == 403
    assert [r["target"] for r in records(tmp_path / "audit")] == ["first", "third"]


def test_every_waiting_event_is_refused_when_the_service_cannot_be_reached():
    client = AuditClient(f"http://127.0.0.1:{free_port()}{AUDIT_EVENTS_PATH}", "token")

    async def scenario() -> list:
        return await asyncio.gather(
            *(client.record(actor="hub", action="test.event", target=str(n)) for n in range(20)),
            return_exceptions=True,
        )

    answers = asyncio.run(scenario())
    assert all(isinstance(a, AuditRefused) and a.retryable for a in answers), answers
    assert "the audit service cannot be reached" in str(answers[0])
    with pytest.raises(TypeError):  # what cannot be sent is refused to its caller at once
        asyncio.run(client.record(actor="hub", action="test.event", detail=object()))


def test_an_event_arriving_as_the_sender_stops_lingering_is_still_sent(tmp_path, monkeypatch):
    """Events recorded one at a time, each about when the last sender's wait for more ends:
    every one is answered (none is left queued with no sender to take it)."""
    monkeypatch.setattr(audit_client, "LINGER", 0.004)

    async def scenario() -> list:
        async with audit_service(tmp_path) as (url, token, _):
            client = AuditClient(url, token)
            answers = []
            for n in range(150):
                await asyncio.sleep(0.003 + (n % 7) * 0.0005)  # around the linger's end
                event = client.record(actor="hub", action="test.event", target=str(n))
                answers.append(await asyncio.wait_for(event, 10))
            return answers

    answers = asyncio.run(scenario())
    assert len(set(answers)) == 150
