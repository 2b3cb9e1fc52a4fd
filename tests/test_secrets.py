"""Generated secrets: created once, private, and refused when others can read them."""

from __future__ import annotations

import stat

import pytest

from enclave_hub.secrets import SECRET_NAMES, SecretError, ensure_secrets, secret_path


def test_secrets_are_generated_once_with_mode_0600(tmp_path):
    first = ensure_secrets(tmp_path)
    assert len(set(first.values())) == len(SECRET_NAMES)
    for name in SECRET_NAMES:
        assert stat.S_IMODE(secret_path(tmp_path, name).stat().st_mode) == 0o600
    assert ensure_secrets(tmp_path) == first


def test_a_secret_readable_by_others_is_refused(tmp_path):
    ensure_secrets(tmp_path)
    path = secret_path(tmp_path, "proxy_token")
    path.chmod(0o644)
    with pytest.raises(SecretError, match="proxy_token is readable by others"):
        ensure_secrets(tmp_path)
