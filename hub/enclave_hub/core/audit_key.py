"""The audit signing key and its fingerprint, which the site configuration pins.

The key is generated on first start (mode 0600) and read by the audit service alone. Its
fingerprint, `sha256:` and the hex SHA-256 of the raw Ed25519 public key, is written into the
site configuration (`audit.key_fingerprint`), so that verifying the log never trusts a key
found beside it: whoever can rewrite the log's folder can put a key there too.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .site_config import CONFIG_FILE_NAME, SiteConfig, default_state_dir


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    """The audit service's private key, generated with mode 0600 on first use."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_signing_key(Ed25519PrivateKey.generate(), path)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def write_signing_key(key: Ed25519PrivateKey, path: Path) -> None:
    """Write a new private key file (mode 0600) durably; refuse to overwrite one."""
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
        out.flush()
        os.fsync(out.fileno())


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_fingerprint(key: Ed25519PublicKey) -> str:
    """`sha256:` and the hex SHA-256 of the raw public key."""
    return "sha256:" + hashlib.sha256(raw_public_key(key)).hexdigest()


def pin_audit_key(site: SiteConfig, config: Path | None) -> SiteConfig:
    """`site` with its audit key's fingerprint pinned (the key is made if new).

    An existing deployment's key, found with no fingerprint pinned, is pinned as it is, once:
    into the default configuration file when `config` is None (the audit service
    then records the pin in the log), or, for a configuration file of the operator's, only
    in what this start runs with, with a line saying what to add to that file.
    """
    if site.audit.key_fingerprint is not None:
        return site
    fingerprint = key_fingerprint(load_or_create_signing_key(site.audit_key_path).public_key())
    if config is None:
        path = default_state_dir() / CONFIG_FILE_NAME
        text = path.read_text()
        header = "".join(line for line in text.splitlines(True) if line.startswith("#"))
        data = yaml.safe_load(text) or {}
        data["audit"] = {**(data.get("audit") or {}), "key_fingerprint": fingerprint}
        partial = path.with_name(path.name + ".new")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(header)
            yaml.safe_dump(data, out, sort_keys=False)
        os.replace(partial, path)
        print(f"Pinned the audit key {fingerprint} in {path} (audit.key_fingerprint)", flush=True)
    else:
        print(
            f"Warning: {config} pins no audit key; add audit.key_fingerprint: {fingerprint} "
            "to it, so that `enclave audit verify` can check the log",
            flush=True,
        )
    audit = site.audit.model_copy(update={"key_fingerprint": fingerprint})
    return site.model_copy(update={"audit": audit})
