"""Resources, faults and failing closed, with real sessions and real sandboxes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from enclave_harness import (
    HubAPI,
    Kernel,
    create_api_token,
    login,
    run_in_kernel,
    session_namespaces,
    session_server_pids,
    session_url,
    set_provider_claims,
)

pytestmark = pytest.mark.e2e


def _eventually(condition: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout}s: {what}")


def _start(enclave, username: str, project: str) -> tuple[HubAPI, str]:
    """Start a session; return its API and the name of its new network namespace."""
    set_provider_claims(
        enclave, username, {"preferred_username": username, "groups": ["researchers"]}
    )
    client, _ = login(enclave, username)
    api = HubAPI(enclave, create_api_token(client, username))
    before = session_namespaces()
    response = api.start_session(username, project)
    assert response.status_code in (201, 202), response.text
    api.wait_until_ready(username, project)
    (namespace,) = session_namespaces() - before
    return api, namespace


def _stopped(api: HubAPI, username: str, project: str) -> bool:
    response = api.http.get(f"/users/{username}")
    return response.status_code == 200 and project not in response.json()["servers"]


def _sandbox_gone(namespace: str) -> bool:
    number = namespace.removeprefix("enclave-s")
    links = subprocess.run(["ip", "-brief", "link"], capture_output=True, text=True).stdout
    cgroups = list(Path("/sys/fs/cgroup").glob(f"*/enclave/s{number}"))
    cgroups += list(Path("/sys/fs/cgroup").glob(f"enclave/s{number}"))
    return (
        namespace not in session_namespaces()
        and f"enc{number}h" not in links.split()
        and not cgroups
    )


# -- 6. resources ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tight(enclave):
    """heidi's session in a project whose profile allows 300 MiB and 160 processes."""
    api, _ = _start(enclave, "heidi", "tight")
    yield api, session_url(enclave, "heidi", "tight")
    api.stop_session("heidi", "tight")


def test_memory_past_the_limit_is_killed_without_harming_others(enclave, tight):
    api, url = tight
    neighbour, _ = _start(enclave, "kim", "trial")
    neighbour_url = session_url(enclave, "kim", "trial")
    kernel = Kernel(neighbour_url, neighbour.token)
    kernel.execute("kept = 'state before'")
    result = json.loads(
        run_in_kernel(
            url,
            api.token,
            "import json, subprocess, sys\n"
            "hog = subprocess.run([sys.executable, '-c', \"b = b'x' * (600 * 2**20)\"])\n"
            "print(json.dumps({'returncode': hog.returncode}))\n",
        )
    )
    assert result["returncode"] == -signal.SIGKILL, "the allocation past the limit must be killed"
    assert run_in_kernel(url, api.token, "print('still here')") == "still here\n"
    # The neighbouring session, and the state in its kernel, are untouched.
    assert kernel.execute("print(kept)") == "state before\n"
    kernel.close()
    neighbour.stop_session("kim", "trial")


def test_a_fork_bomb_is_stopped_by_the_pids_limit(enclave, tight):
    api, url = tight
    result = json.loads(
        run_in_kernel(
            url,
            api.token,
            "import json, os, time\n"
            "children, error = 0, None\n"
            "try:\n"
            "    while children < 10_000:\n"
            "        if os.fork() == 0:\n"
            "            os.execv('/bin/sleep', ['sleep', '3'])\n"
            "        children += 1\n"
            "except OSError as e:\n"
            "    error = e.errno\n"
            "print(json.dumps({'children': children, 'errno': error}))\n",
        )
    )
    assert result["errno"] == 11, "fork must fail with EAGAIN at the pids limit"
    assert result["children"] < 160
    time.sleep(4)
    assert run_in_kernel(url, api.token, "print('recovered')") == "recovered\n"


def test_a_gpu_profile_needs_a_gpu(enclave):
    set_provider_claims(
        enclave, "heidi", {"preferred_username": "heidi", "groups": ["researchers"]}
    )
    client, _ = login(enclave, "heidi")
    api = HubAPI(enclave, create_api_token(client, "heidi"))
    response = api.start_session("heidi", "gpu-study")
    if Path("/dev/nvidia0").exists():  # on a GPU host the session starts with its GPU
        api.wait_until_ready("heidi", "gpu-study")
        url = session_url(enclave, "heidi", "gpu-study")
        code = (
            "import os; print(os.environ['CUDA_VISIBLE_DEVICES'], os.path.exists('/dev/nvidia0'))"
        )
        assert run_in_kernel(url, api.token, code) == "0 True\n"
        api.stop_session("heidi", "gpu-study")
    else:
        assert response.status_code >= 400
        assert "Profile 'gpu': 1 GPU(s) asked for, and this host has none" in response.text


