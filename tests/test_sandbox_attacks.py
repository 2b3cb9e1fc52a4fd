"""Attacks run from inside a real session, each asserted to fail (and its control to succeed)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from enclave_harness import (
    HubAPI,
    create_api_token,
    login,
    run_in_kernel,
    session_server_pids,
    session_url,
)
from enclave_hub.core.site_secrets import load_secrets

pytestmark = pytest.mark.e2e


class Session:
    """A running session and a way to run Python in it."""

    def __init__(self, enclave, username: str, project: str):
        client, _ = login(enclave, username)
        self.api = HubAPI(enclave, create_api_token(client, username))
        self.username, self.project = username, project
        response = self.api.start_session(username, project)
        assert response.status_code in (201, 202) or "already running" in response.text, (
            response.text
        )
        self.api.wait_until_ready(username, project)
        self.url = session_url(enclave, username, project)
        self.home = Path(enclave.config["sessions"]["workspace_root"], project, "home", username)

    def run(self, code: str) -> dict:
        """Run `code`, which must print one JSON document, and return it."""
        return json.loads(run_in_kernel(self.url, self.api.token, code))


@pytest.fixture(scope="module")
def alice(enclave) -> Session:
    session = Session(enclave, "alice", "cancer-imaging")
    yield session
    session.api.stop_session("alice", "cancer-imaging")


@pytest.fixture(scope="module")
def bob(enclave) -> Session:
    session = Session(enclave, "bob", "cardiac-mri")
    yield session
    session.api.stop_session("bob", "cardiac-mri")


class Listener:
    """A TCP or UDP server on the test host that records who reached it."""

    def __init__(self, address: str, port: int = 0, udp: bool = False):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
        self.sock = socket.socket(family, kind)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.port = self.sock.getsockname()[1]
        self.reached: list[object] = []
        if not udp:
            self.sock.listen()
        threading.Thread(target=self._serve, args=(udp,), daemon=True).start()

    def _serve(self, udp: bool) -> None:
        while True:
            try:
                if udp:
                    self.reached.append(self.sock.recvfrom(100))
                else:
                    connection, peer = self.sock.accept()
                    self.reached.append(peer)
                    connection.sendall(b"hello from the test host\n")
                    connection.close()
            except OSError:
                return

    def close(self) -> None:
        # Shut down first: a thread blocked in accept() would keep the port listening.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def _connect_code(targets: list[tuple[str, int]]) -> str:
    return (
        "import json, socket\n"
        "results = {}\n"
        f"for host, port in {targets!r}:\n"
        "    family = socket.AF_INET6 if ':' in host else socket.AF_INET\n"
        "    s = socket.socket(family, socket.SOCK_STREAM)\n"
        "    s.settimeout(3)\n"
        "    try:\n"
        "        s.connect((host, port))\n"
        "        results[f'{host}:{port}'] = 'connected: '\n"
        "        s.settimeout(1)\n"
        "        results[f'{host}:{port}'] += s.recv(100).decode()\n"
        "    except TimeoutError:\n"
        "        results.setdefault(f'{host}:{port}', 'TimeoutError')\n"
        "    except OSError as error:\n"
        "        results[f'{host}:{port}'] = type(error).__name__\n"
        "    finally:\n"
        "        s.close()\n"
        "print(json.dumps(results))\n"
    )


def _connected(outcome: str) -> bool:
    return outcome.startswith("connected")


# -- 1. egress ------------------------------------------------------------------------------


def test_egress_only_to_the_allow_list(enclave, alice, test_host):
    allowed = Listener(test_host.ipv4, test_host.allowed_port)
    other_v4 = Listener(test_host.ipv4)
    other_v6 = Listener(test_host.ipv6)
    try:
        results = alice.run(
            _connect_code(
                [
                    (test_host.ipv4, allowed.port),
                    (test_host.ipv4, other_v4.port),
                    (test_host.ipv6, other_v6.port),
                ]
            )
        )
    finally:
        for listener in (allowed, other_v4, other_v6):
            listener.close()
    assert results[f"{test_host.ipv4}:{allowed.port}"] == "connected: hello from the test host\n"
    assert not _connected(results[f"{test_host.ipv4}:{other_v4.port}"])
    assert not _connected(results[f"{test_host.ipv6}:{other_v6.port}"])
    assert other_v4.reached == [] and other_v6.reached == []
    # Blocked attempts are counted, and the hub logs them with the session's identity.
    log = enclave.state_dir / "logs" / "hub.log"
    deadline = time.monotonic() + 30
    while "Session alice/cancer-imaging (uid" not in log.read_text():
        assert time.monotonic() < deadline, "blocked attempts were not logged"
        time.sleep(0.5)
    assert "blocked network attempt" in log.read_text()


def test_udp_icmp_and_dns_do_not_leave(alice, test_host):
    udp = Listener(test_host.ipv4, udp=True)
    try:
        results = alice.run(
            "import json, socket\n"
            "out = {}\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"try:\n    s.sendto(b'leak', ({test_host.ipv4!r}, {udp.port}))\n"
            "    out['udp'] = 'sent'\n"
            "except OSError as error:\n    out['udp'] = type(error).__name__\n"
            "for name, args in (('icmp_dgram', (socket.AF_INET, socket.SOCK_DGRAM, 1)),\n"
            "                   ('icmp_raw', (socket.AF_INET, socket.SOCK_RAW, 1))):\n"
            "    try:\n"
            "        p = socket.socket(*args)\n"
            "        p.settimeout(2)\n"
            "        p.sendto(b'\\x08\\x00\\xf7\\xff\\x00\\x00\\x00\\x00', "
            f"({test_host.ipv4!r}, 0))\n"
            "        p.recv(100)\n"
            "        out[name] = 'answered'\n"
            "    except OSError as error:\n"
            "        out[name] = type(error).__name__\n"
            "for name in ('example.org', 'pypi.org', 'localhost-but-not'):\n"
            "    try:\n"
            "        socket.getaddrinfo(name, 443)\n"
            "        out['dns ' + name] = 'resolved'\n"
            "    except OSError as error:\n"
            "        out['dns ' + name] = type(error).__name__\n"
            "print(json.dumps(out))\n"
        )
        time.sleep(1)
        assert udp.reached == [], "a UDP datagram left the session"
    finally:
        udp.close()
    assert results["icmp_dgram"] != "answered" and results["icmp_raw"] != "answered"
    for name in ("example.org", "pypi.org", "localhost-but-not"):
        assert results[f"dns {name}"] != "resolved"


# -- 2. lateral movement --------------------------------------------------------------------


def _proxy_routes(enclave) -> dict:
    token = load_secrets(enclave.state_dir).proxy_token
    response = httpx.get(
        f"http://127.0.0.1:{enclave.config['hub']['proxy_api_port']}/api/routes",
        headers={"Authorization": f"token {token}"},
    )
    return response.json()


def _kernel_ports(session: Session) -> list[int]:
    runtime = session.home / ".local/share/jupyter/runtime"
    ports = []
    for connection_file in runtime.glob("kernel-*.json"):
        info = json.loads(connection_file.read_text())
        ports += [info[key] for key in info if key.endswith("_port")]
    return ports


def test_no_lateral_movement(enclave, alice, bob):
    # A live kernel of bob's to aim at.
    headers = {"Authorization": f"token {bob.api.token}"}
    kernel = httpx.post(f"{bob.url}api/kernels", headers=headers, json={}, timeout=30).json()
    time.sleep(2)
    bob_target = _proxy_routes(enclave)[f"/user/bob/{bob.project}"]["target"]
    bob_host, bob_port = bob_target.removeprefix("http://").split(":")
    kernel_ports = _kernel_ports(bob)
    assert kernel_ports, "bob's kernel should have written its connection file"
    hub = enclave.config["hub"]
    hub_address = str(enclave.site.sessions.hub_address)
    idp_port = enclave.config["identity"]["dev_provider"]["port"]
    targets = [
        (bob_host, int(bob_port)),
        *[(bob_host, port) for port in kernel_ports],
        ("127.0.0.1", hub["proxy_api_port"]),
        (hub_address, hub["proxy_api_port"]),
        (hub_address, hub["port"]),
        ("127.0.0.1", idp_port),
        (hub_address, idp_port),
    ]
    results = alice.run(_connect_code([*targets, (hub_address, hub["hub_port"])]))
    for host, port in targets:
        assert not _connected(results[f"{host}:{port}"]), f"{host}:{port} was reached"
    # The control: the hub's API, the one host service a session needs, is reachable.
    assert (
        _connected(results[f"{hub_address}:{hub['hub_port']}"])
        or results[f"{hub_address}:{hub['hub_port']}"] == "TimeoutError"
    ), results
    reached_hub = alice.run(
        "import json, os, urllib.request\n"
        "print(json.dumps({'status': urllib.request.urlopen("
        "os.environ['JUPYTERHUB_API_URL']).status}))\n"
    )
    assert reached_hub["status"] == 200
    database = enclave.state_dir / "jupyterhub.sqlite"
    opened = alice.run(
        f"import json\ntry:\n    open({str(database)!r}, 'rb').read(16)\n    r = 'read'\n"
        "except OSError as error:\n    r = type(error).__name__\nprint(json.dumps({'r': r}))\n"
    )
    assert opened["r"] != "read"
    httpx.delete(f"{bob.url}api/kernels/{kernel['id']}", headers=headers, timeout=30)


# -- 3. files -------------------------------------------------------------------------------


def test_files_outside_the_session_are_out_of_reach(enclave, alice, bob):
    bob.run("import json; open('/home/bob/notes.txt', 'w').write('private'); print('{}')")
    outside = alice.home / "escape"
    outside.unlink(missing_ok=True)
    outside.symlink_to(enclave.state_dir / "secrets" / "cookie_secret")
    workspace = Path(enclave.config["sessions"]["workspace_root"])
    paths = {
        "state": str(enclave.state_dir / "secrets" / "cookie_secret"),
        "bob_home_host": str(workspace / "cardiac-mri/home/bob/notes.txt"),
        "bob_home": "/home/bob/notes.txt",
        "other_dataset": "/data/ds-cardiac/README.txt",
        "other_dataset_host": str(Path(enclave.config["data_root"], "ds-cardiac/README.txt")),
        "symlink": "/home/alice/escape",
    }
    results = alice.run(
        "import json\nout = {}\n"
        f"for name, path in {paths!r}.items():\n"
        "    try:\n        open(path).read()\n        out[name] = 'read'\n"
        "    except OSError as error:\n        out[name] = type(error).__name__\n"
        "out['own_dataset'] = open('/data/ds-imaging/README.txt').read()\n"
        "try:\n    open('/data/ds-imaging/new.txt', 'w')\n    out['write'] = 'written'\n"
        "except OSError as error:\n    out['write'] = error.errno\n"
        "print(json.dumps(out))\n"
    )
    for name in paths:
        assert results[name] != "read", f"{name} was readable from alice's session"
    assert results["own_dataset"] == "dataset ds-imaging\n"
    assert results["write"] == 30, "writing to a dataset must fail with EROFS"


# -- 4. processes ---------------------------------------------------------------------------


def test_processes_outside_cannot_be_seen_signalled_or_injected(enclave, alice, bob):
    (bob_server,) = session_server_pids(enclave, "bob", bob.project)
    setuid_copy = alice.home / "id-setuid"
    shutil.copy("/usr/bin/id", setuid_copy)
    os.chown(setuid_copy, 0, 0)
    setuid_copy.chmod(0o4755)
    assert setuid_copy.stat().st_mode & stat.S_ISUID
    results = alice.run(
        "import fcntl, json, os, subprocess, termios\nout = {}\n"
        "out['pids'] = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
        f"for name, pid in (('hub', {enclave.hub_pid()}), ('bob', {bob_server})):\n"
        "    try:\n        os.kill(pid, 0)\n        out[name] = 'signalled'\n"
        "    except OSError as error:\n        out[name] = type(error).__name__\n"
        "    try:\n        open(f'/proc/{pid}/environ').read()\n"
        "        out[name + '_env'] = 'read'\n"
        "    except OSError as error:\n        out[name + '_env'] = type(error).__name__\n"
        "try:\n    os.open('/dev/tty', os.O_RDWR)\n    out['tty'] = 'opened'\n"
        "except OSError as error:\n    out['tty'] = type(error).__name__\n"
        "injected = []\n"
        "for fd in (0, 1, 2):\n"
        "    try:\n        fcntl.ioctl(fd, termios.TIOCSTI, b'x')\n        injected.append(fd)\n"
        "    except OSError:\n        pass\n"
        "out['tiocsti'] = injected\n"
        "out['setuid_euid'] = subprocess.run(['/home/alice/id-setuid', '-u'],\n"
        "    capture_output=True, text=True).stdout.strip()\n"
        "su = subprocess.run(['su', '-c', 'id -u', 'root'], capture_output=True, text=True,\n"
        "    stdin=subprocess.DEVNULL)\n"
        "out['su'] = su.stdout.strip()\n"
        "status = open('/proc/self/status').read()\n"
        "out['status'] = [line for line in status.splitlines()\n"
        "                 if line.startswith(('CapEff', 'NoNewPrivs'))]\n"
        "out['uid'] = os.getuid()\n"
        "print(json.dumps(out))\n"
    )
    assert len(results["pids"]) < 20, "a session sees only its own processes"
    for name in ("hub", "bob"):
        assert results[name] == "ProcessLookupError"
        assert results[f"{name}_env"] != "read"
    assert results["tty"] != "opened"
    assert results["tiocsti"] == []
    assert results["setuid_euid"] == str(results["uid"]), "a setuid binary gave privileges"
    assert results["su"] != "0"
    assert "CapEff:\t0000000000000000" in results["status"]
    assert "NoNewPrivs:\t1" in results["status"]


# -- 5. secrets -----------------------------------------------------------------------------


def test_no_hub_secret_in_a_sessions_environment_or_files(enclave, alice):
    secrets = load_secrets(enclave.state_dir).values()
    environment = alice.run("import json, os; print(json.dumps(dict(os.environ)))")
    (server,) = session_server_pids(enclave, "alice", alice.project)
    server_environment = Path(f"/proc/{server}/environ").read_bytes().decode()
    for secret in secrets:
        assert secret not in json.dumps(environment)
        assert secret not in server_environment
    # Everything the session can see that Enclave or sessions write to (system folders
    # under /usr are installed by Debian and never written by Enclave).
    mounts = alice.run(
        "import json; print(json.dumps([l.split()[4] for l in open('/proc/self/mountinfo')]))"
    )
    assert "/etc" in mounts and "/home/alice" in mounts and "/data/ds-imaging" in mounts
    workspace = Path(enclave.config["sessions"]["workspace_root"])
    visible = [
        "/etc",
        str(alice.home),
        str(workspace / alice.project / "shared"),
        str(Path(enclave.config["data_root"], "ds-imaging")),
        str(Path(__file__).resolve().parents[1]),  # Enclave's code and .venv, read-only
        str(workspace / ".sandbox"),
    ]
    found = subprocess.run(
        ["grep", "-r", "-l", "-F", "-s", "-f", "-", *visible],
        input="\n".join(secrets),
        capture_output=True,
        text=True,
    )
    assert found.returncode == 1, f"hub secrets found in: {found.stdout}"
