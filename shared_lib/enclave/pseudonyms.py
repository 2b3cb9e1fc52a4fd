"""Keyed pseudonyms: the same value and key always give the same replacement, another key
another one, and nothing of the key shows in it.

A key is 32 random bytes, one per project or release, kept in a file (mode 0600) in the site's
state directory, which sessions never see. Pseudonyms are HMAC-SHA-256 digests of the value.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
from datetime import timedelta
from pathlib import Path

from .catalog import CatalogError

PSEUDONYM_PREFIX = "ENC"
PSEUDONYM_DIGITS = 16  # hexadecimal, upper-case, after the prefix
PSEUDONYM = re.compile(rf"{PSEUDONYM_PREFIX}[0-9A-F]{{{PSEUDONYM_DIGITS}}}")
MAX_SHIFT_DAYS = 365


def load_key(path: Path) -> bytes:
    """The de-identification key at `path`, made (32 random bytes, mode 0600) if missing.

    A new key is written whole to a private file and linked into place, so ingests started
    together agree on one key and none reads a half-written one."""
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            _link_new_key(path)
        key = path.read_bytes()
    except OSError as error:
        raise CatalogError(f"the de-identification key {path}: {error.strerror}") from None
    if len(key) < 16:
        raise CatalogError(f"the de-identification key {path} is too short (16 bytes at least)")
    return key


def _link_new_key(path: Path) -> None:
    """Link a fresh key at `path` unless another process linked one first."""
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(secrets.token_bytes(32))
            stream.flush()
            os.fsync(stream.fileno())
        with contextlib.suppress(FileExistsError):  # another process's key stands
            os.link(draft, path)
    finally:
        draft.unlink()


class Pseudonymizer:
    """Keyed, stable replacements: the same input and key always give the same output."""

    def __init__(self, key: bytes):
        if len(key) < 16:
            raise ValueError("a de-identification key needs at least 16 bytes")
        self._key = key

    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self._key, f"{kind}\0{value}".encode(), hashlib.sha256).digest()

    def uid(self, original: str) -> str:
        return f"2.25.{int.from_bytes(self._digest('uid', original)[:16], 'big')}"

    def patient(self, patient_id: str) -> str:
        digits = self._digest("patient", patient_id).hex()[:PSEUDONYM_DIGITS].upper()
        return f"{PSEUDONYM_PREFIX}{digits}"

    def derived_secret(self, purpose: str) -> str:
        """A secret for one purpose, derived from the key (hex), for tools that hash with a
        secret of their own."""
        return self._digest("secret", purpose).hex()

    def day_shift(self, patient_id: str) -> timedelta:
        days = int.from_bytes(self._digest("dates", patient_id)[:4], "big") % MAX_SHIFT_DAYS
        return timedelta(days=-(days + 1))
