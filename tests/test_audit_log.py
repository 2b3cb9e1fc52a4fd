"""The audit log's store and its verifier: hashing, appends, and every kind of tampering."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from enclave_hub.audit import AuditLog
from enclave_hub.audit.checkpoints import (
    CHECKPOINTS_FILE,
    PUBLIC_KEY_FILE,
    load_public_key,
    public_key_pem,
)
from enclave_hub.audit.merkle import (
    EMPTY_ROOT,
    TreeBuilder,
    inclusion_proofs,
    leaf_hash,
    root_from_inclusion_proof,
    tree_root,
)
from enclave_hub.audit.store import canonical, frame, read_frames, segments
from enclave_hub.audit.verify import verify_log
from enclave_hub.core.audit_key import load_or_create_signing_key

ENCLAVE = Path(sys.prefix, "bin", "enclave")
RECORDS = 50


def test_incremental_roots_match_the_rfc_9162_definition():
    builder, leaves = TreeBuilder(), []
    assert builder.root() == EMPTY_ROOT
    for n in range(1, 70):
        leaf = leaf_hash(f"record {n}".encode())
        leaves.append(leaf)
        builder.add(leaf)
        assert builder.root() == tree_root(leaves), f"size {n}"


@pytest.fixture
def log(tmp_path) -> Path:
    """A log of 50 records with a signed checkpoint after every ten."""
    folder = tmp_path / "audit"
    audit = AuditLog(folder, tmp_path / "signing.key", interval=3600)
    for index in range(RECORDS):
        seq = audit.append(
            {"actor": f"user{index % 3}", "action": "kernel.execute", "target": f"cell {index}"}
        )
        assert seq == index
        if (index + 1) % 10 == 0:
            audit.checkpoint()
    audit.close()
    return folder


def _verify(folder: Path, kept=None):
    return verify_log(folder, load_public_key(folder / PUBLIC_KEY_FILE), kept)


def _frames(folder: Path) -> list[bytes]:
    (segment,) = segments(folder)
    return [item.payload for item in read_frames(segment)]


def _rewrite(folder: Path, payloads: list[bytes]) -> None:
    (segment,) = segments(folder)
    segment.write_bytes(b"".join(frame(p) for p in payloads))


def test_an_untouched_log_verifies(log):
    verdict = _verify(log)
    assert verdict.ok, verdict.reason
    assert (verdict.records, verdict.checkpoints) == (RECORDS, 5)


def test_one_flipped_byte_is_found(log):
    (segment,) = segments(log)
    data = bytearray(segment.read_bytes())
    offset = data.find(b'"target":"cell 17"')
    data[offset + 10] ^= 0x01
    segment.write_bytes(bytes(data))
    assert _verify(log).first_bad == 17


def test_a_deleted_record_is_found(log):
    payloads = _frames(log)
    _rewrite(log, payloads[:17] + payloads[18:])
    assert _verify(log).first_bad == 17


def test_two_swapped_records_are_found(log):
    payloads = _frames(log)
    payloads[17], payloads[18] = payloads[18], payloads[17]
    _rewrite(log, payloads)
    assert _verify(log).first_bad == 17


def test_a_forged_record_is_found(log):
    payloads = _frames(log)
    forged = canonical(
        {
            "actor": "user1",
            "action": "login",
            "target": "forged",
            "seq": 17,
            "prev": leaf_hash(payloads[16]).hex(),
        }
    )
    _rewrite(log, [*payloads[:17], forged, *payloads[17:]])
    verdict = _verify(log)
    assert not verdict.ok and verdict.first_bad == 17


def test_a_truncated_tail_is_found_against_a_kept_checkpoint(log, tmp_path):
    kept = tmp_path / "kept.jsonl"
    shutil.copy(log / CHECKPOINTS_FILE, kept)
    payloads = _frames(log)
    _rewrite(log, payloads[:44])
    # The attacker also cuts the log's own checkpoints back to what still matches.
    lines = (log / CHECKPOINTS_FILE).read_text().splitlines()
    (log / CHECKPOINTS_FILE).write_text("\n".join(lines[:4]) + "\n")
    assert _verify(log).ok, "without a kept checkpoint the cut cannot be seen"
    from enclave_hub.audit.checkpoints import read_checkpoints

    verdict = _verify(log, read_checkpoints(kept))
    assert not verdict.ok and verdict.first_bad == 44
    assert "removed from its end" in verdict.reason


def test_a_log_rebuilt_without_the_key_is_found(log):
    payloads = [json.loads(p) for p in _frames(log)]
    payloads[23]["actor"] = "someone-else"
    rebuilt, prev = [], b""
    for record in payloads:  # every link and frame made consistent again
        record["prev"] = prev.hex()
        data = canonical(record)
        prev = leaf_hash(data)
        rebuilt.append(data)
    _rewrite(log, rebuilt)
    verdict = _verify(log)
    assert not verdict.ok
    assert verdict.first_bad == 20, "the first record no good checkpoint vouches for"
    assert "do not match the checkpoint at size 30" in verdict.reason


def test_the_cli_exits_non_zero_and_names_the_first_bad_index(log, tmp_path):
    trusted = tmp_path / "trusted.pub"  # the auditor's own copy of the key
    trusted.write_bytes(public_key_pem(load_or_create_signing_key(tmp_path / "signing.key")))
    command = [str(ENCLAVE), "audit", "verify", "--log", str(log), "--public-key", str(trusted)]
    good = subprocess.run(command, capture_output=True, text=True)
    assert good.returncode == 0 and json.loads(good.stdout)["ok"] is True
    payloads = _frames(log)
    _rewrite(log, payloads[:30] + payloads[31:])
    bad = subprocess.run(command, capture_output=True, text=True)
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["first_bad_index"] == 30


def test_a_torn_tail_is_cut_and_the_cut_is_recorded(log, tmp_path):
    (segment,) = segments(log)
    with segment.open("ab") as out:
        out.write(frame(b'{"half": "written"}')[:-5])  # a crash in the middle of a write
    assert _verify(log).first_bad == RECORDS
    audit = AuditLog(log, tmp_path / "signing.key", interval=3600)
    audit.close()
    verdict = _verify(log)
    assert verdict.ok, verdict.reason
    last = json.loads(_frames(log)[-1])
    assert (last["action"], last["outcome"], last["seq"]) == (
        "audit.recovered",
        "torn-tail-truncated",
        RECORDS,
    )


def test_inclusion_proofs_lead_every_leaf_to_the_rfc_9162_root():
    for size in range(1, 34):
        leaves = [leaf_hash(f"record {n}".encode()) for n in range(size)]
        root = tree_root(leaves)
        proofs = inclusion_proofs(leaves, list(range(size)))
        for index in range(size):
            assert root_from_inclusion_proof(index, size, leaves[index], proofs[index]) == root
        if size > 1:
            wrong = root_from_inclusion_proof(0, size, leaf_hash(b"forged"), proofs[0])
            assert wrong != root
            with pytest.raises(ValueError):
                root_from_inclusion_proof(0, size, leaves[0], proofs[0][:-1])
