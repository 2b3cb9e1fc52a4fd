"""The witness: signed checkpoints published where the audit service can append but not rewrite.

The witness is a folder on another volume (its file made append-only, `chattr +a`, by the
operator). Each line holds a checkpoint and the RFC 9162 consistency proof from the
checkpoint witnessed before it, so the chain of witnessed checkpoints can be checked without
the log, and today's log against the last of them. A new checkpoint is published only when
its proof holds against the last witnessed one.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .checkpoints import Checkpoint
from .merkle import TreeBuilder, consistent

WITNESS_FILE = "witnessed.jsonl"


class NotConsistent(ValueError):
    """The log is not an extension of what the witness saw: its history was rewritten."""


@dataclass(frozen=True)
class Witnessed:
    """One witnessed checkpoint, with its consistency proof from the one before (`previous`)."""

    checkpoint: Checkpoint
    previous: int
    proof: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps(
            {"checkpoint": asdict(self.checkpoint), "previous": self.previous, "proof": self.proof}
        )


def read_witnessed(folder: Path) -> list[Witnessed]:
    """The witnessed checkpoints, oldest first; a torn line (not JSON) is skipped."""
    path = folder / WITNESS_FILE
    if not path.exists():
        return []
    found = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a write cut short by a crash; the file cannot be truncated
        try:
            found.append(
                Witnessed(Checkpoint(**entry["checkpoint"]), entry["previous"], entry["proof"])
            )
        except (KeyError, TypeError):
            raise ValueError(f"{path}: line {number} is not a witnessed checkpoint") from None
    return found


def check_extension(last: Checkpoint, size: int, root: bytes, proof: list[bytes]) -> None:
    """Raise NotConsistent unless `proof` shows (size, root) extending `last`."""
    if not consistent(last.size, size, bytes.fromhex(last.root), root, proof):
        raise NotConsistent(
            f"the log is not consistent with the witnessed checkpoint at size {last.size}: "
            "its RFC 9162 consistency proof fails"
        )


def check_log(last: Checkpoint, tree: TreeBuilder) -> None:
    """Raise NotConsistent unless the log in `tree` extends the witnessed `last`."""
    if last.size > tree.size:
        raise NotConsistent(
            f"the log holds {tree.size} records but the witness saw {last.size}: "
            "records were removed from its end"
        )
    check_extension(last, tree.size, tree.root(), tree.consistency_proof(last.size))


class FolderWitness:
    """Publishes checkpoints into a witness folder, each proven to extend the last."""

    def __init__(self, folder: Path):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = folder / WITNESS_FILE
        found = read_witnessed(folder)
        self.last = found[-1].checkpoint if found else None

    def publish(self, checkpoint: Checkpoint, proof: list[bytes]) -> None:
        """Append `checkpoint` with its proof from the last witnessed one, durably."""
        previous = self.last.size if self.last else 0
        if self.last is not None:
            check_extension(self.last, checkpoint.size, bytes.fromhex(checkpoint.root), proof)
        entry = Witnessed(checkpoint, previous, tuple(p.hex() for p in proof))
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            size = os.fstat(fd).st_size
            torn = size and os.pread(fd, 1, size - 1) != b"\n"
            os.write(fd, (("\n" if torn else "") + entry.to_json() + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self.last = checkpoint
