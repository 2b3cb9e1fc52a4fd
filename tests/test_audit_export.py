"""Evidence packs: exported records verify offline, and any change to them is caught."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from enclave_hub.audit import AuditLog
from enclave_hub.audit.checkpoints import PUBLIC_KEY_FILE, public_key_pem
from enclave_hub.audit.evidence import CHECKPOINT, PROOFS, RECORDS
from enclave_hub.core.audit_key import load_or_create_signing_key


@pytest.fixture
def log(tmp_path):
    folder = tmp_path / "audit"
    audit = AuditLog(folder, tmp_path / "signing.key", interval=3600)
    for n in range(100):
        actor = ("alice", "bob", "carol")[n % 3]
        audit.append({"actor": actor, "action": "cell.execute", "code": f"x = {n}"})
    audit.close()
    return folder


def _enclave(*argv: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "enclave_hub.cli", "audit", *argv]
    return subprocess.run(command, capture_output=True, text=True)


def _export_options(log, out, key: str = "signing.key") -> tuple[str, ...]:
    """Export from `log`, trusting the auditor's own copy of its signing key `key`."""
    trusted = log.parent / f"{key}.pub"
    trusted.write_bytes(public_key_pem(load_or_create_signing_key(log.parent / key)))
    return ("--log", str(log), "--public-key", str(trusted), "--out", str(out))


def _export(log, out, *filters: str, key: str = "signing.key") -> None:
    result = _enclave("export", *_export_options(log, out, key), *filters)
    assert result.returncode == 0, result.stderr


def _verify(pack, *options: str) -> dict:
    result = _enclave("verify-pack", str(pack), *options)
    verdict = json.loads(result.stdout)
    assert (result.returncode == 0) == verdict["ok"]
    return verdict


def test_a_users_records_are_exported_with_proofs_that_verify_offline(log, tmp_path):
    pack = tmp_path / "pack"
    _export(log, pack, "--user", "bob")
    exported = [json.loads(line) for line in (pack / RECORDS).read_text().splitlines()]
    assert [r["seq"] for r in exported] == list(range(1, 100, 3))
    assert {r["actor"] for r in exported} == {"bob"}
    # Offline: the log itself is gone.
    copy = tmp_path / "elsewhere"
    pack.rename(copy)
    log.rename(tmp_path / "gone")
    verdict = _verify(copy, "--public-key", str(tmp_path / "gone" / PUBLIC_KEY_FILE))
    assert verdict == {
        "ok": True,
        "records": 33,
        "tree_size": 100,
        "first_bad_record": None,
        "reason": "",
    }


def test_an_existing_folder_is_not_overwritten(log, tmp_path):
    (tmp_path / "taken").mkdir()
    result = _enclave("export", *_export_options(log, tmp_path / "taken"))
    assert result.returncode != 0 and "already exists" in result.stderr


def _altered_record(pack) -> None:
    lines = (pack / RECORDS).read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b"x = ", b"y = ")
    (pack / RECORDS).write_bytes(b"".join(lines))


def _swapped_proofs(pack) -> None:
    lines = (pack / PROOFS).read_text().splitlines(keepends=True)
    lines[2], lines[3] = lines[3], lines[2]
    (pack / PROOFS).write_text("".join(lines))


def _resigned_checkpoint(pack) -> None:
    checkpoint = json.loads((pack / CHECKPOINT).read_text())
    checkpoint["size"] += 1
    (pack / CHECKPOINT).write_text(json.dumps(checkpoint))


@pytest.mark.parametrize(
    ("tamper", "first_bad", "reason"),
    [
        (_altered_record, 2, "does not lead to the signed root"),
        (_swapped_proofs, 2, "does not lead to the signed root"),
        (_resigned_checkpoint, 0, "signature fails"),
    ],
)
def test_a_changed_pack_is_caught(log, tmp_path, tamper, first_bad, reason):
    pack = tmp_path / "pack"
    _export(log, pack, "--user", "alice")
    tamper(pack)
    verdict = _verify(pack)
    assert not verdict["ok"]
    assert verdict["first_bad_record"] == first_bad
    assert reason in verdict["reason"]


def test_a_pack_signed_by_another_key_fails_against_the_trusted_key(log, tmp_path):
    other = tmp_path / "other"
    audit = AuditLog(other, tmp_path / "other.key", interval=3600)
    audit.append({"actor": "alice", "action": "cell.execute", "code": "forged"})
    audit.close()
    pack = tmp_path / "pack"
    _export(other, pack, key="other.key")
    assert _verify(pack)["ok"], "consistent with the key it carries"
    verdict = _verify(pack, "--public-key", str(log / PUBLIC_KEY_FILE))
    assert not verdict["ok"] and "signature fails" in verdict["reason"]
