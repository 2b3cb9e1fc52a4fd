"""Evidence packs: the records of a user, project or period, provable without the log.

A pack holds the matching records byte for byte, the latest signed checkpoint, each record's
inclusion proof (RFC 9162) against that checkpoint's root, and the public key. Anyone can
check it offline: the signature vouches for the root, and each proof ties its record to it.
Only records the checkpoint covers are exported; the service signs one every few seconds.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .checkpoints import (
    CHECKPOINTS_FILE,
    PUBLIC_KEY_FILE,
    Checkpoint,
    load_public_key,
    read_checkpoints,
    signature_holds,
)
from .merkle import inclusion_proofs, leaf_hash, root_from_inclusion_proof
from .query import Filters
from .store import read_frames, segments
from .verify import verify_log

RECORDS = "records.jsonl"
PROOFS = "proofs.jsonl"
CHECKPOINT = "checkpoint.json"
MANIFEST = "manifest.json"


class PackError(Exception):
    """No pack can be made, or a pack does not hold; the message says why."""


@dataclass(frozen=True)
class PackVerdict:
    records: int
    tree_size: int
    first_bad: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.first_bad is None


def export_pack(folder: Path, anchor: str | Ed25519PublicKey, filters: Filters, out: Path) -> int:
    """Write the pack for `filters` into the new folder `out`, once the log verifies against
    the trusted `anchor`; return how many records."""
    key_path = folder / PUBLIC_KEY_FILE
    verdict = verify_log(folder, anchor)
    if not verdict.ok:
        raise PackError(f"the log does not verify, so nothing is exported: {verdict.reason}")
    checkpoints = read_checkpoints(folder / CHECKPOINTS_FILE)
    if not checkpoints:
        raise PackError("the log has no signed checkpoint yet; try again in a few seconds")
    checkpoint = max(checkpoints, key=lambda c: c.size)
    if not signature_holds(load_public_key(key_path), checkpoint):
        raise PackError(f"{key_path} is not the key that signed the log's latest checkpoint")
    leaves, chosen = [], []
    for segment in segments(folder):
        for item in read_frames(segment):
            if len(leaves) == checkpoint.size:
                break
            assert item.payload is not None  # the log verified
            if filters.match(json.loads(item.payload)):
                chosen.append((len(leaves), item.payload))
            leaves.append(leaf_hash(item.payload))
    proofs = inclusion_proofs(leaves, [index for index, _ in chosen])
    try:
        out.mkdir(parents=True)
    except FileExistsError:
        raise PackError(f"{out} already exists; name a new folder for the pack") from None
    (out / RECORDS).write_bytes(b"".join(payload + b"\n" for _, payload in chosen))
    (out / PROOFS).write_text(
        "".join(
            json.dumps({"index": index, "path": [p.hex() for p in proofs[index]]}) + "\n"
            for index, _ in chosen
        )
    )
    (out / CHECKPOINT).write_text(checkpoint.to_json() + "\n")
    (out / PUBLIC_KEY_FILE).write_bytes(key_path.read_bytes())
    manifest = {"filters": asdict(filters), "records": len(chosen), "exported": time.time()}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return len(chosen)


def verify_pack(pack: Path, public_key: Ed25519PublicKey | None = None) -> PackVerdict:
    """Check a pack offline; by default against the public key it carries."""
    try:
        key = public_key or load_public_key(pack / PUBLIC_KEY_FILE)
        checkpoint = Checkpoint(**json.loads((pack / CHECKPOINT).read_text()))
        payloads = (pack / RECORDS).read_bytes().splitlines()
        proofs = [json.loads(line) for line in (pack / PROOFS).read_text().splitlines()]
    except (OSError, ValueError, TypeError) as error:
        raise PackError(f"{pack} is not a readable evidence pack: {error}") from None
    if not signature_holds(key, checkpoint):
        return PackVerdict(len(payloads), checkpoint.size, 0, "the checkpoint's signature fails")
    if len(proofs) != len(payloads):
        return PackVerdict(len(payloads), checkpoint.size, 0, "records and proofs differ in number")
    root = bytes.fromhex(checkpoint.root)
    for number, (payload, proof) in enumerate(zip(payloads, proofs, strict=True)):
        index = proof["index"]
        problem = ""
        try:
            implied = root_from_inclusion_proof(
                index,
                checkpoint.size,
                leaf_hash(payload),
                [bytes.fromhex(p) for p in proof["path"]],
            )
            if implied != root:
                problem = "its proof does not lead to the signed root"
            elif json.loads(payload).get("seq") != index:
                problem = f"it does not carry its log index {index}"
        except ValueError as error:
            problem = str(error)
        if problem:
            return PackVerdict(
                len(payloads), checkpoint.size, number, f"record {number}: {problem}"
            )
    return PackVerdict(len(payloads), checkpoint.size)
