"""Which key signs the log: named in the log itself, each rotation signed by the key before.

The first key is the one the site configuration pins (by fingerprint). The audit service
records it (`audit.key`) the first time it signs a log; a rotation (`audit.key.rotate`)
carries the new public key and the old key's signature over both fingerprints. `KeyChain`
follows these records, so a verifier knows the key that should sign a checkpoint at any size
without ever taking a key from the log's folder on trust.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..core.audit_key import key_fingerprint, raw_public_key
from .store import SERVICE_ACTOR, read_frames, segments

KEY_ACTION = "audit.key"
ROTATE_ACTION = "audit.key.rotate"
_MARK = b'"action":"audit.key'  # canonical JSON: how a key record's bytes begin to differ


def _encoded(key: Ed25519PublicKey) -> str:
    return base64.b64encode(raw_public_key(key)).decode()


def rotation_message(previous: str, new: str) -> bytes:
    return f"enclave-audit-key-rotation\n{previous}\n{new}\n".encode()


def key_event(key: Ed25519PrivateKey, outcome: str) -> dict:
    """The record that names the key signing the log from here on."""
    public = key.public_key()
    return {
        "actor": SERVICE_ACTOR,
        "action": KEY_ACTION,
        "outcome": outcome,
        "target": key_fingerprint(public),
        "detail": {"public_key": _encoded(public)},
    }


def rotation_event(old: Ed25519PrivateKey, new: Ed25519PrivateKey) -> dict:
    """The record that hands signing from `old` to `new`, signed by `old`."""
    previous, public = key_fingerprint(old.public_key()), new.public_key()
    fingerprint = key_fingerprint(public)
    signature = old.sign(rotation_message(previous, fingerprint)).hex()
    return {
        "actor": SERVICE_ACTOR,
        "action": ROTATE_ACTION,
        "outcome": "rotated",
        "target": fingerprint,
        "detail": {"public_key": _encoded(public), "previous": previous, "signature": signature},
    }


def _public_key(record: dict) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(record["detail"]["public_key"], validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"record {record.get('seq')} carries no valid public key") from None


class KeyChain:
    """The key the log is signed with, from a trusted anchor through the log's key records."""

    def __init__(self, anchor: str | Ed25519PublicKey):
        self.key = anchor if isinstance(anchor, Ed25519PublicKey) else None
        self.fingerprint = anchor if isinstance(anchor, str) else key_fingerprint(anchor)
        self.named = False  # whether a record of the log names the current key
        # The anchor's key as the log names it: signing what came before the log named it.
        self.first_key = self.key

    def observe(self, seq: int, record: dict) -> str:
        """Follow one record; return what is wrong with it as a key record, if anything."""
        action = record.get("action")
        if action not in (KEY_ACTION, ROTATE_ACTION):
            return ""
        try:
            key = _public_key(record)
        except ValueError as error:
            return str(error)
        fingerprint = key_fingerprint(key)
        if action == KEY_ACTION:
            if fingerprint != self.fingerprint:
                return (
                    f"key mismatch: record {seq} names the signing key {fingerprint}, "
                    f"but the trusted key is {self.fingerprint}"
                )
            self.key, self.named = key, True
            self.first_key = self.first_key or key
            return ""
        detail = record["detail"]
        if self.key is None or detail.get("previous") != self.fingerprint:
            return f"record {seq} rotates the key, but not from the trusted key {self.fingerprint}"
        try:
            signature = bytes.fromhex(str(detail.get("signature")))
            self.key.verify(signature, rotation_message(self.fingerprint, fingerprint))
        except (InvalidSignature, ValueError):
            return f"record {seq} rotates to {fingerprint} without the old key's signature"
        self.key, self.fingerprint, self.named = key, fingerprint, True
        return ""


def key_chain(folder: Path, anchor: str | Ed25519PublicKey) -> tuple[KeyChain, str]:
    """The chain at the log's end, and the first problem with its key records, if any."""
    chain, seq = KeyChain(anchor), 0
    for segment in segments(folder):
        for item in read_frames(segment):
            if item.payload is None:
                return chain, ""
            if _MARK in item.payload:
                problem = chain.observe(seq, json.loads(item.payload))
                if problem:
                    return chain, problem
            seq += 1
    return chain, ""
