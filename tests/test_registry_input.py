"""Input checking of the registry: every bad id, username, date and dataset reference is
refused with a message that names it, and nothing is created or recorded."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from enclave.catalog import CatalogError, check_id
from enclave_hub.audit import AuditLog
from enclave_hub.audit.query import records
from enclave_hub.core.registry import Registry, RegistryError
from enclave_hub.core.validation import InvalidInput


@pytest.fixture
def world(tmp_path, database_url):
    """A registry whose changes go to a real audit log; a data root with two datasets."""
    data = tmp_path / "site" / "data"
    for dataset in ("proj", "proj-secret"):
        (data / dataset).mkdir(parents=True)
    # Beside the data root, with the data root's name as its prefix.
    (tmp_path / "site" / "data-secret").mkdir()
    (data / "leak").symlink_to(tmp_path / "site" / "data-secret")
    log = AuditLog(tmp_path / "audit", tmp_path / "signing.key", interval=3600)
    registry = Registry(database_url, data, ["default", "small"], log.append)
    yield registry, tmp_path / "audit"
    log.close()


@pytest.fixture
def project(world):
    registry, _ = world
    registry.create_project("carol", "proj", "A project")
    return registry


def _recorded(folder) -> list[str]:
    return [r["action"] for r in records(folder)]


TRAILING = ("\n", "\r", "\r\n", "\x00", " ", "\t")
LOOK_ALIKES_OF = {
    "proj": ("\u0440roj", "pr\u043ej", "\uff50\uff52\uff4f\uff4a", "proj\u200b"),
    "alice": ("\u0430lice", "\uff41\uff4c\uff49\uff43\uff45", "al\u0456ce", "alice\u200b"),
}
BAD_IDS = [
    *(f"proj{end}" for end in TRAILING),  # ids are matched whole
    *LOOK_ALIKES_OF["proj"],  # Cyrillic r and o, fullwidth letters, a zero-width space
    "../x",
    "/etc",
    "x/../y",
    "Upper",
    "a b",
    "x%2fy",
    "%2e%2e%2fx",
    "..%2fx",
    "x\x00y",
    "x\\y",
    "-leading",
    "a" * 64,
    "",
]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_a_bad_project_id_is_refused_and_nothing_is_created(world, bad):
    registry, log = world
    with pytest.raises(InvalidInput, match=r"project id .* is not valid"):
        registry.create_project("carol", bad, "Title")
    assert registry.list_projects() == []
    assert _recorded(log) == []


@pytest.mark.parametrize("bad", [*BAD_IDS, "missing", "proj-secretx"])
def test_a_bad_dataset_reference_is_refused_and_nothing_is_granted(project, bad):
    with pytest.raises(InvalidInput, match="dataset"):
        project.grant("carol", "proj", bad)
    assert project.show("proj")["datasets"] == []


def test_a_link_to_a_sibling_of_the_data_root_with_its_prefix_is_refused(project):
    with pytest.raises(InvalidInput, match="'leak' resolves outside the data root"):
        project.grant("carol", "proj", "leak")


def test_a_grant_names_one_dataset_exactly_not_its_prefix_siblings(project):
    project.grant("carol", "proj", "proj")
    project.add_member("carol", "proj", "alice")
    assert project.membership("alice", "proj").datasets == ("proj",)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("alice", "Alice"),
        ("alice", "ALICE"),
    ],
)
def test_usernames_are_lower_cased_and_collisions_are_refused(project, first, second):
    project.add_member("carol", "proj", first)
    with pytest.raises(RegistryError, match="already a member"):
        project.add_member("carol", "proj", second)
    assert [m["username"] for m in project.show("proj")["members"]] == [first]


@pytest.mark.parametrize(
    "bad",
    [
        "al/ice",
        "al ice",
        "",
        "bob\x00",
        "../bob",
        "b" * 65,
        *(f"alice{end}" for end in TRAILING),
        *LOOK_ALIKES_OF["alice"],
        " alice",
        "\ufb01ona",  # the fi ligature
    ],
)
def test_a_bad_username_is_refused_not_folded(project, bad):
    with pytest.raises(InvalidInput, match="username"):
        project.add_member("carol", "proj", bad)
    assert project.show("proj")["members"] == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda r: r.create_project("c", "p2", "T", starts="2026-13-01"), "not a date"),
        (
            lambda r: r.create_project("c", "p2", "T", starts="2027-01-02", ends="2027-01-01"),
            "is before start date",
        ),
        (lambda r: r.create_project("c", "p2", "T", profile="huge"), "profile 'huge'"),
        (lambda r: r.create_project("c", "p2", " "), "a title is required"),
        (lambda r: r.create_project("c", "p2", "T", egress_allow=["nohost"]), "not host:port"),
        (lambda r: r.add_member("c", "proj", "dan", expires="next week"), "not an ISO 8601"),
        (lambda r: r.add_member("c", "proj", "dan", role="owner"), "role 'owner'"),
    ],
)
def test_bad_dates_profiles_and_roles_are_named(project, change, named):
    with pytest.raises(InvalidInput, match=named):
        change(project)
    assert [p["id"] for p in project.list_projects()] == ["proj"]
    assert project.show("proj")["members"] == []


def test_every_change_is_recorded_with_who_made_it(world):
    registry, log = world
    registry.create_project("carol", "proj", "A project")
    registry.add_member("carol", "proj", "Alice", expires="2030-01-01")
    registry.grant("carol", "proj", "proj")
    registry.revoke("dave", "proj", "proj")
    registry.set_status("carol", "proj", "suspended")
    found = [(r["actor"], r["action"]) for r in records(log)]
    assert found == [
        ("carol", "project.create"),
        ("carol", "project.member.add"),
        ("carol", "project.dataset.grant"),
        ("dave", "project.dataset.revoke"),
        ("carol", "project.suspended"),
    ]
    assert registry.revision() == 5, "each change moves the revision the reconciler watches"


def test_what_is_in_force_follows_expiry_and_status(project):
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    project.add_member("carol", "proj", "alice", expires=soon)
    project.grant("carol", "proj", "proj", expires=soon)
    assert project.membership("alice", "proj").datasets == ("proj",)
    later = datetime.now(UTC) + timedelta(hours=2)
    assert project.membership("alice", "proj", now=later) is None
    project.set_status("carol", "proj", "suspended")
    assert project.membership("alice", "proj") is None
    project.set_status("carol", "proj", "archived")
    with pytest.raises(RegistryError, match="archived; it cannot be reopened"):
        project.set_status("carol", "proj", "active")


def test_the_command_line_names_a_bad_id_and_exits_2(tmp_path):
    config = tmp_path / "enclave.yaml"
    (tmp_path / "state").mkdir()
    config.write_text(f"state_dir: {tmp_path / 'state'}\ndata_root: {tmp_path / 'data'}\n")
    command = [sys.executable, "-m", "enclave_hub.cli", "project", "create", "../x"]
    result = subprocess.run(
        [*command, "--title", "T", "--config", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "project id '../x' is not valid" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_command_line_names_a_registry_it_cannot_open(tmp_path):
    config = tmp_path / "enclave.yaml"
    config.write_text(f"state_dir: {tmp_path / 'absent'}\ndata_root: {tmp_path / 'data'}\n")
    command = [sys.executable, "-m", "enclave_hub.cli", "project", "list"]
    result = subprocess.run([*command, "--config", str(config)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "cannot open the project registry" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("bad", BAD_IDS)
def test_the_library_refuses_the_same_dataset_and_object_ids(bad):
    for what in ("dataset", "object"):
        with pytest.raises(CatalogError, match=f"{what} .* is not valid"):
            check_id(bad, what)
