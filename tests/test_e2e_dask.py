"""Dask clusters from real sessions, through the real gateway, in real sandboxes.

The projects and their tight limits (two workers a cluster, three a project) are in
conftest.py. Each attack is tried and asserted to fail, beside a control that succeeds.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import websocket
import zarr
from distributed import Client

from enclave_harness import (
    SessionNotebook,
    project_cli,
)
from enclave_hub import sandbox
from enclave_hub.audit.query import records
from enclave_hub.core.mounts import shared_subpath
from enclave_hub.local.leftovers import RunRecord
from enclave_hub.sandbox import process_start_time

pytestmark = pytest.mark.e2e

CLUSTER_WAIT = 120


class Notebook(SessionNotebook):
    """A session of a Dask test, which starts clusters."""

    def __init__(self, enclave, user: str, project: str):
        super().__init__(enclave, user, project)
        self.enclave = enclave

    def start_cluster(self, workers: int = 2) -> str:
        """`enclave.dask_client()`, waited on until its workers are up; the cluster's name."""
        name = self.run(
            "import enclave, json\n"
            f"client = enclave.dask_client(workers={workers})\n"
            f"client.wait_for_workers({workers}, timeout={CLUSTER_WAIT})\n"
            "print(json.dumps({'name': client.cluster.name}))\n"
        )["name"]
        cluster_processes(self.enclave, name)  # noted while it runs
        return name


_CLUSTER_PROCESSES: dict[str, set[tuple[int, int]]] = {}


def cluster_processes(enclave, name: str) -> list[int]:
    """Host pids of the processes one cluster had when first asked about (while it ran: its
    folder's owner, the cluster's uid, runs them) that still run. Forked by a prepared
    cluster's fork server, they do not carry the cluster's name in their environment."""
    if name not in _CLUSTER_PROCESSES:
        uid = cluster_home(enclave, name).stat().st_uid
        _CLUSTER_PROCESSES[name] = {(pid, process_start_time(pid)) for pid in processes_of_uid(uid)}
    return [pid for pid, start in _CLUSTER_PROCESSES[name] if process_start_time(pid) == start]


