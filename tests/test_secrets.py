"""Generated secrets: created once, private, and refused when others can read them."""

from __future__ import annotations

import os
import stat

import pytest

from enclave_hub.core.site_secrets import (
    SECRET_NAMES,
    SecretError,
    ensure_secrets,
    load_secrets,
    secret_path,
)


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


def test_a_secret_readable_by_roots_group_is_refused(tmp_path):
    ensure_secrets(tmp_path)
    path = secret_path(tmp_path, "audit_ingest_token")
    os.chown(path, -1, 0)
    path.chmod(0o640)
    with pytest.raises(SecretError, match="audit_ingest_token is readable by others"):
        ensure_secrets(tmp_path)


def test_a_secret_readable_by_the_processs_own_group_is_accepted_as_kubernetes_mounts_it(
    tmp_path,
):
    """A pod's secrets are mounted 0440 in its own group (fsGroup); a process of that pod reads
    them, and a group it is not in still does not."""
    first = ensure_secrets(tmp_path)
    own, other = 4242, 4343
    for name in SECRET_NAMES:
        os.chown(secret_path(tmp_path, name), -1, own)
        secret_path(tmp_path, name).chmod(0o440)
    pid = os.fork()
    if pid == 0:  # a process in the pod's group (and no other)
        status = 1
        try:
            os.setgroups([own])
            os.setgid(own)
            status = 0 if load_secrets(tmp_path) == first else 1
        finally:
            os._exit(status)
    assert os.waitpid(pid, 0)[1] == 0
    for name in SECRET_NAMES:
        os.chown(secret_path(tmp_path, name), -1, other)
    with pytest.raises(SecretError, match="is readable by others"):
        load_secrets(tmp_path)
