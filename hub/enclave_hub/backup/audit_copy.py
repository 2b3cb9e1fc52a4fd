"""The audit log in a backup: copied while the audit service appends to it, then verified.

The copy is read in the order that keeps a growing log whole: the witness's checkpoints first,
the log's signed checkpoints next, its segments last, so that every checkpoint copied vouches
for records the copied segments hold. Segments only grow; the last may end in a frame written
while it was read, which is cut, as the store cuts a torn tail after a crash (without
recording it: the copy is never appended to). The copy must verify against the pinned key
(and the witness's chain, where the site has a witness) before the backup is declared good.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..audit.checkpoints import (
    CHECKPOINTS_FILE,
    PUBLIC_KEY_FILE,
    read_checkpoints,
    repair_checkpoints,
)
from ..audit.keys import key_chain
from ..audit.store import FRAME, read_frames, segments
from ..audit.verify import verify_log
from ..audit.witness import Witnessed, read_witnessed
from ..core.audit_key import key_fingerprint
from . import BackupError
from .manifest import copy_private, private_folder


def copy_log(source: Path, target: Path, pinned: str, witness: Path | None) -> dict:
    """Copy the log in `source` to `target` and verify the copy; what it holds."""
    try:
        witnessed = read_witnessed(witness) if witness else []
    except (OSError, ValueError) as error:
        raise BackupError(f"audit.witness_dir {witness}: {error}") from None
    private_folder(target)
    for name in (CHECKPOINTS_FILE, PUBLIC_KEY_FILE):
        if (source / name).is_file():
            copy_private(source / name, target / name)
    repair_checkpoints(target)
    found = segments(source)
    for segment in found:
        copy_private(segment, target / segment.name)
    if found:
        _cut_torn_tail(target / found[-1].name)
    return check_log(target, pinned, witnessed, f"the audit log copied from {source}")


def _cut_torn_tail(segment: Path) -> None:
    """Cut a last frame that runs past the end of what was read (it was being written). A
    whole frame that is damaged is left for verification to name."""
    for item in read_frames(segment):
        if item.payload is None:
            with segment.open("rb") as given:
                given.seek(item.offset)
                header = given.read(FRAME.size)
            if (
                len(header) < FRAME.size
                or FRAME.size + FRAME.unpack(header)[0] > item.end - item.offset
            ):
                os.truncate(segment, item.offset)
            return


def check_log(folder: Path, pinned: str, witnessed: list[Witnessed], what: str) -> dict:
    """Verify the log in `folder` against the pinned key: its records, its checkpoints and
    the last checkpoint; BackupError naming the first bad record if it does not verify."""
    try:
        verdict = verify_log(folder, pinned, witnessed=witnessed)
        signed = read_checkpoints(folder / CHECKPOINTS_FILE)
    except (OSError, ValueError) as error:
        raise BackupError(f"{what} cannot be verified: {error}") from None
    if not verdict.ok:
        raise BackupError(
            f"{what} does not verify against the pinned key {pinned}: {verdict.reason} "
            f"(first bad record {verdict.first_bad}; `enclave audit verify` says more)"
        )
    return {
        "records": verdict.records,
        "checkpoints": verdict.checkpoints,
        "last_checkpoint": asdict(signed[-1]) if signed else None,
        "key_fingerprint": pinned,
    }


def check_signing_key(folder: Path, pinned: str, keys: dict[str, bytes]) -> None:
    """The audit signing key among `keys` (PEM, by name) is the one the log's key records
    lead to from the pinned key; else the audit service would refuse to start with it."""
    chain, problem = key_chain(folder, pinned)
    if problem:
        raise BackupError(f"the audit log's key records: {problem}")
    found = {}
    for name, pem in keys.items():
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except ValueError:
            continue
        if isinstance(key, Ed25519PrivateKey):
            found[name] = key_fingerprint(key.public_key())
    if chain.fingerprint not in found.values():
        held = ", ".join(f"{name} is {value}" for name, value in found.items()) or "none"
        raise BackupError(
            f"no audit signing key here is the one the log is signed with now "
            f"({chain.fingerprint}): {held}"
        )
