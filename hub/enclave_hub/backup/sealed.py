"""The deployment's keys in a backup: sealed with a key derived from the operator's passphrase.

The key is derived with scrypt (N 2^17, r 8, p 1: 128 MiB and about half a second, for each
guess too) from the passphrase and a random salt; the files are encrypted and authenticated
with AES-256-GCM, the scrypt parameters, salt and nonce authenticated with them. A wrong
passphrase and a changed file are both refused, never half-read.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from . import BackupError

FORMAT = "enclave-backup-keys/1"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1
MAX_SCRYPT_MEMORY = 2**30  # bytes: a sealed file asking for more is refused
MIN_PASSPHRASE = 12


def read_passphrase(path: Path) -> bytes:
    """The passphrase in a file: its text without the line ending after it."""
    try:
        text = path.read_bytes().rstrip(b"\r\n")
    except OSError as error:
        raise BackupError(f"--passphrase-file {path}: {error.strerror}") from None
    if len(text) < MIN_PASSPHRASE:
        raise BackupError(
            f"--passphrase-file {path}: the passphrase must be {MIN_PASSPHRASE} characters at least"
        )
    return text


def _key(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase)


def _encode(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _associated(header: dict) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def seal(files: dict[str, bytes], passphrase: bytes) -> bytes:
    """The files (by name) encrypted under the passphrase, as a JSON document."""
    salt, nonce = os.urandom(16), os.urandom(12)
    header = {
        "format": FORMAT,
        "kdf": {
            "name": "scrypt",
            "n": SCRYPT_N,
            "r": SCRYPT_R,
            "p": SCRYPT_P,
            "salt": _encode(salt),
        },
        "cipher": "AES-256-GCM",
        "nonce": _encode(nonce),
    }
    plain = json.dumps({name: _encode(data) for name, data in files.items()}).encode()
    key = _key(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    sealed = AESGCM(key).encrypt(nonce, plain, _associated(header))
    return json.dumps({**header, "ciphertext": _encode(sealed)}).encode()


def unseal(path: Path, passphrase: bytes) -> dict[str, bytes]:
    """The files sealed in `path`; BackupError naming it if the passphrase does not open it."""
    try:
        document = json.loads(path.read_bytes())
        header = {name: document[name] for name in ("format", "kdf", "cipher", "nonce")}
        kdf = header["kdf"]
        n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        salt, nonce = base64.b64decode(kdf["salt"]), base64.b64decode(header["nonce"])
        sealed = base64.b64decode(document["ciphertext"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise BackupError(f"{path} is not a sealed file of keys: {error}") from None
    if header["format"] != FORMAT or kdf.get("name") != "scrypt":
        raise BackupError(f"{path} is not a sealed file of keys this version reads ({FORMAT})")
    if not (n > 1 and r >= 1 and 1 <= p <= 16 and 128 * n * r <= MAX_SCRYPT_MEMORY):
        raise BackupError(f"{path}: scrypt N {n}, r {r}, p {p} ask too much memory or time")
    try:
        key = _key(passphrase, salt, n, r, p)
    except ValueError as error:
        raise BackupError(f"{path} is not a sealed file of keys: {error}") from None
    try:
        plain = AESGCM(key).decrypt(nonce, sealed, _associated(header))
    except (InvalidTag, ValueError):
        raise BackupError(
            f"{path}: the passphrase does not open it (a wrong passphrase, or a changed file)"
        ) from None
    return {name: base64.b64decode(data) for name, data in json.loads(plain).items()}
