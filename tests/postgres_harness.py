"""A real PostgreSQL server for the tests, in a temporary folder, run as the `postgres` user."""

from __future__ import annotations

import contextlib
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


class PostgresServer:
    """A throw-away cluster on a free loopback port, which a test may stop and start again."""

    def __init__(self):
        self.programs = _server_programs()
        owner = pwd.getpwnam(SERVER_USER)
        self.base = Path(tempfile.mkdtemp(prefix="enclave-pg-"))
        os.chown(self.base, owner.pw_uid, owner.pw_gid)
        self.port = free_port()
        self.data = self.base / "data"
        self.url = f"postgresql+psycopg://enclave@127.0.0.1:{self.port}"  # no database
        self._as_server_user(
            self.programs / "initdb", "-D", self.data, "--auth=trust", "-U", "enclave"
        )

    def _as_server_user(self, *argv) -> None:
        subprocess.run(
            list(map(str, argv)), user=SERVER_USER, check=True, capture_output=True, cwd=self.base
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1"
        self._control("-o", options, "-l", self.base / "log", "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` ends its sessions cleanly, `immediate` as a crash would."""
        self._control("-m", mode, "-w", "stop")

    def _control(self, *argv) -> None:
        self._as_server_user(self.programs / "pg_ctl", "-D", self.data, *argv)

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@contextmanager
def stoppable_postgresql_server() -> Iterator[PostgresServer]:
    """A server of its own for a test that stops it; removed afterwards."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.remove()


@contextmanager
def postgresql_server() -> Iterator[str]:
    """Start a throw-away cluster on a free loopback port; yield its URL (no database)."""
    with stoppable_postgresql_server() as server:
        yield server.url


def new_database(server_url: str) -> str:
    """A fresh, empty database on the server; its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    address = server_url.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(address, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{server_url}/{name}"
