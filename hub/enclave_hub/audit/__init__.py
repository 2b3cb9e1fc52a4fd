"""The audit log: every security-relevant event, in a tamper-evident, signed, append-only log.

`AuditLog` is what the audit service runs: the durable store (`store`), and a thread that signs
a checkpoint of its Merkle root (`merkle`, `checkpoints`) every few seconds and at shutdown,
publishing each to the witness (`witness`) when the site has one. The log names its signing
key and every rotation of it (`keys`). `verify` checks a log with nothing but the pinned key.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..core.audit_key import key_fingerprint, load_or_create_signing_key, write_signing_key
from .checkpoints import (
    CHECKPOINTS_FILE,
    PUBLIC_KEY_FILE,
    append_checkpoint,
    public_key_pem,
    read_checkpoints,
    repair_checkpoints,
    sign,
    signature_holds,
)
from .keys import key_chain, key_event, rotation_event
from .store import AuditStore, LogUnwritable
from .witness import FolderWitness, NotConsistent

__all__ = ["AuditLog", "KeyNotTrusted", "LogUnwritable", "NotConsistent"]

CHECKPOINT_INTERVAL = 5.0


class KeyNotTrusted(ValueError):
    """The signing key is not the one the site pins and the log's key records lead to."""


class AuditLog:
    """A durable store plus periodic signed (and witnessed) checkpoints.

    With `pinned` (the site's `audit.key_fingerprint`), the log must be signed by that key or
    one its rotations lead to, and the first start records the key in the log. With `witness`,
    the log must extend the last witnessed checkpoint, and every new one is published there.
    """

    def __init__(
        self,
        folder: Path,
        key_path: Path,
        interval: float = CHECKPOINT_INTERVAL,
        pinned: str | None = None,
        witness: Path | None = None,
    ):
        self.folder = folder
        self.store = AuditStore(folder)
        self._key_path = key_path
        try:  # a log that does not open lets go of its store, for the next try
            repair_checkpoints(folder)
            self._key = load_or_create_signing_key(key_path)
            self._witness = FolderWitness(witness) if witness else None
            self._trust_key(pinned)
            if self._witness and self._witness.last:
                self.store.check_extends(self._witness.last)
            self._publish_key()
        except BaseException:
            self.store.close()
            raise
        self._signing = threading.Lock()
        self._signed_size = -1
        self._stop = threading.Event()
        self._interval = interval
        self._signer = threading.Thread(target=self._sign_loop, name="audit-signer", daemon=True)
        self._signer.start()

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.public_key)

    def _next_key_path(self) -> Path:
        return self._key_path.with_name(self._key_path.name + ".next")

    def _trust_key(self, pinned: str | None) -> None:
        """Check the key against the pin and the log's key records; finish a rotation that a
        crash interrupted; record the pinned key in a log that does not name it yet."""
        chain, problem = key_chain(self.folder, pinned or self._key.public_key())
        if problem:
            raise KeyNotTrusted(f"{self.folder}: {problem}")
        upcoming = self._next_key_path()
        if upcoming.exists():
            new = load_or_create_signing_key(upcoming)
            if key_fingerprint(new.public_key()) == chain.fingerprint:
                self._install(new)
            else:
                upcoming.unlink()  # its rotation never reached the log
        if self.fingerprint != chain.fingerprint:
            raise KeyNotTrusted(
                f"the audit signing key {self._key_path} is {self.fingerprint}, but the site "
                f"configuration and the log's key records trust {chain.fingerprint}"
            )
        if pinned and not chain.named:
            signed = read_checkpoints(self.folder / CHECKPOINTS_FILE)
            if signed and not signature_holds(self._key.public_key(), signed[-1]):
                raise KeyNotTrusted(
                    f"{self.folder}: key mismatch: its checkpoints are not signed by the "
                    f"pinned key {pinned}"
                )
            self.store.append({"time": time.time(), **key_event(self._key, "pinned")})

    def _install(self, new: Ed25519PrivateKey) -> None:
        os.replace(self._next_key_path(), self._key_path)
        folder = os.open(self._key_path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
        self._key = new

    def _publish_key(self) -> None:
        """A copy of the public key beside the log, for convenience: never trusted."""
        (self.folder / PUBLIC_KEY_FILE).write_bytes(public_key_pem(self._key))

    def submit(self, event: dict) -> Future:
        """Queue an event (stamped with the time it arrived, unless it has one).

        The future gives its sequence number once the event is on disk.
        """
        return self.store.submit({"time": time.time(), **event})

    def submit_many(self, events: list[dict]) -> list[Future]:
        """Queue events to be written together (one fsync); their futures, in order."""
        now = time.time()
        return self.store.submit_many([{"time": now, **event} for event in events])

    def append(self, event: dict) -> int:
        """Record an event and return its sequence number once it is on disk."""
        return self.submit(event).result()

    def checkpoint(self) -> None:
        """Sign, keep and witness the current head, unless it is already signed."""
        with self._signing:
            size, root = self.store.head()
            if size == self._signed_size:
                return
            checkpoint = sign(self._key, size, root)
            append_checkpoint(self.folder, checkpoint)
            if self._witness:
                last = self._witness.last
                proof = self.store.consistency_proof(last.size if last else 0, size)
                self._witness.publish(checkpoint, proof)
            self._signed_size = size

    def rotate_key(self) -> str:
        """Hand signing to a new key, recorded in the log and signed by the old one; return
        the new key's fingerprint. The head is signed by the old key first."""
        self.checkpoint()
        with self._signing:
            new = Ed25519PrivateKey.generate()
            write_signing_key(new, self._next_key_path())
            self.append(rotation_event(self._key, new))
            self._install(new)
            self._publish_key()
        self.checkpoint()
        return self.fingerprint

    def _sign_loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.checkpoint()
            except (OSError, NotConsistent):
                continue  # the next round tries again; verify reports a rewritten log

    def close(self) -> None:
        self._stop.set()
        self._signer.join()
        self.store.close()
        self.checkpoint()
