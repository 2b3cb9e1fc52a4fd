"""`enclave backup` and `enclave restore` on a real deployment's state: a registry (SQLite and
PostgreSQL) with projects, members and grants, a signed and witnessed audit log, an airlock
release, the hub's database with a session, the secrets and keys. Restored into a fresh state
folder, as on a new machine, everything is there and the log verifies against the pinned key."""

from __future__ import annotations

import base64
import io
import json
import sqlite3
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from jupyterhub import orm
from postgres_harness import new_database
from sqlalchemy import create_engine, inspect, select
from study_world import dataset_root, seed_study

from enclave.pseudonyms import load_key
from enclave_hub.airlock.checks import Rules
from enclave_hub.airlock.exports import Airlock, Limits, Submission, Upload
from enclave_hub.airlock.store import AirlockStore
from enclave_hub.audit import AuditLog
from enclave_hub.audit.store import frame, segments
from enclave_hub.audit.verify import verify_log
from enclave_hub.backup.database import known_tables
from enclave_hub.cli import main
from enclave_hub.core.audit_key import key_fingerprint, load_or_create_signing_key
from enclave_hub.core.project_groups import ProjectGroups
from enclave_hub.core.registry import Registry, aware
from enclave_hub.core.site_config import (
    SiteConfig,
    load_site_config,
    parse_site_config,
    write_site_config,
)
from enclave_hub.core.site_secrets import SECRET_NAMES, ensure_secrets
from enclave_hub.local.hub_files import hub_paths

PASSPHRASE = "correct horse battery staple\n"
TABLE = b"site,n\nleeds,12\nyork,40\n"
LIMITS = Limits(
    max_files=5, max_request_size=1024**2, check_timeout=60, check_memory=4 * 1024**3,
    reviews_required=2,
)  # fmt: skip
KEY_FOLDERS = ("secrets", "audit-key", "deid-keys")


@dataclass
class Deployment:
    config: Path
    site: SiteConfig
    log: AuditLog
    data: Path
    running: bool = True

    def stop(self) -> None:
        """Stop its audit log (as the audit service does when Enclave stops)."""
        if self.running:
            self.log.close()
            self.running = False


@pytest.fixture
def deployments():
    """Builds deployments; closes their logs at the end."""
    made: list[Deployment] = []

    def make(tmp_path: Path, url: str | None = None, interval: float = 3600) -> Deployment:
        made.append(build(tmp_path, url, interval))
        return made[-1]

    yield make
    for deployment in made:
        deployment.stop()


def build(tmp_path: Path, url: str | None, interval: float) -> Deployment:
    """A running deployment's state, made by the project's own code."""
    state, data = tmp_path / "state", dataset_root(tmp_path)
    key = load_or_create_signing_key(state / "audit-key" / "signing.key")
    pinned = key_fingerprint(key.public_key())
    settings = {
        "state_dir": str(state),
        "data_root": str(data),
        "audit": {"key_fingerprint": pinned, "witness_dir": str(tmp_path / "witness")},
        "registry": {"database_url": url} if url else {},
    }
    site = parse_site_config(settings, "test")
    config = tmp_path / "site.yaml"
    write_site_config(site, config)
    ensure_secrets(state)
    load_key(state / "deid-keys" / "commons.key")
    ProjectGroups(state, site.sessions.gid_base).gid("study")
    log = AuditLog(
        site.audit_dir, site.audit_key_path, interval, pinned=pinned, witness=site.audit.witness_dir
    )
    registry = Registry(site.registry_url, data, ["default"], log.append)
    seed_study(registry)
    registry.create_project("carol", "pilot", "A pilot")
    registry.add_member("carol", "pilot", "alice")
    airlock = Airlock(
        site.registry_url, AirlockStore(site.airlock_dir), registry, Rules(), LIMITS, log.append
    )
    released = _submit(airlock, ("results/by_site.csv", TABLE), ("manifest.json", b"{}"))
    for checker in ("erin", "rose"):  # manifest.json: a name the backup's own file has too
        airlock.review(checker, released["id"], "approve", "a list of the tables, no data")
    _submit(airlock, ("later.csv", TABLE))  # still in review: no outbox
    hub = orm.new_session_factory(f"sqlite:///{hub_paths(site)['database']}")()
    for name in ("alice", "bob"):
        hub.add(orm.User(name=name))
    hub.commit()
    alice = hub.query(orm.User).filter_by(name="alice").one()
    session = orm.Spawner(user=alice, name="study", server=orm.Server(), state={"sandbox": 3})
    hub.add(session)
    hub.commit()
    hub.close()
    log.append({"actor": "alice", "action": "session.start", "project": "study", "session": "s1"})
    log.append({"actor": "alice", "action": "cell.execute", "project": "study", "code": "1 + 1"})
    log.checkpoint()
    return Deployment(config, site, log, data)


