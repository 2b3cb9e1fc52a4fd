"""A hub restart leaves running sessions alone, and the new hub adopts them."""

from __future__ import annotations

import pytest

from enclave_harness import (
    HubAPI,
    create_api_token,
    kill_hub_and_wait_for_the_next,
    login,
    run_in_kernel,
    session_server_pids,
    session_url,
)

pytestmark = pytest.mark.e2e


def test_the_hub_restarts_while_a_session_runs_and_readopts_it(enclave):
    client, _ = login(enclave, "bob")
    api = HubAPI(enclave, create_api_token(client, "bob"))
    assert api.start_session("bob", "cancer-imaging").status_code in (201, 202)
    api.wait_until_ready("bob", "cancer-imaging")
    url = session_url(enclave, "bob", "cancer-imaging")
    servers_before = session_server_pids(enclave, "bob", "cancer-imaging")
    assert servers_before

    kill_hub_and_wait_for_the_next(enclave)

    # The same server process is still there, the new hub counts it as running,
    # and code runs in it through the proxy as before.
    assert session_server_pids(enclave, "bob", "cancer-imaging") == servers_before
    server = api.http.get("/users/bob").json()["servers"]["cancer-imaging"]
    assert server["ready"] is True
    assert run_in_kernel(url, api.token, "print('still here')") == "still here\n"
    assert "The hub exited" in enclave.output()
    api.stop_session("bob", "cancer-imaging")
