"""The audit log: every security-relevant event, in a tamper-evident, signed, append-only log.

`AuditLog` is what the audit service runs: the durable store (`store`), and a thread that signs
a checkpoint of its Merkle root (`merkle`, `checkpoints`) every few seconds and at shutdown.
`verify` checks a log with nothing but its public key.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from pathlib import Path

from .checkpoints import (
    PUBLIC_KEY_FILE,
    append_checkpoint,
    load_or_create_signing_key,
    public_key_pem,
    repair_checkpoints,
    sign,
)
from .store import AuditStore, LogUnwritable

__all__ = ["AuditLog", "LogUnwritable"]

CHECKPOINT_INTERVAL = 5.0


class AuditLog:
    """A durable store plus periodic signed checkpoints."""

    def __init__(self, folder: Path, key_path: Path, interval: float = CHECKPOINT_INTERVAL):
        self.folder = folder
        self.store = AuditStore(folder)
        repair_checkpoints(folder)
        self._key = load_or_create_signing_key(key_path)
        (folder / PUBLIC_KEY_FILE).write_bytes(public_key_pem(self._key))
        self._signed_size = -1
        self._stop = threading.Event()
        self._interval = interval
        self._signer = threading.Thread(target=self._sign_loop, name="audit-signer", daemon=True)
        self._signer.start()

    def submit(self, event: dict) -> Future:
        """Queue an event (stamped with the time it arrived, unless it has one).

        The future gives its sequence number once the event is on disk.
        """
        return self.store.submit({"time": time.time(), **event})

    def append(self, event: dict) -> int:
        """Record an event and return its sequence number once it is on disk."""
        return self.submit(event).result()

    def checkpoint(self) -> None:
        """Sign and keep the current head, unless it is already signed."""
        size, root = self.store.head()
        if size != self._signed_size:
            append_checkpoint(self.folder, sign(self._key, size, root))
            self._signed_size = size

    def _sign_loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.checkpoint()
            except OSError:
                continue  # the next round tries again; appends report the disk's state

    def close(self) -> None:
        self._stop.set()
        self._signer.join()
        self.store.close()
        self.checkpoint()