def _submit(airlock: Airlock, *files: tuple[str, bytes]) -> dict:
    return airlock.submit(
        Submission(
            requester="alice",
            project="study",
            justification="Counts of patients per site for the paper's table 1",
            uploads=[Upload(name, "output", io.BytesIO(content)) for name, content in files],
            session="s1",
            environment={"python": "3.11"},
        )
    )


def enclave(capsys, *argv) -> tuple[int, str, str]:
    """`enclave ARGV...` in this process: its exit status, its output and its errors."""
    capsys.readouterr()  # what building the deployment printed
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def passphrase(tmp_path) -> Path:
    path = tmp_path / "passphrase"
    path.write_text(PASSPHRASE)
    return path


def table_rows(url: str) -> dict[str, list[tuple]]:
    """Every row of every table of the deployment's database (times in UTC, as stored)."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            present = set(inspect(connection).get_table_names())
            return {
                table.name: [
                    tuple(aware(v) if isinstance(v, datetime) else v for v in row)
                    for row in connection.execute(select(table).order_by(*table.primary_key))
                ]
                for table in known_tables()
                if table.name in present
            }
    finally:
        engine.dispose()


def hub_rows(database: Path) -> list[str]:
    connection = sqlite3.connect(database)
    try:
        return list(connection.iterdump())
    finally:
        connection.close()


def key_files(state: Path) -> dict[str, bytes]:
    return {
        path.relative_to(state).as_posix(): path.read_bytes()
        for folder in KEY_FOLDERS
        for path in sorted((state / folder).rglob("*"))
        if path.is_file()
    }


def everything_in(folder: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file())


def records(deployment: Deployment) -> int:
    verdict = verify_log(deployment.site.audit_dir, deployment.site.audit.key_fingerprint)
    assert verdict.ok, verdict.reason
    return verdict.records


# -- a whole deployment, backed up and restored ---------------------------------------------


def test_a_restored_deployment_holds_everything_and_its_log_verifies(
    tmp_path, database_url, deployments, passphrase, capsys, request
):
    old = deployments(tmp_path / "old", database_url)
    backup, new = tmp_path / "backup", tmp_path / "new-state"
    code, out, err = enclave(
        capsys, "backup", backup, "--config", old.config, "--keys", "encrypt",
        "--passphrase-file", passphrase,
    )  # fmt: skip
    assert code == 0, err
    assert f"Backup written to {backup}" in out
    target = []
    if database_url.startswith("postgresql"):
        target = ["--database-url", new_database(request.getfixturevalue("postgresql"))]
    code, out, err = enclave(
        capsys, "restore", backup, "--state-dir", new, "--passphrase-file", passphrase, *target
    )
    assert code == 0, err
    pinned = old.site.audit.key_fingerprint
    assert "projects 2, members 5, grants 1, releases 1" in out
    assert f"(verified against {pinned})" in out
    assert "witness" in out  # the old witness is not carried over, and the operator is told

    restored = load_site_config(new / "enclave.yaml")
    assert restored.state_dir == new
    assert restored.audit.key_fingerprint == pinned
    assert restored.audit.witness_dir is None and restored.audit_dir == new / "audit"
    assert restored.airlock_dir == new / "airlock"
    if target:
        assert restored.registry_url == target[1]
    else:
        assert restored.registry_url == f"sqlite:///{new / 'registry.sqlite'}"

    # The database row by row, the hub's database, the project groups, every key.
    assert table_rows(restored.registry_url) == table_rows(old.site.registry_url)
    assert hub_rows(hub_paths(restored)["database"]) == hub_rows(hub_paths(old.site)["database"])
    groups = "project-groups.json"
    assert (new / groups).read_bytes() == (old.site.state_dir / groups).read_bytes()
    assert key_files(new) == key_files(old.site.state_dir)
    assert len(key_files(new)) == len(SECRET_NAMES) + 2  # the signing key, the commons' key

    # The log: every record, verified against the pinned key, also by `enclave audit verify`.
    verdict = verify_log(restored.audit_dir, pinned)
    assert verdict.ok and verdict.records == records(old)
    command = [sys.executable, "-m", "enclave_hub.cli", "audit", "verify", "--config"]
    result = subprocess.run([*command, str(new / "enclave.yaml")], capture_output=True, text=True)
    assert result.returncode == 0 and json.loads(result.stdout)["ok"], result.stdout

    # The restored deployment runs: its log opens with its key and takes events, its registry
    # takes changes (PostgreSQL's sequences moved past the restored rows), its release is there.
    log = AuditLog(restored.audit_dir, restored.audit_key_path, 3600, pinned=pinned)
    registry = Registry(restored.registry_url, old.data, ["default"], log.append)
    registry.add_member("carol", "pilot", "bob")
    airlock = Airlock(
        restored.registry_url, AirlockStore(restored.airlock_dir), registry, Rules(), LIMITS,
        log.append,
    )  # fmt: skip
    released = airlock.visible_to("alice")[-1]
    assert released["status"] == "released"
    path = airlock.released_file("alice", released["id"], "results/by_site.csv")
    assert path.read_bytes() == TABLE
    assert airlock.released_file("alice", released["id"], "manifest.json").read_bytes() == b"{}"
    registry.engine.dispose()
    airlock.engine.dispose()
    log.close()
    assert verify_log(restored.audit_dir, pinned).ok


def test_a_backup_moves_between_sqlite_and_postgresql(tmp_path, deployments, postgresql, capsys):
    """SQLite's backup restored into PostgreSQL, and that deployment's backup into SQLite."""
    old = deployments(tmp_path / "old")
    rows, config = table_rows(old.site.registry_url), old.config
    for backup, state, target in [
        (tmp_path / "from-sqlite", tmp_path / "on-postgresql", new_database(postgresql)),
        (tmp_path / "from-postgresql", tmp_path / "on-sqlite", None),
    ]:
        code, _, err = enclave(capsys, "backup", backup, "--config", config, "--keys", "omit")
        assert code == 0, err
        options = ["--database-url", target] if target else []
        code, _, err = enclave(capsys, "restore", backup, "--state-dir", state, *options)
        assert code == 0, err
        config = state / "enclave.yaml"
        restored = load_site_config(config).registry_url
        assert restored == (target or f"sqlite:///{state / 'registry.sqlite'}")
        assert table_rows(restored) == rows
    again = tmp_path / "again"
    url = load_site_config(tmp_path / "on-postgresql" / "enclave.yaml").registry_url
    code, _, err = enclave(capsys, "restore", backup, "--state-dir", again, "--database-url", url)
    assert code == 2 and "already holds Enclave's tables (access_applications, " in err
    assert not again.exists()


# -- the keys ---------------------------------------------------------------------------------


def test_encrypted_keys_are_not_in_the_backup_in_clear_and_need_the_passphrase(
    tmp_path, deployments, passphrase, capsys
):
    old = deployments(tmp_path / "old")
    backup = tmp_path / "backup"
    code, _, err = enclave(
        capsys, "backup", backup, "--config", old.config, "--keys", "encrypt",
        "--passphrase-file", passphrase,
    )  # fmt: skip
    assert code == 0, err
    held = everything_in(backup)
    for name, data in key_files(old.site.state_dir).items():
        lines = [line for line in data.splitlines() if len(line) > 20] or [data]
        for form in (data, data.strip(), base64.b64encode(data), *lines):
            assert form not in held, f"{name} is in the backup in clear"
    assert (backup / "keys.sealed").is_file()

    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase at all\n")
    new = tmp_path / "new-state"
    code, _, err = enclave(
        capsys, "restore", backup, "--state-dir", new, "--passphrase-file", wrong
    )
    assert code == 2
    assert err == (
        f"enclave: {backup / 'keys.sealed'}: the passphrase does not open it (a wrong "
        "passphrase, or a changed file)\n"
    )
    assert not new.exists() and list(tmp_path.glob(".new-state*")) == []
    code, _, err = enclave(capsys, "restore", backup, "--state-dir", new)
    assert code == 2 and "encrypted: give --passphrase-file" in err

    code, _, err = enclave(
        capsys, "restore", backup, "--state-dir", new, "--passphrase-file", passphrase
    )
    assert code == 0, err
    assert key_files(new) == key_files(old.site.state_dir)


def test_keys_left_out_are_not_in_the_backup_and_the_restore_names_them(
    tmp_path, deployments, capsys
):
    old = deployments(tmp_path / "old")
    backup, new = tmp_path / "backup", tmp_path / "new-state"
    backup.mkdir()  # an empty folder will do
    code, out, err = enclave(capsys, "backup", backup, "--config", old.config, "--keys", "omit")
    assert code == 0, err
    assert not (backup / "keys.sealed").exists()
    held = everything_in(backup)
    assert all(data.strip() not in held for data in key_files(old.site.state_dir).values())

    code, out, err = enclave(capsys, "restore", backup, "--state-dir", new)
    assert code == 0, err
    assert "put them back before `enclave up`" in out
    for folder in KEY_FOLDERS:
        names = sorted(p.name for p in (old.site.state_dir / folder).iterdir())
        assert f"{new / folder}/: {', '.join(names)}  (" in out
    assert key_files(new) == {}
    assert verify_log(new / "audit", old.site.audit.key_fingerprint).ok
    assert "projects 2, members 5, grants 1, releases 1" in out


def test_the_operator_must_choose_what_becomes_of_the_keys(tmp_path, deployments, capsys):
    old = deployments(tmp_path / "old")
    backup = tmp_path / "backup"
    with pytest.raises(SystemExit):
        main(["backup", str(backup), "--config", str(old.config)])
    assert "--keys" in capsys.readouterr().err
    code, _, err = enclave(capsys, "backup", backup, "--config", old.config, "--keys", "encrypt")
    assert (code, err) == (2, "enclave: --keys encrypt needs --passphrase-file FILE\n")
    short = tmp_path / "short"
    short.write_text("secret\n")
    code, _, err = enclave(
        capsys, "backup", backup, "--config", old.config, "--keys", "encrypt",
        "--passphrase-file", short,
    )  # fmt: skip
    assert code == 2 and f"--passphrase-file {short}: the passphrase must be 12" in err
    assert not backup.exists()


# -- a log that grows while it is copied --------------------------------------------------------


def test_a_backup_taken_while_events_keep_coming_verifies_and_restores(
    tmp_path, deployments, capsys
):
    old = deployments(tmp_path / "old", interval=0.01)  # checkpoints signed all the time too
    stop, appended = threading.Event(), []

    def keep_appending() -> None:
        while not stop.is_set():
            appended.append(old.log.append({"actor": "bob", "action": "cell.execute"}))

    writer = threading.Thread(target=keep_appending)
    writer.start()
    try:
        while len(appended) < 200:
            stop.wait(0.01)
        sizes = []
        for number in range(3):
            backup = tmp_path / f"backup-{number}"
            code, _, err = enclave(
                capsys, "backup", backup, "--config", old.config, "--keys", "omit"
            )
            assert code == 0, err
            manifest = json.loads((backup / "manifest.json").read_text())
            sizes.append(manifest["audit"]["records"])
            assert manifest["audit"]["last_checkpoint"]["size"] <= sizes[-1]
    finally:
        stop.set()
        writer.join()
    old.stop()
    final = records(old)
    assert sizes == sorted(sizes) and sizes[-1] < final  # the log grew all along

    new = tmp_path / "new-state"
    code, _, err = enclave(capsys, "restore", tmp_path / "backup-2", "--state-dir", new)
    assert code == 0, err
    verdict = verify_log(new / "audit", old.site.audit.key_fingerprint)
    assert verdict.ok and verdict.records == sizes[-1]


def test_a_frame_half_written_is_cut_from_the_copy_and_left_in_the_log(
    tmp_path, deployments, capsys
):
    old = deployments(tmp_path / "old")
    old.stop()
    segment = segments(old.site.audit_dir)[-1]
    whole = segment.read_bytes()
    half = frame(b'{"action":"cell.execute","actor":"bob"}')[:20]
    with segment.open("ab") as out:
        out.write(half)
    backup = tmp_path / "backup"
    code, _, err = enclave(capsys, "backup", backup, "--config", old.config, "--keys", "omit")
    assert code == 0, err
    assert (backup / "audit" / segment.name).read_bytes() == whole
    assert segment.read_bytes() == whole + half


def test_a_log_that_does_not_verify_is_not_backed_up(tmp_path, deployments, capsys):
    old = deployments(tmp_path / "old")
    old.stop()
    segment = segments(old.site.audit_dir)[0]
    damaged = bytearray(segment.read_bytes())
    damaged[40] ^= 0x01  # inside the first record, whose frame is whole
    segment.write_bytes(bytes(damaged))
    backup = tmp_path / "backup"
    code, _, err = enclave(capsys, "backup", backup, "--config", old.config, "--keys", "omit")
    assert code == 2
    assert "does not verify against the pinned key" in err and "record 0 is damaged" in err
    assert err.count("\n") == 1
    assert not backup.exists() and list(tmp_path.glob(".backup*")) == []


# -- damaged backups and occupied folders -------------------------------------------------------


@pytest.mark.parametrize("damaged", ["registry.jsonl", "audit", "hub.sqlite", "manifest.json"])
def test_a_damaged_backup_is_named_and_nothing_is_restored(tmp_path, deployments, capsys, damaged):
    old = deployments(tmp_path / "old")
    backup, new = tmp_path / "backup", tmp_path / "new-state"
    code, _, err = enclave(capsys, "backup", backup, "--config", old.config, "--keys", "omit")
    assert code == 0, err
    path = backup / damaged
    if path.is_dir():
        path = segments(path)[0]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x20
    path.write_bytes(bytes(data))
    code, out, err = enclave(capsys, "restore", backup, "--state-dir", new)
    assert code == 2 and out == ""
    assert err.startswith(f"enclave: {path}") and err.count("\n") == 1
    assert not new.exists() and list(tmp_path.glob(".new-state*")) == []


def test_no_restore_into_a_state_folder_that_is_not_empty(tmp_path, deployments, capsys):
    old = deployments(tmp_path / "old")
    backup, new = tmp_path / "backup", tmp_path / "new-state"
    code, _, err = enclave(capsys, "backup", backup, "--config", old.config, "--keys", "omit")
    assert code == 0, err
    new.mkdir()
    (new / "enclave.yaml").write_text("state_dir: /elsewhere\n")
    code, _, err = enclave(capsys, "restore", backup, "--state-dir", new)
    assert code == 2
    assert err == f"enclave: --state-dir {new} is not empty: name a new or empty folder\n"
    assert [p.name for p in new.iterdir()] == ["enclave.yaml"]
    assert list(tmp_path.glob(".new-state*")) == []

    code, _, err = enclave(capsys, "backup", backup, "--config", old.config, "--keys", "omit")
    assert code == 2 and f"the backup folder {backup} is not empty" in err


def test_a_restore_is_refused_when_the_backup_pins_another_key(tmp_path, deployments, capsys):
    old = deployments(tmp_path / "old")
    backup, new = tmp_path / "backup", tmp_path / "new-state"
    code, _, err = enclave(capsys, "backup", backup, "--config", old.config, "--keys", "omit")
    assert code == 0, err
    other = "sha256:" + "ab" * 32
    code, _, err = enclave(capsys, "restore", backup, "--state-dir", new, "--fingerprint", other)
    assert code == 2
    assert f"--fingerprint {other}: the backup's site pins {old.site.audit.key_fingerprint}" in err
    assert not new.exists()
