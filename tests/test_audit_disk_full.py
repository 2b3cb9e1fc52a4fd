"""A full disk under the log: appends are refused with a clear error, nothing half-written
stays, and once space returns the chain continues and verifies; a running Enclave refuses
session starts and logins meanwhile. (A real small tmpfs; root.)"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from enclave_harness import (
    HubAPI,
    create_api_token,
    login,
    make_site_dir,
    require_root,
    session_server_pids,
    start_enclave,
    write_site_config,
)
from enclave_hub.audit import AuditLog, LogUnwritable
from enclave_hub.audit.checkpoints import PUBLIC_KEY_FILE, load_public_key
from enclave_hub.audit.query import records
from enclave_hub.audit.verify import verify_log
from enclave_hub.core.audit_client import AuditClient, AuditRefused
from enclave_hub.core.audit_key import key_fingerprint, load_or_create_signing_key
from enclave_hub.core.services import AUDIT_EVENTS_PATH
from enclave_hub.core.site_secrets import load_secrets


@pytest.fixture
def small_disk(tmp_path):
    require_root()
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "--lazy", str(mount)], check=True)


def test_a_full_disk_refuses_appends_and_the_chain_continues_after(small_disk, tmp_path):
    folder = small_disk / "audit"
    audit = AuditLog(folder, tmp_path / "signing.key", interval=3600)
    audit.append({"actor": "alice", "action": "login", "outcome": "ok"})
    filler = small_disk / "filler"
    with pytest.raises(OSError, match="No space left"), filler.open("wb", buffering=0) as out:
        while True:
            out.write(b"\0" * 4096)
    with pytest.raises(LogUnwritable, match="cannot be written: No space left on device"):
        for n in range(100):  # the last free bytes may take a few records first
            audit.append({"actor": "alice", "action": "session.start", "target": f"try {n}"})
    filler.unlink()
    seq = audit.append({"actor": "alice", "action": "session.start", "target": "after"})
    audit.close()
    verdict = verify_log(folder, load_public_key(folder / PUBLIC_KEY_FILE))
    assert verdict.ok, verdict.reason
    assert verdict.records == seq + 1


def _fill(disk) -> None:
    with pytest.raises(OSError, match="No space left"), (disk / "filler").open("wb") as out:
        while True:
            out.write(b"\0" * 4096)
            out.flush()


@pytest.mark.e2e
def test_a_full_audit_disk_refuses_session_starts_and_logins(small_disk):
    base = make_site_dir()
    projects = [{"id": "full-disk", "title": "Full disk", "members": ["alice"]}]
    config = write_site_config(base, projects=projects, audit={"log_dir": str(small_disk / "log")})
    enclave = start_enclave(config)
    try:
        client, _ = login(enclave, "alice")
        api = HubAPI(enclave, create_api_token(client, "alice"))
        _fill(small_disk)
        # The last free bytes of the log's open page may hold a few records: use them up.
        ingest = AuditClient(
            f"{enclave.site.audit_url}{AUDIT_EVENTS_PATH}",
            load_secrets(enclave.state_dir).audit_ingest_token,
        )
        with pytest.raises(AuditRefused, match="No space left on device"):
            for n in range(1000):
                asyncio.run(ingest.record(actor="test", action="test.fill", target=str(n)))

        refused = api.start_session("alice", "full-disk")
        assert refused.status_code >= 400
        message = refused.json()["message"]
        assert "not started because it cannot be audited" in message, message
        assert "No space left on device" in message
        assert not session_server_pids(enclave, "alice", "full-disk")
        _, login_refused = login(enclave, "bob")
        assert login_refused.status_code == 503
        assert "Login is refused because it cannot be audited" in login_refused.text

        (small_disk / "filler").unlink()
        assert api.start_session("alice", "full-disk").status_code in (201, 202)
        api.wait_until_ready("alice", "full-disk")
        api.stop_session("alice", "full-disk")
    finally:
        assert enclave.stop() == 0, enclave.output()
    verified = subprocess.run(
        [
            sys.executable,
            "-m",
            "enclave_hub.cli",
            "audit",
            "verify",
            "--log",
            str(small_disk / "log"),
            "--fingerprint",
            key_fingerprint(load_or_create_signing_key(enclave.site.audit_key_path).public_key()),
        ],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    actions = [r["action"] for r in records(small_disk / "log") if r["actor"] == "alice"]
    assert actions[-2:] == ["session.start", "session.stop"]
