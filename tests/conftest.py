"""Shared fixtures: one real deployment (provider, proxy, hub) for the end-to-end tests."""

from __future__ import annotations

import pytest

from enclave_harness import (
    RunningEnclave,
    make_site_dir,
    require_root,
    start_enclave,
    write_site_config,
)
from enclave_hub.config import SEED_PROJECTS

# A project for users that tests create at the provider, besides the demo users.
TRIAL_PROJECT = {"id": "trial", "title": "Trial project", "members": ["frank", "grace"]}


@pytest.fixture(scope="session")
def enclave() -> RunningEnclave:
    """`enclave up` on free loopback ports, shared by the end-to-end tests."""
    require_root()
    base = make_site_dir()
    projects = [project.model_dump() for project in SEED_PROJECTS] + [TRIAL_PROJECT]
    running = start_enclave(write_site_config(base, projects=projects))
    yield running
    assert running.stop() == 0, running.output()
