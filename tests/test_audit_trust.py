"""Trust anchored outside the log: the pinned key, the witness, consistency proofs, rotation.

Each attack is run for real on a real log: an attacker who can write the log's folder (but
not the site configuration or the witness) rebuilds it, and `enclave audit verify` must fail.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from enclave_hub.audit import AuditLog, KeyNotTrusted, NotConsistent
from enclave_hub.audit.checkpoints import CHECKPOINTS_FILE, PUBLIC_KEY_FILE, read_checkpoints
from enclave_hub.audit.events import BadEvent, platform_event
from enclave_hub.audit.keys import rotation_event
from enclave_hub.audit.merkle import TreeBuilder, consistent, leaf_hash, tree_root
from enclave_hub.audit.query import records
from enclave_hub.audit.store import LogInUse
from enclave_hub.audit.witness import WITNESS_FILE
from enclave_hub.core.audit_key import key_fingerprint, load_or_create_signing_key, pin_audit_key
from enclave_hub.core.site_config import (
    CONFIG_FILE_NAME,
    SiteConfigError,
    load_site_config,
    parse_site_config,
    write_default_site_config,
)


def _fill(log: AuditLog, count: int, label: str) -> None:
    for n in range(count):
        log.append({"actor": "alice", "action": "cell.execute", "code": f"{label} {n}"})


@pytest.fixture
def site(tmp_path) -> Path:
    """A site whose key is pinned, with its log and its witness on folders of their own."""
    state = tmp_path / "state"
    key = load_or_create_signing_key(state / "audit-key" / "signing.key")
    config = {
        "state_dir": str(state),
        "audit": {
            "log_dir": str(tmp_path / "log-volume"),
            "witness_dir": str(tmp_path / "witness-volume"),
            "key_fingerprint": key_fingerprint(key.public_key()),
        },
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _open(site: Path, **changes) -> AuditLog:
    config = load_site_config(site)
    options = {"pinned": config.audit.key_fingerprint, "witness": config.audit.witness_dir}
    return AuditLog(config.audit_dir, config.audit_key_path, 3600, **{**options, **changes})


def _verify(*argv: str) -> dict:
    command = [sys.executable, "-m", "enclave_hub.cli", "audit", "verify", *map(str, argv)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode in (0, 1), result.stderr
    verdict = json.loads(result.stdout)
    assert (result.returncode == 0) == verdict["ok"]
    return verdict


def _witnessed_log(site: Path) -> Path:
    log = _open(site)
    _fill(log, 20, "first")
    log.checkpoint()
    _fill(log, 20, "second")
    log.close()
    return load_site_config(site).audit_dir


def test_consistency_proofs_follow_rfc_9162_and_catch_any_change():
    tree, leaves = TreeBuilder(), []
    for n in range(40):
        leaves.append(leaf_hash(f"record {n}".encode()))
        tree.add(leaves[-1])
    other = [*leaves[:13], leaf_hash(b"rewritten"), *leaves[14:]]
    for old in range(41):
        for new in range(old, 41):
            proof = tree.consistency_proof(old, new)
            old_root, new_root = tree_root(leaves[:old]), tree_root(leaves[:new])
            assert tree.root(new) == new_root
            assert consistent(old, new, old_root, new_root, proof), (old, new)
            if old < new and old > 13:
                forked = tree_root(other[:new])
                assert not consistent(old, new, old_root, forked, proof), (old, new)
            if proof:
                bent = [*proof[:-1], leaf_hash(b"bent")]
                assert not consistent(old, new, old_root, new_root, bent), (old, new)


def test_an_untouched_witnessed_log_verifies_and_names_its_key(site):
    folder = _witnessed_log(site)
    verdict = _verify("--config", site)
    assert verdict["ok"], verdict["reason"]
    assert verdict["witnessed"] == 2 and verdict["records"] == 41
    first = next(records(folder))
    assert (first["action"], first["outcome"]) == ("audit.key", "pinned")
    assert first["target"] == load_site_config(site).audit.key_fingerprint


@pytest.mark.parametrize("names_its_key", [True, False])
def test_a_log_rebuilt_with_a_new_key_beside_it_fails_naming_the_key(site, tmp_path, names_its_key):
    folder = _witnessed_log(site)
    pinned = load_site_config(site).audit.key_fingerprint
    # The attacker rewrites the whole folder: a self-consistent log signed by a key of theirs,
    # its public key put beside it where the old verifier took it from.
    shutil.rmtree(folder)
    forger_key = tmp_path / "forger.key"
    forger = load_or_create_signing_key(forger_key).public_key()
    forged = AuditLog(
        folder, forger_key, 3600, pinned=key_fingerprint(forger) if names_its_key else None
    )
    _fill(forged, 45, "forged")
    forged.close()
    beside = _verify("--log", folder, "--public-key", folder / PUBLIC_KEY_FILE)
    assert beside["ok"], "the forgery holds against the key it carries"
    verdict = _verify("--config", site)
    assert not verdict["ok"]
    assert "key mismatch" in verdict["reason"] and pinned in verdict["reason"]
    if names_its_key:
        assert key_fingerprint(forger) in verdict["reason"]
    with pytest.raises(KeyNotTrusted):
        _open(site)


def test_an_older_fork_signed_with_the_right_key_fails_against_the_witness(site, tmp_path):
    config = load_site_config(site)
    folder = config.audit_dir
    log = _open(site)
    _fill(log, 10, "shared")
    log.checkpoint()
    log.close()
    shutil.copytree(folder, tmp_path / "older")  # a backup the attacker kept
    log = _open(site)
    _fill(log, 20, "true history")
    log.close()
    saved = tmp_path / "auditor.jsonl"  # an auditor keeps today's checkpoint
    saved.write_text(read_checkpoints(folder / CHECKPOINTS_FILE)[-1].to_json() + "\n")
    # The attacker holds the signing key: back to the fork, a different history written
    # after it, with every checkpoint duly signed; the witness is beyond their reach.
    shutil.rmtree(folder)
    shutil.copytree(tmp_path / "older", folder)
    fork = _open(site, witness=None)
    _fill(fork, 40, "rewritten history")
    fork.close()
    anchor = ("--fingerprint", config.audit.key_fingerprint)
    assert _verify("--log", folder, *anchor)["ok"], "without the witness the fork holds"
    verdict = _verify("--config", site)
    assert not verdict["ok"]
    assert "not consistent with the witnessed checkpoint at size 31" in verdict["reason"]
    kept = _verify("--log", folder, *anchor, "--checkpoint", saved)
    assert not kept["ok"] and "consistency proof fails" in kept["reason"]
    with pytest.raises(NotConsistent):
        _open(site)


def test_a_saved_checkpoint_is_checked_later_against_the_grown_log(site, tmp_path):
    folder = _witnessed_log(site)
    saved = tmp_path / "auditor.jsonl"
    saved.write_text(read_checkpoints(folder / CHECKPOINTS_FILE)[0].to_json() + "\n")
    log = _open(site)
    _fill(log, 30, "later")
    log.close()
    verdict = _verify("--config", site, "--checkpoint", saved)
    assert verdict["ok"], verdict["reason"]
    assert verdict["witnessed"] == 3


def test_a_bent_proof_in_the_witness_breaks_its_chain(site):
    _witnessed_log(site)
    witness = load_site_config(site).audit.witness_dir / WITNESS_FILE
    lines = witness.read_text().splitlines()
    entry = json.loads(lines[1])
    entry["proof"][0] = "00" * 32
    witness.write_text("\n".join([lines[0], json.dumps(entry), *lines[2:]]) + "\n")
    verdict = _verify("--config", site)
    assert not verdict["ok"]
    assert "not consistent with the one witnessed before it" in verdict["reason"]


def test_a_rotation_is_recorded_signed_by_the_old_key_and_verifies(site):
    _witnessed_log(site)
    config = load_site_config(site)
    command = [sys.executable, "-m", "enclave_hub.cli", "audit", "rotate-key", "--config", site]
    result = subprocess.run(list(map(str, command)), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    new = key_fingerprint(load_or_create_signing_key(config.audit_key_path).public_key())
    assert new != config.audit.key_fingerprint and new in result.stdout
    log = _open(site)  # the site still pins the first key; the log leads from it to the new
    _fill(log, 5, "after rotation")
    log.close()
    rotation = [r for r in records(config.audit_dir) if r["action"] == "audit.key.rotate"]
    assert [(r["detail"]["previous"], r["target"]) for r in rotation] == [
        (config.audit.key_fingerprint, new)
    ]
    verdict = _verify("--config", site)
    assert verdict["ok"], verdict["reason"]


def test_a_rotation_while_the_audit_service_writes_the_log_is_refused(site):
    """One process writes a log: the running service's lock keeps rotate-key out, and a
    second writer, until the service stops."""
    config = load_site_config(site)
    service = _open(site)  # the audit service of a running Enclave
    command = [sys.executable, "-m", "enclave_hub.cli", "audit", "rotate-key", "--config", site]
    refused = subprocess.run(list(map(str, command)), capture_output=True, text=True)
    assert refused.returncode != 0
    assert refused.stderr.strip() == (
        f"enclave: the audit key was not rotated: the audit log {config.audit_dir} is being "
        "written by another process (the audit service of a running Enclave): stop Enclave first"
    )
    with pytest.raises(LogInUse):
        _open(site)
    service.close()
    assert not config.audit_key_path.with_name("signing.key.next").exists()
    rotated = subprocess.run(list(map(str, command)), capture_output=True, text=True)
    assert rotated.returncode == 0, rotated.stderr


def test_a_rotation_cut_short_by_a_crash_is_finished_or_forgotten(site):
    config = load_site_config(site)
    upcoming = config.audit_key_path.with_name("signing.key.next")
    log = _open(site)
    old = load_or_create_signing_key(config.audit_key_path)
    new = load_or_create_signing_key(upcoming)
    log.store.append(rotation_event(old, new))  # the crash: recorded, the key not yet in place
    log.store.close()
    log = _open(site)
    assert log.fingerprint == key_fingerprint(new.public_key()) and not upcoming.exists()
    log.close()
    load_or_create_signing_key(upcoming)  # a crash before the record: the new key is dropped
    log = _open(site)
    assert log.fingerprint == key_fingerprint(new.public_key()) and not upcoming.exists()
    log.close()
    assert _verify("--config", site)["ok"]


def test_a_rotation_not_signed_by_the_trusted_key_fails(site, tmp_path):
    pinned = load_site_config(site).audit.key_fingerprint
    log = _open(site)
    attacker, successor = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    claimed = rotation_event(attacker, successor)
    claimed["detail"]["previous"] = pinned  # claims to come from the pinned key
    log.store.append(claimed)  # written straight into the folder, as its writer could
    log.close()
    verdict = _verify("--config", site)
    assert not verdict["ok"]
    assert "without the old key's signature" in verdict["reason"]
    assert verdict["first_bad_index"] == 1


def test_no_sender_may_record_the_services_own_key_and_fault_records():
    for action in ("audit.key", "audit.key.rotate", "audit.fault", "audit.recovered"):
        with pytest.raises(BadEvent, match="recorded by the audit service alone"):
            platform_event({"actor": "hub", "action": action})
    assert platform_event({"actor": "dave", "action": "audit.read"})["action"] == "audit.read"


def test_an_existing_deployment_is_pinned_once_and_the_pin_recorded(tmp_path, monkeypatch):
    state = tmp_path / "state"
    monkeypatch.setenv("ENCLAVE_STATE_DIR", str(state))
    path = write_default_site_config(state)
    config = load_site_config(path)
    legacy = AuditLog(config.audit_dir, config.audit_key_path, 3600)  # the old service
    _fill(legacy, 12, "before the upgrade")
    legacy.checkpoint()
    legacy.close()
    assert config.audit.key_fingerprint is None
    pinned = pin_audit_key(config, None)
    key = load_or_create_signing_key(config.audit_key_path)
    assert pinned.audit.key_fingerprint == key_fingerprint(key.public_key())
    reread = load_site_config(state / CONFIG_FILE_NAME)
    assert reread.audit.key_fingerprint == pinned.audit.key_fingerprint
    assert path.read_text().startswith("# Enclave site configuration.")
    assert pin_audit_key(reread, None) == reread, "pinned once"
    upgraded = AuditLog(
        reread.audit_dir, reread.audit_key_path, 3600, pinned=pinned.audit.key_fingerprint
    )
    upgraded.close()
    last = list(records(reread.audit_dir))[-1]
    assert (last["seq"], last["action"], last["outcome"]) == (12, "audit.key", "pinned")
    verdict = _verify("--config", path)
    assert verdict["ok"], verdict["reason"]
    assert verdict["checkpoints"] == 2


def test_a_bad_fingerprint_is_named_in_one_line():
    with pytest.raises(SiteConfigError) as error:
        parse_site_config({"audit": {"key_fingerprint": "md5:abc"}}, "site.yaml")
    assert str(error.value).startswith("site.yaml: audit.key_fingerprint: ")
    assert "\n" not in str(error.value)