def processes_of_uid(uid: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            status = (proc / "status").read_text() if proc.name.isdigit() else ""
        except OSError:
            continue
        real = next(
            (line.split()[1] for line in status.splitlines() if line.startswith("Uid:")), ""
        )
        if real == str(uid):
            found.append(int(proc.name))
    return found


def wait_for(condition, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def cluster_events(enclave, name: str) -> list[dict]:
    return [r for r in records(enclave.state_dir / "audit") if r.get("target") == name]


def stopped(enclave, name: str) -> dict | None:
    """The cluster's stop record, once its processes and folder are gone too."""
    gone = not cluster_processes(enclave, name) and not (cluster_home(enclave, name)).exists()
    stops = [e for e in cluster_events(enclave, name) if e["action"] == "dask.cluster.stop"]
    return stops[0] if gone and stops else None


def cluster_home(enclave, name: str) -> Path:
    return Path(enclave.config["sessions"]["workspace_root"], ".clusters", name)


@pytest.fixture(scope="module")
def dataset(enclave) -> int:
    """A zarr array in project dask-a's dataset; its sum."""
    values = np.random.default_rng(9).integers(0, 1000, size=(400, 300), dtype=np.int64)
    array = zarr.create_array(
        enclave.base / "data" / "ds-dask" / "values.zarr",
        shape=values.shape,
        chunks=(100, 100),
        dtype=values.dtype,
    )
    array[:] = values
    return int(values.sum())


@pytest.fixture(scope="module")
def nina(enclave) -> Notebook:
    notebook = Notebook(enclave, "nina", "dask-a")
    yield notebook
    notebook.stop()


@pytest.fixture(scope="module")
def nina_cluster(nina) -> str:
    return nina.start_cluster()


def test_a_session_computes_on_its_dataset_with_two_workers(enclave, nina, nina_cluster, dataset):
    result = nina.run(
        "import json, os\n"
        "import dask.array as da\n"
        "total = da.from_zarr('/data/ds-dask/values.zarr').sum().compute()\n"
        "def probe():\n"
        "    import os\n"
        "    try:\n"
        "        open('/data/ds-dask/written-by-a-worker', 'w')\n"
        "        read_only = False\n"
        "    except OSError:\n"
        "        read_only = True\n"
        "    return {'uid': os.getuid(), 'read_only': read_only,\n"
        "            'data': sorted(os.listdir('/data')),\n"
        "            'project': os.environ['ENCLAVE_PROJECT']}\n"
        "print(json.dumps({'total': int(total), 'workers': list(client.run(probe).values()),\n"
        "                  'session_uid': os.getuid()}))\n"
    )
    assert result["total"] == dataset
    assert len(result["workers"]) == 2
    for worker in result["workers"]:
        assert worker["uid"] not in (0, result["session_uid"])
        assert worker["read_only"] and worker["data"] == ["ds-dask"]
        assert worker["project"] == "dask-a"
    start = [
        e for e in cluster_events(enclave, nina_cluster) if e["action"] == "dask.cluster.start"
    ]
    assert start and start[0]["actor"] == "nina" and start[0]["project"] == "dask-a"
    assert start[0].get("session")


def test_another_project_cannot_list_connect_to_or_stop_the_cluster(enclave, nina, nina_cluster):
    pia = Notebook(enclave, "pia", "dask-b")
    try:
        seen = pia.run(
            "import json\n"
            "from dask_gateway import Gateway\n"
            "gateway = Gateway()\n"
            "out = {'listed': [c.name for c in gateway.list_clusters()]}\n"
            f"for what, call in (('connect', lambda: gateway.connect({nina_cluster!r})),\n"
            f"                   ('stop', lambda: gateway.stop_cluster({nina_cluster!r}))):\n"
            "    try:\n"
            "        call()\n"
            "        out[what] = 'allowed'\n"
            "    except Exception as error:\n"
            "        out[what] = f'{type(error).__name__}: {error}'\n"
            "print(json.dumps(out))\n"
        )
    finally:
        pia.stop()
    assert seen["listed"] == []
    assert "403" in seen["connect"] and "403" in seen["stop"]  # the gateway forbids both
    # A person's own API token is no session's: the gateway refuses it.
    gateway = enclave.site.gateway_url
    answer = httpx.get(
        f"{gateway}/api/v1/clusters/", headers={"Authorization": f"jupyterhub {nina.token}"}
    )
    assert answer.status_code == 403, answer.text
    # The control: the cluster still works for its own session.
    assert nina.run("print(client.submit(sum, [1, 2, 3]).result())") == 6


def test_the_dashboard_is_reached_only_through_the_users_server(enclave, nina, nina_cluster):
    link = nina.run("import json; print(json.dumps(client.cluster.dashboard_link))")
    assert link == f"/user/nina/dask-a/enclave/dask/clusters/{nina_cluster}/status"
    signed_in = {"Authorization": f"token {nina.token}"}
    page = httpx.get(f"{enclave.url}{link}", headers=signed_in, timeout=30)
    assert page.status_code == 200 and "Dask" in page.text
    # Its live plots: the websocket, relayed by the user's server and the gateway.
    token = re.search(r'"token":\s*"([^"]+)"', page.text).group(1)
    socket = websocket.create_connection(
        f"{enclave.url.replace('http', 'ws', 1)}{link}/ws",
        header=[f"Authorization: token {nina.token}"],
        subprotocols=["bokeh", token],
        timeout=30,
    )
    try:
        assert '"msgtype":"ACK"' in socket.recv().replace(" ", "")
    finally:
        socket.close()
    # Not without signing in, and never straight from the gateway.
    anonymous = httpx.get(f"{enclave.url}{link}", timeout=30)
    assert anonymous.status_code != 200 or "Dask" not in anonymous.text
    gateway = enclave.site.gateway_url
    assert httpx.get(f"{gateway}/clusters/{nina_cluster}/status").status_code == 404
    served = f"{gateway}/api/enclave/dashboard/{nina_cluster}/status"
    assert httpx.get(served).status_code == 401
    person = httpx.get(served, headers={"Authorization": f"jupyterhub {nina.token}"})
    assert person.status_code == 403


def test_plain_tcp_to_a_scheduler_is_refused(enclave, nina, nina_cluster):
    address = nina.run("import json; print(json.dumps(client.scheduler_info()['address']))")
    assert address.startswith("tls://")
    host_port = address.removeprefix("tls://")
    proxy = f"{enclave.site.sessions.hub_address}:{enclave.site.dask.scheduler_proxy_port}"
    for attempt in (f"tcp://{host_port}", f"tcp://{proxy}", address):
        with pytest.raises((OSError, TimeoutError, TypeError, ValueError)):
            Client(attempt, timeout=5)


def test_a_worker_cannot_reach_the_internet_or_the_hub(enclave, nina, nina_cluster, test_host):
    from test_sandbox_attacks import Listener

    allowed = Listener(test_host.ipv4, test_host.allowed_port)
    other = Listener(test_host.ipv4)
    site = enclave.site
    targets = [
        (test_host.ipv4, allowed.port),
        (test_host.ipv4, other.port),
        ("1.1.1.1", 443),
        (str(site.sessions.hub_address), site.hub.hub_port),
        (str(site.sessions.hub_address), site.audit.port),
    ]
    try:
        outcomes = nina.run(
            "import json\n"
            "def attempt(targets):\n"
            "    import socket\n"
            "    results = {}\n"
            "    for host, port in targets:\n"
            "        s = socket.socket()\n"
            "        s.settimeout(3)\n"
            "        try:\n"
            "            s.connect((host, port))\n"
            "            results[f'{host}:{port}'] = 'connected'\n"
            "        except OSError as error:\n"
            "            results[f'{host}:{port}'] = type(error).__name__\n"
            "        finally:\n"
            "            s.close()\n"
            "    return results\n"
            f"print(json.dumps(list(client.run(attempt, {targets!r}).values())))\n"
        )
    finally:
        allowed.close()
        other.close()
    for results in outcomes:
        assert results.pop(f"{test_host.ipv4}:{allowed.port}") == "connected"  # the allow-list
        assert "connected" not in results.values(), results
    assert other.reached == []


def test_scaling_past_the_limits_is_refused_and_adapt_keeps_within_them(
    enclave, nina, nina_cluster
):
    refused = nina.run(
        "import json\n"
        "try:\n"
        "    client.cluster.scale(3)\n"
        "    out = 'scaled'\n"
        "except Exception as error:\n"
        "    out = f'{type(error).__name__}: {error}'\n"
        "print(json.dumps(out))\n"
    )
    assert refused.startswith("GatewayClusterError: Scaling to 3 workers refused")
    assert "per cluster (2 workers, profile 'daskling')" in refused
    oscar = Notebook(enclave, "oscar", "dask-a")
    try:
        result = oscar.run(
            "import enclave, json, time\n"
            "out = {}\n"
            "try:\n"
            "    enclave.dask_client(workers=2)\n"
            "except Exception as error:\n"
            "    out['two'] = f'{type(error).__name__}: {error}'\n"
            "client = enclave.dask_client(workers=0)\n"
            "client.cluster.adapt(minimum=0, maximum=10)\n"
            "out['sum'] = client.submit(sum, range(10)).result(timeout=120)\n"
            "out['workers'] = len(client.scheduler_info()['workers'])\n"
            "# Kept when the kernel exits: the session's end must stop it.\n"
            "client.cluster.shutdown_on_close = False\n"
            "print(json.dumps(out))\n"
        )
        # Two more would make four in the project, which may have three.
        assert "2 workers in this cluster, with 2 workers in the project's other" in result["two"]
        assert "may use in all (3 workers" in result["two"]
        assert result["sum"] == 45 and result["workers"] == 1
        oscar_cluster = oscar.run("import json; print(json.dumps(client.cluster.name))")
        cluster_processes(enclave, oscar_cluster)  # noted while it runs
    finally:
        oscar.stop()
    # Stopping the session stops its cluster: processes, sandbox and folder.
    stop = wait_for(lambda: stopped(enclave, oscar_cluster), "oscar's cluster stopping")
    assert stop["reason"] == "its session stopped" and stop["outcome"] == "stopped"


def test_an_idle_cluster_stops_after_its_timeout(enclave):
    notebook = Notebook(enclave, "nina", "dask-idle")
    try:
        name = notebook.start_cluster(workers=1)
        assert notebook.run("print(client.submit(pow, 2, 10).result())") == 1024
        stop = wait_for(lambda: stopped(enclave, name), "the idle cluster stopping", 90)
    finally:
        notebook.stop()
    assert stop["outcome"] == "stopped"


def test_suspending_the_project_stops_its_clusters(enclave):
    notebook = Notebook(enclave, "pia", "dask-halt")
    name = notebook.start_cluster(workers=1)
    notebook.run("client.cluster.shutdown_on_close = False; print(1)")  # outlives the kernel
    notebook.kernel.close()
    project_cli(enclave, "suspend", "dask-halt")
    stop = wait_for(lambda: stopped(enclave, name), "the suspended project's cluster stopping")
    assert stop["reason"] == "the membership or the project is no longer in force"


def _gateway_pid(enclave) -> int | None:
    """The running Dask gateway of `enclave` (not of another deployment on this machine)."""
    record = RunRecord(enclave.state_dir / "run")
    return next((p.pid for p in record.processes() if p.name == "Dask gateway" and p.alive()), None)


def test_a_killed_scheduler_then_gateway_leave_no_orphans(enclave, nina, nina_cluster):
    scheduler = next(
        pid
        for pid in cluster_processes(enclave, nina_cluster)
        if Path(f"/proc/{pid}/comm").read_text().strip() == "dask-scheduler"
        or (
            "scheduler" in Path(f"/proc/{pid}/cmdline").read_text()
            and "bwrap" not in Path(f"/proc/{pid}/cmdline").read_text()
        )
    )
    os.kill(scheduler, signal.SIGKILL)
    stop = wait_for(lambda: stopped(enclave, nina_cluster), "the broken cluster stopping")
    assert stop["outcome"] == "failed"
    assert stop["reason"] == "its scheduler exited or its sandbox no longer holds"
    # The old client fails; enclave.dask_client() starts a new cluster that works.
    after = nina.run(
        "import enclave, json\n"
        "try:\n"
        "    client.submit(sum, [1]).result(timeout=10)\n"
        "    old = 'worked'\n"
        "except Exception as error:\n"
        "    old = type(error).__name__\n"
        "client = enclave.dask_client(workers=1)\n"
        "print(json.dumps({'old': old, 'name': client.cluster.name,\n"
        "                  'sum': client.submit(sum, [1, 2]).result(timeout=120)}))\n"
    )
    assert after["old"] != "worked" and after["sum"] == 3
    assert after["name"] != nina_cluster
    second = after["name"]
    cluster_processes(enclave, second)  # noted while it runs

    gateway = _gateway_pid(enclave)
    assert gateway is not None
    os.kill(gateway, signal.SIGKILL)
    # The cluster's processes die with the gateway: nothing is left to run unwatched.
    wait_for(lambda: not cluster_processes(enclave, second), "the cluster's processes ending", 30)
    wait_for(lambda: _gateway_pid(enclave) not in (None, gateway), "the gateway's restart", 60)
    again = nina.run(
        "import enclave, json, time\n"
        "errors = []\n"
        "for attempt in range(60):\n"
        "    try:\n"
        "        client = enclave.dask_client(workers=1)\n"
        "        break\n"
        "    except enclave.ClusterUnavailable as error:\n"
        "        errors.append(str(error))\n"
        "        time.sleep(1)\n"
        "print(json.dumps({'name': client.cluster.name, 'errors': errors[:1],\n"
        "                  'sum': client.submit(sum, [2, 3]).result(timeout=120)}))\n"
    )
    assert again["sum"] == 5 and again["name"] not in (nina_cluster, second)
    assert not cluster_home(enclave, second).exists()
    for error in again["errors"]:
        assert "The Dask gateway at" in error and "cannot be reached" in error


def prepared_for(enclave, project: str) -> list[Path]:
    """The folders of the clusters prepared for sessions of `project` (its group's) and not
    yet taken."""
    workspaces = Path(enclave.config["sessions"]["workspace_root"])
    gid = (workspaces / shared_subpath(project)).stat().st_gid  # the project's group
    prepared = (workspaces / ".clusters").glob("prepared-*")
    return [folder for folder in prepared if folder.stat().st_gid == gid]


def forked_scheduler(enclave, name: str) -> int | None:
    """The cluster's scheduler, if its prepared cluster's fork server forked it."""
    for pid in cluster_processes(enclave, name):
        status = Path(f"/proc/{pid}/status").read_text()
        parent = next(line.split()[1] for line in status.splitlines() if line[:5] == "PPid:")
        if (
            Path(f"/proc/{pid}/comm").read_text().strip() == "dask-scheduler"
            and "enclave_hub.dask.forkserver" in Path(f"/proc/{parent}/cmdline").read_text()
        ):
            return pid
    return None


LEAVE_TRACES = (
    "import json, os, socket, subprocess\n"
    "def leave():\n"
    "    import os, socket, subprocess\n"
    "    open('/tmp/left-by-oscar', 'w').write('secret')\n"
    "    os.environ['LEFT_BY_OSCAR'] = 'secret'\n"
    "    subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
    "    try:\n"
    "        socket.create_connection(('192.0.2.1', 80), timeout=2)\n"
    "    except OSError:\n"
    "        pass\n"
    "    return True\n"
    "print(json.dumps(all(client.run(leave).values()) and client.run_on_scheduler(leave)))\n"
)
LOOK_FOR_TRACES = (
    "import json\n"
    "def look():\n"
    "    import os, subprocess\n"
    "    return {'file': os.path.exists('/tmp/left-by-oscar'),\n"
    "            'env': 'LEFT_BY_OSCAR' in os.environ,\n"
    "            'sleep': 'sleep' in subprocess.run(['ps', '-eo', 'comm'], capture_output=True,\n"
    "                                               text=True).stdout}\n"
    "found = [*client.run(look).values(), client.run_on_scheduler(look)]\n"
    "print(json.dumps(found))\n"
)


def test_a_prepared_cluster_holds_nothing_of_the_one_before(enclave):
    """Clusters are forked in sandboxes prepared for their session; a sandbox's number (its
    uid, its addresses) passes to another session's, and nothing else of it does."""
    dask_settings = enclave.config.get("dask", {})
    uid_base = dask_settings.get("uid_base", 300000)
    oscar = Notebook(enclave, "oscar", "dask-a")
    try:
        wait_for(lambda: prepared_for(enclave, "dask-a"), "a cluster prepared for oscar", 120)
        first = oscar.start_cluster(workers=1)
        assert forked_scheduler(enclave, first), "the prepared cluster was not used"
        number = cluster_home(enclave, first).stat().st_uid - uid_base
        assert oscar.run(LEAVE_TRACES) is True
        box = sandbox.SessionSandbox.existing(number, enclave.config["sessions"]["workspace_root"])
        assert box.network.blocked_count() > 0  # the traces are there to be found
    finally:
        oscar.stop()
    wait_for(lambda: stopped(enclave, first), "oscar's cluster stopping")
    pia = Notebook(enclave, "pia", "dask-b")
    try:
        wait_for(lambda: prepared_for(enclave, "dask-b"), "a cluster prepared for pia", 120)
        second = pia.start_cluster(workers=1)
        assert forked_scheduler(enclave, second), "the prepared cluster was not used"
        assert cluster_home(enclave, second).stat().st_uid - uid_base == number
        assert box.network.blocked_count() == 0
        found = pia.run(LOOK_FOR_TRACES)
        assert found == [{"file": False, "env": False, "sleep": False}] * 2
    finally:
        pia.stop()
