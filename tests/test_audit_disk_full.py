"""A full disk under the log: appends are refused with a clear error, nothing half-written
stays, and once space returns the chain continues and verifies. (A real small tmpfs; root.)"""

from __future__ import annotations

import subprocess

import pytest

from enclave_harness import require_root
from enclave_hub.audit import AuditLog, LogUnwritable
from enclave_hub.audit.checkpoints import PUBLIC_KEY_FILE, load_public_key
from enclave_hub.audit.verify import verify_log


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
