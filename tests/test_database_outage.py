"""PostgreSQL stopped under Enclave, then started again: what needs the database is refused
with one clear line while it is down, nothing is left half-done, and the same objects work
again by themselves once it is back.

These tests share a server of their own (`stoppable_postgresql_server`, not the session's
`postgresql`, which other tests use), each with a fresh database, and stop it as a crash would
(`pg_ctl stop -m immediate`) in the middle of what they test: a reconcile pass, an airlock
review that releases, membership changes through the registry's API and pages, a session
start and a sign-in at the hub, the job service's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from jupyterhub.services.auth import HubAuthenticated
from postgres_harness import new_database, stoppable_postgresql_server
from study_world import dataset_root, seed_study
from tornado import httpserver, web

from enclave_harness import free_port, require_root
from enclave_hub import hub_config
from enclave_hub.airlock import api as airlock_api
from enclave_hub.airlock.checks import Rules
from enclave_hub.airlock.exports import Airlock, Limits, Submission, Upload
from enclave_hub.airlock.models import IN_REVIEW, RELEASED
from enclave_hub.airlock.store import AirlockStore
from enclave_hub.auth import EnclaveAuthenticator
from enclave_hub.core.hub_api import REFLECT_ACCESS_PATH, HubSessions
from enclave_hub.core.jobs import FAILED, JobBook
from enclave_hub.core.jobs import Submission as JobSubmission
from enclave_hub.core.registry import DatabaseUnavailable, Registry
from enclave_hub.core.service_auth import JSONAPI, service_app
from enclave_hub.core.services import AIRLOCK, REGISTRY
from enclave_hub.core.site_config import JobSettings, Profile, parse_site_config
from enclave_hub.hub_access import HubAccess
from enclave_hub.hub_config import seeded_registry
from enclave_hub.hub_pages import HubPages
from enclave_hub.jobs.dispatcher import Dispatcher
from enclave_hub.project_session import ProjectSession, SessionRefused
from enclave_hub.registry import api as registry_api
from enclave_hub.registry import pages as registry_pages
from enclave_hub.registry.access import RegistryHandler
from enclave_hub.registry.service import Reconciler, reconcile_on_change

TABLE = b"site,n\nleeds,12\nyork,40\n"
LIMITS = Limits(
    max_files=5, max_request_size=1024**2, check_timeout=60, check_memory=4 * 1024**3,
    reviews_required=2,
)  # fmt: skip
WAIT = 20.0  # seconds anything here may take


@pytest.fixture(scope="module")
def server():
    require_root()
    with stoppable_postgresql_server() as running:
        yield running


class Audit:
    """The audit log as the registry and the airlock write to it; `at(action, do)` runs `do`
    once, as the event of `action` is recorded (after the change, before its commit)."""

    def __init__(self):
        self.events: list[dict] = []
        self.hooks: dict[str, Callable[[], None]] = {}

    def record(self, event: dict) -> None:
        self.events.append(event)
        hook = self.hooks.pop(event["action"], None)
        if hook is not None:
            hook()

    def at(self, action: str, do: Callable[[], None]) -> None:
        self.hooks[action] = do

    def actions(self, action: str) -> list[dict]:
        return [e for e in self.events if e["action"] == action]


@pytest.fixture
def world(server, tmp_path):
    """A project on a fresh database: two researchers and two output checkers."""
    url = new_database(server.url)
    data = dataset_root(tmp_path)
    audit = Audit()
    registry = Registry(url, data, ["default"], audit.record)
    seed_study(registry)
    store = AirlockStore(tmp_path / "airlock")
    airlock = Airlock(url, store, registry, Rules(), LIMITS, audit.record)
    site = parse_site_config(
        {"state_dir": tmp_path / "state", "data_root": data, "registry": {"database_url": url}},
        "test",
    )
    yield site, registry, airlock, audit
    registry.engine.dispose()
    airlock.engine.dispose()
    if not server_is_up(server):
        server.start()


def server_is_up(server) -> bool:
    try:
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
    except OSError:
        return False
    return True


def assert_refusal(error: BaseException, registry: Registry) -> None:
    """One line, naming the database (without a password), saying it is unavailable."""
    message = str(error)
    assert "\n" not in message
    database = registry.engine.url.set(drivername="postgresql").render_as_string()
    assert message == f"Enclave's database {database} is unavailable: try again when it is back"


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"not within {WAIT} s: {what}"
        await asyncio.sleep(0.05)


# -- the engine -------------------------------------------------------------------------------


def test_a_server_that_is_not_there_is_named_without_its_password():
    url = f"postgresql+psycopg://enclave:secret@127.0.0.1:{free_port()}/registry?sslmode=prefer"
    registry = Registry(url, Path("/nonexistent"), ["default"], print)  # made at first use
    with pytest.raises(DatabaseUnavailable) as refused:
        registry.revision()
    message = str(refused.value)
    assert "secret" not in message and "sslmode" not in message
    assert "postgresql://enclave@127.0.0.1:" in message and "/registry is unavailable" in message
    assert "Connection refused" in refused.value.reason
    # What the hub's pages show of it (JupyterHub reads `jupyterhub_message`).
    assert refused.value.jupyterhub_message == message


def test_a_registry_and_an_airlock_made_during_an_outage_make_their_tables_once_it_ends(
    server, tmp_path
):
    url = new_database(server.url)
    server.stop("immediate")
    try:
        audit = Audit()
        registry = Registry(url, dataset_root(tmp_path), ["default"], audit.record)
        airlock = Airlock(
            url, AirlockStore(tmp_path / "airlock"), registry, Rules(), LIMITS, audit.record
        )
        for ask in (registry.revision, lambda: airlock.visible_to("erin")):
            with pytest.raises(DatabaseUnavailable) as refused:
                ask()
            assert_refusal(refused.value, registry)
    finally:
        server.start()
    assert registry.revision() == 0 and airlock.visible_to("erin") == []
    seed_study(registry)
    assert [p.id for p in registry.projects_of("alice")] == ["study"]
    assert submit(airlock)["status"] == IN_REVIEW
    registry.engine.dispose()
    airlock.engine.dispose()


def test_a_hub_started_during_an_outage_starts_and_seeds_at_its_next_start(
    server, tmp_path, capsys, monkeypatch
):
    url = new_database(server.url)
    site = parse_site_config(
        {
            "data_root": dataset_root(tmp_path),
            "registry": {"database_url": url},
            "projects": [{"id": "seeded", "title": "Seeded", "members": ["alice"]}],
        },
        "test",
    )
    audit = Audit()  # the registry as the hub makes it, recording here rather than to a service
    monkeypatch.setattr(
        hub_config,
        "site_registry",
        lambda site: Registry(url, site.data_root, ["default"], audit.record),
    )
    server.stop("immediate")
    try:
        seeded_registry(site).engine.dispose()
    finally:
        server.start()
    said = capsys.readouterr().out
    assert "is unavailable: try again when it is back: the seed projects are put in at the " in said
    registry = seeded_registry(site)
    assert [p.id for p in registry.projects_of("alice")] == ["seeded"]
    registry.engine.dispose()


def test_the_same_registry_refuses_while_the_server_is_down_and_works_again(server, world):
    _, registry, airlock, audit = world
    before = registry.show("study")
    server.stop("immediate")
    for ask in (
        lambda: registry.projects_of("alice"),
        lambda: registry.membership("alice", "study"),
        lambda: registry.add_member("carol", "study", "dave"),
        lambda: airlock.visible_to("erin"),
    ):
        with pytest.raises(DatabaseUnavailable) as refused:
            ask()
        assert_refusal(refused.value, registry)
    assert len(audit.actions("project.member.add")) == 4, "a refused change was recorded"
    server.start()
    # The pools' dead connections are checked and replaced: no object is made again.
    assert registry.show("study") == before
    assert [p.id for p in registry.projects_of("alice")] == ["study"]
    assert airlock.visible_to("erin") == []
    registry.add_member("carol", "study", "dave")
    assert [m["username"] for m in registry.show("study")["members"]].count("dave") == 1


def test_a_change_whose_commit_is_lost_is_not_made_and_can_be_made_again(server, world):
    _, registry, _, audit = world
    audit.at("project.member.add", lambda: server.stop("immediate"))
    with pytest.raises(DatabaseUnavailable) as refused:
        registry.add_member("carol", "study", "dave")
    assert_refusal(refused.value, registry)
    server.start()
    members = [m["username"] for m in registry.show("study")["members"]]
    assert "dave" not in members  # recorded (a record of a change that did not happen), not made
    registry.add_member("carol", "study", "dave")
    members = [m["username"] for m in registry.show("study")["members"]]
    assert members.count("dave") == 1 and {"alice", "bob", "erin", "rose"} <= set(members)


# -- the reconciler ---------------------------------------------------------------------------


class StandInHub:
    """The hub's REST API as the registry service calls it (`HubSessions`, over HTTP): its
    users' running sessions, stopping one, and `POST /enclave/access`, which re-applies every
    user's project groups with the same `HubAccess` over the same registry, as
    `hub_access.ReflectAccessHandler` does (503 when the database is unavailable). A stand-in:
    the real hub (JupyterHub with Enclave's authenticator and spawner) runs in the end-to-end
    tests only. `during_reflect` is called once, between the first user and the second."""

    def __init__(self, registry: Registry, sessions: dict[str, set[str]]):
        self.access = HubAccess(registry, frozenset(), frozenset(), frozenset())
        self.sessions = sessions
        self.groups: dict[str, list[str]] = {user: [] for user in sessions}
        self.stopped: list[tuple[str, str]] = []
        self.during_reflect: Callable[[], None] | None = None
        self.client = HubSessions("http://hub.test/hub/api", "registry-token")
        self.client.http = httpx.Client(
            base_url="http://hub.test/hub/api", transport=httpx.MockTransport(self.answer)
        )

    def answer(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/hub/api")
        if request.method == "GET" and path == "/users":
            users = [
                {
                    "name": user,
                    "servers": {
                        project: {"state": {"session_id": f"{user}-run", "datasets": []}}
                        for project in sorted(projects)
                    },
                }
                for user, projects in self.sessions.items()
            ]
            return httpx.Response(200, json=users)
        if request.method == "DELETE" and path.startswith("/users/"):
            _, _, user, _, project = path.split("/")
            self.sessions[user].discard(project)
            self.stopped.append((user, project))
            return httpx.Response(204)
        if request.method == "POST" and path == REFLECT_ACCESS_PATH:
            changed = []
            for number, user in enumerate(sorted(self.groups)):
                if number == 1 and self.during_reflect is not None:
                    hook, self.during_reflect = self.during_reflect, None
                    hook()
                try:
                    model = self.access.model(user, self.groups[user])
                except DatabaseUnavailable as error:
                    return httpx.Response(503, json={"status": 503, "message": str(error)})
                if model["groups"] != self.groups[user]:
                    self.groups[user] = model["groups"]
                    changed.append(user)
            return httpx.Response(200, json={"changed": changed})
        return httpx.Response(404)


def test_a_reconcile_pass_cut_short_by_an_outage_is_made_again(server, world, capsys):
    _, registry, _, audit = world
    hub = StandInHub(registry, {"alice": {"study"}, "bob": {"study"}})
    reconciler = Reconciler(registry, hub.client)

    async def scenario() -> None:
        stopped = asyncio.Event()
        loop = asyncio.create_task(reconcile_on_change(reconciler, 3600, stopped, check_every=0.05))
        await until(lambda: hub.groups["bob"] == ["project-study"], "the first pass")
        # Bob's membership ends; the pass that follows loses the database as it reflects it.
        hub.during_reflect = lambda: server.stop("immediate")
        await asyncio.to_thread(registry.remove_member, "carol", "study", "bob")
        await until(lambda: reconciler.outage.since is not None, "the outage is noticed")
        # Half done meanwhile: the session is stopped (and recorded), the groups not yet.
        assert hub.stopped == [("bob", "study")]
        assert hub.groups == {"alice": ["project-study"], "bob": ["project-study"]}
        await asyncio.sleep(0.5)  # the loop keeps trying, and says nothing more
        assert not loop.done()
        await asyncio.to_thread(server.start)
        await until(lambda: hub.groups["bob"] == [], "the pass is made again")
        await until(lambda: reconciler.outage.since is None, "the database is back")
        stopped.set()
        await asyncio.wait_for(loop, WAIT)

    asyncio.run(scenario())
    assert hub.groups == {"alice": ["project-study"], "bob": []}
    assert hub.stopped == [("bob", "study")]
    revoked = audit.actions("session.revoke")
    assert [(e["target"], e["session"]) for e in revoked] == [("bob/study", "bob-run")]
    assert [p.id for p in registry.projects_of("alice")] == ["study"]
    assert registry.projects_of("bob") == []
    said = capsys.readouterr().out.splitlines()
    unavailable = [line for line in said if "is unavailable" in line]
    assert len(unavailable) == 1, said
    assert unavailable[0].startswith("The registry service: postgresql://enclave@127.0.0.1:")
    assert unavailable[0].endswith("), will try again")
    assert len([line for line in said if "the database is back" in line]) == 1, said


# -- the airlock ------------------------------------------------------------------------------


def submit(airlock: Airlock) -> dict:
    return airlock.submit(
        Submission(
            requester="alice",
            project="study",
            justification="Counts of patients per site for the paper's table 1",
            uploads=[Upload("table.csv", "output", io.BytesIO(TABLE))],
            session="run-1",
        )
    )


def outbox_files(store: AirlockStore) -> list[str]:
    return sorted(str(p.relative_to(store.outboxes)) for p in store.outboxes.rglob("*"))


def test_a_review_whose_commit_is_lost_releases_nothing_until_it_is_made_again(server, world):
    _, registry, airlock, audit = world
    request = submit(airlock)["id"]
    airlock.review("erin", request, "approve")
    # Rose's approval releases: the server stops as the release is recorded, before its commit.
    audit.at("airlock.release", lambda: server.stop("immediate"))
    with pytest.raises(DatabaseUnavailable) as refused:
        airlock.review("rose", request, "approve")
    assert_refusal(refused.value, registry)
    assert outbox_files(airlock.store) == ["alice"], "a release left files behind"
    with pytest.raises(DatabaseUnavailable):
        airlock.show("rose", request)
    server.start()
    # As before the review: in review, with Erin's approval alone.
    shown = airlock.show("rose", request)
    assert shown["status"] == IN_REVIEW and shown["release_record"] is None
    assert [(r["reviewer"], r["decision"]) for r in shown["reviews"]] == [("erin", "approve")]
    # Made again, it releases once.
    released = airlock.review("rose", request, "approve")
    assert released["status"] == RELEASED
    assert [r["reviewer"] for r in released["reviews"]] == ["erin", "rose"]
    folder = f"alice/{request}"
    assert outbox_files(airlock.store) == [
        "alice",
        folder,
        f"{folder}/release.json",
        f"{folder}/table.csv",
    ]
    assert airlock.released_file("alice", request, "table.csv").read_bytes() == TABLE
    # The lost commit's record stays (a record of a change that did not happen); the
    # release's own is there once more.
    assert len(audit.actions("airlock.release")) == 2


def test_a_release_whose_answer_was_lost_gets_its_outbox_back(world):
    _, _, airlock, _ = world
    request = submit(airlock)["id"]
    airlock.review("erin", request, "approve")
    airlock.review("rose", request, "approve")
    # The commit reached the database but its answer did not: the outbox was withdrawn.
    airlock.store.withdraw("alice", request)
    assert airlock.released_file("alice", request, "table.csv").read_bytes() == TABLE
    record = json.loads(airlock.released_file("alice", request, "release.json").read_text())
    assert [f["name"] for f in record["files"]] == ["table.csv"]


# -- over HTTP: the registry's API and pages, the airlock's API -------------------------------


class RevisionProbe(JSONAPI, RegistryHandler):
    """A handler that asks the registry without `registry_refusals`: any handler of a service
    answers 503 with the message all the same."""

    @web.authenticated
    def get(self) -> None:
        self.finish({"revision": self.registry.revision()})


def person(name: str, groups: list[str]) -> Callable:
    def current_user(handler) -> dict:
        return {"kind": "user", "name": name, "groups": groups, "scopes": []}

    return current_user


@contextlib.asynccontextmanager
async def serving(app):
    port = free_port()
    http = httpserver.HTTPServer(app)
    http.listen(port, address="127.0.0.1")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as client:
            yield client
    finally:
        http.stop()


def test_the_apis_and_pages_answer_503_with_the_message(server, world, monkeypatch):
    site, registry, airlock, audit = world
    hub = StandInHub(registry, {"alice": {"study"}})
    reconciler = Reconciler(registry, hub.client)
    registry_app = service_app(
        site,
        REGISTRY,
        "registry-token",
        [
            (f"{REGISTRY.prefix}probe", RevisionProbe),
            *registry_api.api_handlers(REGISTRY.prefix),
            *registry_pages.page_handlers(REGISTRY.prefix),
        ],
        registry=registry,
        reconciler=reconciler,
        xsrf_cookies=True,
    )
    airlock_app = service_app(
        site, AIRLOCK, "airlock-token", airlock_api.api_handlers(AIRLOCK.prefix), airlock=airlock
    )
    request = submit(airlock)["id"]
    members = f"{REGISTRY.prefix}api/projects/study/members"
    token = {"Authorization": "token an-admins-token"}

    async def scenario() -> None:
        async with serving(registry_app) as registry_http, serving(airlock_app) as airlock_http:
            monkeypatch.setattr(HubAuthenticated, "get_current_user", person("carol", ["admins"]))
            await asyncio.to_thread(server.stop, "immediate")
            answer = await registry_http.post(members, json={"username": "dave"}, headers=token)
            assert answer.status_code == 503
            assert_refusal(Exception(answer.json()["error"]), registry)
            answer = await registry_http.get(f"{REGISTRY.prefix}probe", headers=token)
            assert answer.status_code == 503
            assert_refusal(Exception(answer.json()["error"]), registry)
            page = await registry_http.get(f"{REGISTRY.prefix}projects/study")
            assert page.status_code == 503
            assert "That cannot be done for the moment" in page.text
            assert "nav" in page.text and "enclave-frame" in page.text  # the product's frame
            assert "unavailable: try again when it is back" in page.text
            assert "Traceback" not in page.text
            monkeypatch.setattr(HubAuthenticated, "get_current_user", person("erin", []))
            review = f"{AIRLOCK.prefix}api/requests/{request}/reviews"
            answer = await airlock_http.post(review, json={"decision": "approve"}, headers=token)
            assert answer.status_code == 503
            assert_refusal(Exception(answer.json()["error"]), registry)

            await asyncio.to_thread(server.start)
            answer = await airlock_http.post(review, json={"decision": "approve"}, headers=token)
            assert answer.status_code == 201 and answer.json()["status"] == IN_REVIEW
            monkeypatch.setattr(HubAuthenticated, "get_current_user", person("carol", ["admins"]))
            answer = await registry_http.post(members, json={"username": "dave"}, headers=token)
            assert answer.status_code == 201
            assert [m["username"] for m in answer.json()["members"]].count("dave") == 1

    asyncio.run(scenario())
    assert len(audit.actions("project.member.add")) == 5  # four in the world, and dave's
    assert hub.groups == {"alice": ["project-study"]}  # the change was reconciled


# -- the hub ----------------------------------------------------------------------------------


class Starting(ProjectSession):
    """What a spawner asks the registry as Alice starts a session of project 'study' (the rest
    of the spawner, and the hub, run in the end-to-end tests)."""

    user = SimpleNamespace(name="alice")
    name = "study"
    handler = None


def test_the_hub_refuses_session_starts_and_sign_ins_and_says_why_at_home(server, world):
    site, registry, _, _ = world
    access = HubAccess(registry, frozenset(), frozenset(), frozenset())
    alice = SimpleNamespace(name="alice", groups=[])
    assert Starting(registry=registry)._check_project().id == "study"
    server.stop("immediate")
    with pytest.raises(SessionRefused) as refused:
        Starting(registry=registry)._check_project()
    assert refused.value.status_code == 503
    shown = refused.value.jupyterhub_message
    assert shown.startswith("The session was not started: Enclave's database ")
    assert_refusal(Exception(shown.split(": ", 1)[1].removesuffix(".")), registry)
    with pytest.raises(web.HTTPError) as refused:
        EnclaveAuthenticator.with_project_access(SimpleNamespace(access=access), {"name": "alice"})
    assert refused.value.status_code == 503
    home = HubPages(site, registry, "airlock-token").home(alice)
    assert home.projects == [] and home.desk is None
    assert_refusal(Exception(home.unavailable), registry)
    server.start()
    assert Starting(registry=registry)._check_project().id == "study"
    assert [p.id for p in HubPages(site, registry, "airlock-token").home(alice).projects] == [
        "study"
    ]


# -- the job service --------------------------------------------------------------------------


class LostAnswers:
    """A launcher each of whose starts the database takes but whose answer is lost (what
    `JobLauncher` sees when `book.started` commits and then fails: it removes the sandbox and
    passes the error on), so that nothing runs. Sandboxes are in test_e2e_jobs."""

    def __init__(self, book: JobBook):
        self.book = book

    def remove_leftovers(self) -> list[int]:
        return []

    async def launch(self, start, project, job):
        await asyncio.to_thread(self.book.started, start.job_id, start.gpus, 7)
        raise DatabaseUnavailable("postgresql://enclave@db/enclave", "the answer was lost")


def test_the_job_service_waits_out_an_outage_and_fails_a_start_it_never_heard_of(
    server, world, caplog
):
    _, registry, _, _ = world
    book = JobBook(registry, JobSettings(), {"default": Profile()}, gpu_pool=[])
    settings = SimpleNamespace(jobs=JobSettings(check_interval=0.05))
    dispatcher = Dispatcher(settings, registry, book, LostAnswers(book))
    caplog.set_level("INFO", "enclave.jobs")

    async def scenario() -> None:
        server.stop("immediate")
        loop = asyncio.create_task(dispatcher.run())  # its recovery waits for the database
        await until(lambda: dispatcher.outage.since is not None, "the outage is noticed")
        await asyncio.sleep(0.5)
        await asyncio.to_thread(server.start)
        await until(lambda: dispatcher.outage.since is None, "the database is back")
        job = await asyncio.to_thread(
            book.submit, JobSubmission("alice", "study", "run.py", b"print(1)")
        )
        await until(lambda: book.show(job["id"])["status"] == FAILED, "the lost start ends")
        assert not loop.done()
        loop.cancel()

    asyncio.run(scenario())
    said = [r.message for r in caplog.records if r.message.startswith("The job service: ")]
    assert len(said) == 2, said
    assert said[0].startswith("The job service: postgresql://enclave@127.0.0.1:")
    assert said[0].endswith("), will try again")
    assert said[1].startswith("The job service: the database is back after ")
    ended = book.jobs_of("study")
    assert [(j["status"], j["reason"]) for j in ended] == [
        (FAILED, "its start was not confirmed by the database, so it did not run")
    ]
