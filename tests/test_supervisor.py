"""Checks `enclave up` makes before it starts anything."""

from __future__ import annotations

import pytest

from enclave_harness import make_site_dir
from enclave_hub.local.supervisor import StartupError, check_reachable_by_sessions


def test_a_folder_sessions_cannot_pass_through_is_named():
    closed = make_site_dir() / "closed"
    inner = closed / "workspaces"
    inner.mkdir(parents=True)
    closed.chmod(0o700)
    with pytest.raises(StartupError, match=f"{closed} is mode 700"):
        check_reachable_by_sessions(inner, "the session workspace root")
    closed.chmod(0o711)
    check_reachable_by_sessions(inner, "the session workspace root")
