"""What senders may put in an audit event, and the limit on recorded failed logins."""

from __future__ import annotations

import pytest

from enclave_hub.audit.attribution import ActiveSessions
from enclave_hub.audit.events import BadEvent, SessionIdentity, platform_event, session_event
from enclave_hub.audit.ratelimit import FailureLimiter
from enclave_hub.core.hub_api import session_server

ALICE = SessionIdentity(user="alice", project="genomics", session="run-1")


def test_a_session_event_is_attributed_by_identity_whatever_the_body_claims():
    body = {
        "action": "cell.execute",
        "actor": "bob",
        "project": "p",
        "session": "x",
        "source": "10.0.0.1",
        "code": "print(1)",
    }
    event = session_event(body, ALICE, "169.254.0.6")
    assert event == {
        "action": "cell.execute",
        "code": "print(1)",
        "actor": "alice",
        "project": "genomics",
        "session": "run-1",
        "source": "169.254.0.6",
    }


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"action": "login.ok"}, "may not record 'login.ok'"),
        ({"action": "session.stop"}, "may not record 'session.stop'"),
        ({"action": "file.save", "seq": 3}, "'seq' is set by the audit service"),
        ({"action": "file.save", "time": 1.0}, "'time' is set by the audit service"),
        ({"action": "file.save", "colour": "red"}, "'colour' is not a field"),
        ({"action": "File Save"}, "'action' must be lower-case words"),
        ({"action": "cell.execute", "code": 5}, "'code' must be text"),
        ({"action": "egress.blocked", "count": -1}, "'count' must be a whole number"),
        ({"target": "x"}, "'action' is required"),
        (["not", "an", "object"], "must be a JSON object"),
    ],
)
def test_a_bad_session_event_is_refused_naming_the_field(body, named):
    with pytest.raises(BadEvent, match=named):
        session_event(body, ALICE, "169.254.0.6")


def test_a_platform_event_needs_an_actor_and_keeps_its_fields():
    with pytest.raises(BadEvent, match="'actor' is required"):
        platform_event({"action": "login.ok"})
    event = {"action": "login.failed", "actor": "mallory", "source": "192.0.2.1", "reason": "no"}
    assert platform_event(event) == event


def test_failed_logins_beyond_the_limit_are_counted_and_reported_once_a_window_ends():
    limiter = FailureLimiter(per_source=3, total=10, window=60)
    admitted = [limiter.admit("192.0.2.1", now=float(n)) for n in range(10)]
    assert admitted == [True] * 3 + [False] * 7
    assert limiter.admit("192.0.2.2", now=5.0), "another address has its own limit"
    assert limiter.ended(now=30.0) == []
    [report] = limiter.ended(now=61.0)
    assert (report.count, report.sources) == (7, {"192.0.2.1": 7})
    assert limiter.ended(now=62.0) == []
    assert limiter.admit("192.0.2.1", now=62.0), "a new window records again"


def test_failed_logins_from_many_addresses_are_bounded_in_total():
    limiter = FailureLimiter(per_source=5, total=20, window=60)
    admitted = [limiter.admit(f"10.0.{n // 256}.{n % 256}", now=1.0) for n in range(20_000)]
    assert sum(admitted) == 20
    [report] = limiter.ended(now=61.0)
    assert report.count == 20_000 - 20
    assert len(report.sources) <= 20


def test_the_current_run_of_a_session_follows_its_start_and_end_records():
    sessions = ActiveSessions()
    sessions.observe({"action": "session.start", "actor": "alice", "project": "p", "session": "a"})
    assert sessions.current("alice", "p") == "a"
    sessions.observe({"action": "session.stop", "actor": "alice", "project": "p", "session": "old"})
    assert sessions.current("alice", "p") == "a", "the end of another run changes nothing"
    sessions.observe({"action": "session.stop", "actor": "alice", "project": "p", "session": "a"})
    assert sessions.current("alice", "p") is None


@pytest.mark.parametrize(
    ("model", "server"),
    [
        (
            {"kind": "user", "name": "alice", "scopes": ["access:servers!server=alice/p"]},
            ("alice", "p"),
        ),
        # A user's own API token reaches all their servers: it speaks for no one session.
        ({"kind": "user", "name": "alice", "scopes": ["access:servers!user=alice"]}, None),
        # Nor does it when alice has a single project: it can manage her tokens.
        (
            {
                "kind": "user",
                "name": "alice",
                "scopes": ["access:servers!server=alice/p", "tokens!user=alice"],
            },
            None,
        ),
        ({"kind": "user", "name": "alice", "scopes": ["access:servers!server=bob/p"]}, None),
        ({"kind": "service", "name": "x", "scopes": ["access:servers!server=x/p"]}, None),
    ],
)
def test_only_a_token_for_exactly_one_of_its_owners_servers_names_a_session(model, server):
    assert session_server(model) == server
