"""A full run from start to Ctrl-C: everything stops, and no secret is left in logs or sessions."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest

from enclave_harness import (
    HubAPI,
    create_api_token,
    environ_of,
    login,
    make_site_dir,
    run_in_kernel,
    session_server_pids,
    session_url,
    start_enclave,
    write_site_config,
)
from enclave_hub.core.site_secrets import load_secrets

pytestmark = pytest.mark.e2e


def _listening(port: int, addresses: tuple[str, ...]) -> bool:
    for address in addresses:
        with socket.socket() as probe:
            if probe.connect_ex((address, port)) == 0:
                return True
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_full_run_leaks_no_secret_and_ctrl_c_stops_everything():
    enclave = start_enclave(write_site_config(make_site_dir()))
    try:
        secrets = load_secrets(enclave.state_dir).values()
        login(enclave, "mallory")  # a refused login is logged too
        client, _ = login(enclave, "alice")
        api = HubAPI(enclave, create_api_token(client, "alice"))
        assert api.start_session("alice", "genomics-pilot").status_code in (201, 202)
        api.wait_until_ready("alice", "genomics-pilot")
        url = session_url(enclave, "alice", "genomics-pilot")
        kernel_env = run_in_kernel(
            url, api.token, "import json, os; print(json.dumps(dict(os.environ)))"
        )
        (server_pid,) = session_server_pids(enclave, "alice", "genomics-pilot")
        server_env = environ_of(server_pid)
        hub_pid = enclave.hub_pid()
        os.kill(hub_pid, signal.SIGTERM)  # a hub restart belongs to a full run
    except BaseException:
        enclave.stop()
        raise

    assert enclave.stop() == 0, enclave.output()

    # Ctrl-C stopped the session and every component: nothing listens, nothing runs.
    assert not _pid_alive(server_pid)
    config = enclave.config
    for port in (
        config["hub"]["port"],
        config["hub"]["proxy_api_port"],
        config["hub"]["hub_port"],
        config["identity"]["dev_provider"]["port"],
        config["audit"]["port"],
    ):
        addresses = ("127.0.0.1", str(enclave.site.sessions.hub_address))
        assert not _listening(port, addresses), f"port {port} still open after Ctrl-C"

    environments = [kernel_env, json.dumps(server_env)]
    logs = [path for path in Path(enclave.state_dir, "logs").rglob("*") if path.is_file()]
    assert {"hub.log", "proxy.log", "idp.log", "audit.log"} <= {path.name for path in logs}
    texts = [path.read_text(errors="replace") for path in logs] + [enclave.output()]
    for secret in secrets:
        for environment in environments:
            assert secret not in environment, "a hub secret reached a session's environment"
        for path, text in zip([*logs, "enclave up output"], texts, strict=True):
            assert secret not in text, f"a hub secret was written to {path}"
