"""Signed checkpoints: the log's size and Merkle root, signed with Ed25519.

Only the audit service can read the private key; anyone with the public key can check that a
checkpoint was made by it, so a log rebuilt without the key cannot carry valid checkpoints.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

CHECKPOINTS_FILE = "checkpoints.jsonl"
PUBLIC_KEY_FILE = "audit.pub"


@dataclass(frozen=True)
class Checkpoint:
    size: int
    root: str
    time: float
    signature: str = ""

    def message(self) -> bytes:
        return f"enclave-audit-checkpoint\n{self.size}\n{self.root}\n{self.time:.6f}\n".encode()

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def public_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


def sign(key: Ed25519PrivateKey, size: int, root: bytes) -> Checkpoint:
    unsigned = Checkpoint(size=size, root=root.hex(), time=round(time.time(), 6))
    signature = key.sign(unsigned.message()).hex()
    return Checkpoint(unsigned.size, unsigned.root, unsigned.time, signature)


def signature_holds(public_key: Ed25519PublicKey, checkpoint: Checkpoint) -> bool:
    try:
        public_key.verify(bytes.fromhex(checkpoint.signature), checkpoint.message())
    except (InvalidSignature, ValueError):
        return False
    return True


def append_checkpoint(folder: Path, checkpoint: Checkpoint) -> None:
    """Add a checkpoint to the log's checkpoint file, durably."""
    fd = os.open(folder / CHECKPOINTS_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (checkpoint.to_json() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def repair_checkpoints(folder: Path) -> None:
    """Cut a torn last line (a crash while appending), so that new lines start clean."""
    path = folder / CHECKPOINTS_FILE
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        os.truncate(path, data.rfind(b"\n") + 1)


def read_checkpoints(path: Path) -> list[Checkpoint]:
    """Checkpoints of a file, one JSON object a line; only a torn last line is forgiven."""
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    found = []
    for number, line in enumerate(lines, start=1):
        try:
            found.append(Checkpoint(**json.loads(line)))
        except (ValueError, TypeError):
            if number != len(lines):
                raise ValueError(f"{path}: line {number} is not a checkpoint") from None
    return found