# -- 7. faults ------------------------------------------------------------------------------


def test_a_killed_session_is_marked_stopped_and_its_sandbox_removed(enclave):
    api, namespace = _start(enclave, "ivan", "trial")
    for pid in session_server_pids(enclave, "ivan", "trial"):
        os.kill(pid, signal.SIGKILL)
    _eventually(lambda: _stopped(api, "ivan", "trial"), what="hub noticed the killed session")
    _eventually(lambda: _sandbox_gone(namespace), what="sandbox removed")


def _exited(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


class HubOutage:
    """Stop the hub and keep `enclave up` from restarting it until the block ends."""

    def __init__(self, enclave):
        self.enclave = enclave

    def __enter__(self) -> HubOutage:
        os.kill(self.enclave.process.pid, signal.SIGSTOP)
        hub = self.enclave.hub_pid()
        os.kill(hub, signal.SIGTERM)
        # With `enclave up` stopped, the hub stays a zombie until it is reaped.
        _eventually(lambda: _exited(hub), what="hub stopped")
        return self

    def __exit__(self, *exc: object) -> None:
        os.kill(self.enclave.process.pid, signal.SIGCONT)
        _eventually(self._hub_answers, 60, "hub back")

    def _hub_answers(self) -> bool:
        try:
            return httpx.get(f"{self.enclave.url}/hub/api/", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


def test_a_session_killed_while_the_hub_is_down_is_marked_stopped(enclave):
    api, namespace = _start(enclave, "judy", "trial")
    with HubOutage(enclave):
        for pid in session_server_pids(enclave, "judy", "trial"):
            os.kill(pid, signal.SIGKILL)
    _eventually(lambda: _stopped(api, "judy", "trial"), 60, "the new hub marked it stopped")
    _eventually(lambda: _sandbox_gone(namespace), what="sandbox removed")


def test_a_recorded_pid_that_now_belongs_to_another_process_is_not_adopted(enclave):
    api, namespace = _start(enclave, "ivan", "trial")
    decoy = subprocess.Popen(["sleep", "300"])
    try:
        with HubOutage(enclave):
            for pid in session_server_pids(enclave, "ivan", "trial"):
                os.kill(pid, signal.SIGKILL)
            database = sqlite3.connect(enclave.state_dir / "jupyterhub.sqlite")
            with database:
                (row_id, state) = database.execute(
                    "SELECT spawners.id, spawners.state FROM spawners JOIN users "
                    "ON users.id = spawners.user_id WHERE users.name = 'ivan' "
                    "AND spawners.name = 'trial'"
                ).fetchone()
                state = json.loads(state)
                state["pid"] = decoy.pid  # as if the pid had been reused by another process
                database.execute(
                    "UPDATE spawners SET state = ? WHERE id = ?", (json.dumps(state), row_id)
                )
            database.close()
        _eventually(lambda: _stopped(api, "ivan", "trial"), 60, "not adopted")
        assert decoy.poll() is None, "the process that reused the pid must be left alone"
        _eventually(lambda: _sandbox_gone(namespace), what="sandbox removed")
    finally:
        decoy.kill()


# -- 8. failing closed ----------------------------------------------------------------------


def test_a_session_whose_firewall_is_deleted_is_stopped(enclave):
    api, namespace = _start(enclave, "judy", "trial")
    subprocess.run(
        ["ip", "netns", "exec", namespace, "nft", "delete", "table", "inet", "enclave"], check=True
    )
    _eventually(lambda: _stopped(api, "judy", "trial"), 60, "stopped within a minute")
    assert session_server_pids(enclave, "judy", "trial") == []
    _eventually(lambda: _sandbox_gone(namespace), what="sandbox removed")
    assert "failing closed" in (enclave.state_dir / "logs/hub.log").read_text()
