"""Verifying an audit log: every record in place, every checkpoint signed and matching.

The verifier reads the segments, checks each frame, sequence number and link to the record
before it, follows the log's key records from the trusted key (the site's pinned fingerprint,
or a key the auditor names; never one found beside the log), rebuilds the Merkle tree, and
checks each checkpoint (the log's own, any kept elsewhere, and the witness's) for its
signature by the key of its time, its size and its root. The witness's checkpoints must form
a chain of RFC 9162 consistency proofs, and today's log must extend the last of them and every
kept checkpoint. It names the first record that cannot be trusted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .checkpoints import CHECKPOINTS_FILE, Checkpoint, read_checkpoints, signature_holds
from .keys import KeyChain
from .merkle import TreeBuilder, consistent, leaf_hash
from .store import read_frames, segments
from .witness import NotConsistent, Witnessed, check_log


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


@dataclass
class _Walk:
    """The log as read: its tree, the signing key at each wanted size, and any fault."""

    tree: TreeBuilder
    signers: dict[int, tuple[Ed25519PublicKey | None, str]]
    first_key: Ed25519PublicKey | None
    fault: Verdict | None


def _walk(folder: Path, chain: KeyChain, wanted_sizes: set[int]) -> _Walk:
    tree, last, signers = TreeBuilder(), b"", {}
    if 0 in wanted_sizes:
        signers[0] = (chain.key, chain.fingerprint)
    for segment in segments(folder):
        for item in read_frames(segment):
            fault = _check_record(tree.size, item.payload, last)
            if fault is None:
                problem = chain.observe(tree.size, json.loads(item.payload))
                fault = (tree.size, problem) if problem else None
            if fault is not None:
                return _Walk(
                    tree, signers, chain.first_key, Verdict(tree.size, 0, fault[0], fault[1])
                )
            last = leaf_hash(item.payload)
            tree.add(last)
            if tree.size in wanted_sizes:
                signers[tree.size] = (chain.key, chain.fingerprint)
    return _Walk(tree, signers, chain.first_key, None)


def _witness_chain(witnessed: list[Witnessed]) -> str:
    """What breaks the chain of witnessed checkpoints, judged by their proofs alone: each must
    extend the earlier one it names (a line whose fsync failed may be followed by one that
    names the line before it)."""
    roots = {0: TreeBuilder().root()}
    for entry in witnessed:
        new, before = entry.checkpoint, entry.previous
        proof = [bytes.fromhex(p) for p in entry.proof]
        new_root = bytes.fromhex(new.root)
        if before not in roots or not consistent(before, new.size, roots[before], new_root, proof):
            return (
                f"the witnessed checkpoint at size {new.size} is not consistent with the one "
                f"witnessed before it (size {before})"
            )
        if roots.setdefault(new.size, new_root) != new_root:
            return f"the witness holds two different checkpoints at size {new.size}"
    return ""


def _signature_problem(walk: _Walk, checkpoint: Checkpoint) -> str:
    key, fingerprint = walk.signers[checkpoint.size]
    key = key or walk.first_key  # signed before the log named its key (kept from before pins)
    if key is None:
        return (
            f"key mismatch: no record of the log carries the trusted key {fingerprint}, so the "
            f"checkpoint at size {checkpoint.size} cannot be checked"
        )
    if not signature_holds(key, checkpoint):
        return f"the checkpoint at size {checkpoint.size} has no valid signature by {fingerprint}"
    return ""


def verify_log(
    folder: Path,
    anchor: str | Ed25519PublicKey,
    kept: list[Checkpoint] | None = None,
    witnessed: list[Witnessed] | None = None,
) -> Verdict:
    """Verify the log in `folder`, trusting only `anchor` (a key or its fingerprint)."""
    witnessed = witnessed or []
    outside = [*(kept or []), *(entry.checkpoint for entry in witnessed)]
    outside_ids = {id(c) for c in outside}
    checkpoints = sorted(
        [*read_checkpoints(folder / CHECKPOINTS_FILE), *outside], key=lambda c: c.size
    )
    walk = _walk(folder, KeyChain(anchor), {c.size for c in checkpoints})
    count, fault = walk.tree.size, walk.fault
    vouched = 0  # records before this index are covered by a good checkpoint
    for checkpoint in checkpoints:
        if fault is not None and checkpoint.size > fault.records:
            break  # beyond the first damaged record, the record itself is the finding
        problem = _checkpoint_problem(
            walk, checkpoint, vouched, from_outside=id(checkpoint) in outside_ids
        )
        if problem:
            first_bad = count if checkpoint.size > count else min(vouched, count)
            return Verdict(count, len(checkpoints), first_bad, problem)
        vouched = checkpoint.size
    if fault is not None:
        return Verdict(count, len(checkpoints), fault.first_bad, fault.reason)
    problem = _witness_chain(witnessed)
    if problem:
        return Verdict(count, len(checkpoints), 0, problem)
    return Verdict(count, len(checkpoints))


def _checkpoint_problem(walk: _Walk, checkpoint: Checkpoint, vouched: int, from_outside: bool):
    """What is wrong with one checkpoint. One kept outside the log (an auditor's, the
    witness's) is checked by a consistency proof from it to today's log."""
    tree = walk.tree
    if checkpoint.size > tree.size:
        return (
            f"the log holds {tree.size} records but a checkpoint vouches for "
            f"{checkpoint.size}: records were removed from its end"
        )
    problem = _signature_problem(walk, checkpoint)
    if problem:
        return problem
    if from_outside:
        try:
            check_log(checkpoint, tree)
        except NotConsistent as error:
            return str(error)
    elif tree.root(checkpoint.size).hex() != checkpoint.root:
        return (
            f"records {vouched} to {checkpoint.size - 1} do not match the checkpoint "
            f"at size {checkpoint.size}"
        )
    return ""
