"""Verifying an audit log: every record in place, every checkpoint signed and matching.

The verifier reads the segments, checks each frame, sequence number and link to the record
before it, rebuilds the Merkle tree, and checks each checkpoint (the log's own and any kept
elsewhere) for its signature, its size and its root. It names the first record that cannot be
trusted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .checkpoints import CHECKPOINTS_FILE, Checkpoint, read_checkpoints, signature_holds
from .merkle import TreeBuilder, leaf_hash
from .store import read_frames, segments


@dataclass(frozen=True)
class Verdict:
    """What verification found: the records read, and the first bad index with the reason."""

    records: int
    checkpoints: int
    first_bad: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.first_bad is None


def _check_record(index: int, payload: bytes | None, last: bytes) -> tuple[int, str] | None:
    """The first bad index and the reason, if the record at `index` is not in its place."""
    if payload is None:
        return index, f"record {index} is damaged (its frame or checksum is wrong)"
    try:
        record = json.loads(payload)
    except ValueError:
        return index, f"record {index} is not JSON"
    number = record.get("seq")
    if number != index:
        # A lower number means a record was inserted before this one; a higher, removed.
        first = min(index, number) if isinstance(number, int) and number >= 0 else index
        return first, f"record {index} carries number {number}"
    if record.get("prev") != last.hex():
        return index, f"record {index} does not follow record {index - 1}"
    return None


def _records(folder: Path, wanted_sizes: set[int]) -> tuple[int, dict[int, str], Verdict | None]:
    """Walk the records; return their count, the roots at the wanted sizes, and any fault."""
    tree, last, roots = TreeBuilder(), b"", {}
    if 0 in wanted_sizes:
        roots[0] = tree.root().hex()
    for segment in segments(folder):
        for item in read_frames(segment):
            fault = _check_record(tree.size, item.payload, last)
            if fault is not None:
                return tree.size, roots, Verdict(tree.size, 0, fault[0], fault[1])
            last = leaf_hash(item.payload)
            tree.add(last)
            if tree.size in wanted_sizes:
                roots[tree.size] = tree.root().hex()
    return tree.size, roots, None


def verify_log(
    folder: Path, public_key: Ed25519PublicKey, kept: list[Checkpoint] | None = None
) -> Verdict:
    checkpoints = sorted(
        [*read_checkpoints(folder / CHECKPOINTS_FILE), *(kept or [])], key=lambda c: c.size
    )
    count, roots, fault = _records(folder, {c.size for c in checkpoints})
    vouched = 0  # records before this index are covered by a good checkpoint
    for checkpoint in checkpoints:
        if fault is not None and checkpoint.size > fault.records:
            break  # beyond the first damaged record, the record itself is the finding
        problem = ""
        if not signature_holds(public_key, checkpoint):
            problem = f"the checkpoint at size {checkpoint.size} has no valid signature"
        elif checkpoint.size > count:
            reason = (
                f"the log holds {count} records but a checkpoint vouches for "
                f"{checkpoint.size}: records were removed from its end"
            )
            return Verdict(count, len(checkpoints), count, reason)
        elif roots.get(checkpoint.size) != checkpoint.root:
            problem = (
                f"records {vouched} to {checkpoint.size - 1} do not match the checkpoint "
                f"at size {checkpoint.size}"
            )
        if problem:
            return Verdict(count, len(checkpoints), min(vouched, count), problem)
        vouched = checkpoint.size
    if fault is not None:
        return Verdict(count, len(checkpoints), fault.first_bad, fault.reason)
    return Verdict(count, len(checkpoints))
