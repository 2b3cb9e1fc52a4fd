"""A real PostgreSQL server for the tests, in a temporary folder, run as the `postgres` user."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from enclave_harness import free_port

SERVER_USER = "postgres"


def _server_programs() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    assert found, "PostgreSQL is required for these tests: the README's test command installs it"
    return Path(found[-1]).parent


@contextmanager
def postgresql_server() -> Iterator[str]:
    """Start a throw-away cluster on a free loopback port; yield its URL (no database)."""
    programs = _server_programs()
    owner = pwd.getpwnam(SERVER_USER)
    base = Path(tempfile.mkdtemp(prefix="enclave-pg-"))
    os.chown(base, owner.pw_uid, owner.pw_gid)
    port = free_port()
    data = base / "data"

    def as_server_user(*argv: str) -> None:
        subprocess.run(argv, user=SERVER_USER, check=True, capture_output=True, cwd=base)

    as_server_user(str(programs / "initdb"), "-D", str(data), "--auth=trust", "-U", "enclave")
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1"
    control = str(programs / "pg_ctl")
    as_server_user(control, "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "start")
    try:
        yield f"postgresql+psycopg://enclave@127.0.0.1:{port}"
    finally:
        as_server_user(control, "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


def new_database(server_url: str) -> str:
    """A fresh, empty database on the server; its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    address = server_url.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(address, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{server_url}/{name}"
