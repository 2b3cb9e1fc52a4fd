"""Drive a real `enclave up` and talk to it the way users and their notebooks do."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import websocket
import yaml
from bs4 import BeautifulSoup

from enclave_hub.core.addresses import SESSION_NUMBERS
from enclave_hub.core.site_config import SiteConfig, parse_site_config

ENCLAVE = Path(sys.prefix, "bin", "enclave")
# Seconds a client waits for one HTTP answer; the load benchmark raises it for a busy hub.
HTTP_TIMEOUT = 30.0
# identity.refresh_age of the deployment the end-to-end tests share: a user's groups are asked of
# the provider again after so many seconds, so that a removal takes effect within a test.
REFRESH_AGE = 10
# The hub addresses of the deployments the tests start, one each: outside the sessions' pool
# and the test host's address.
HUB_ADDRESSES = (f"169.254.250.{n}" for n in range(1, 255))


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` different ports free on every address of this machine (each held open until all
    are found): a test binds them on loopback, the hub's address or the wildcard."""
    with contextlib.ExitStack() as held:
        probes = [held.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("0.0.0.0", 0))
        return [probe.getsockname()[1] for probe in probes]


def make_site_dir() -> Path:
    """A folder for one deployment that session uids may traverse (pytest's tmp is 0700)."""
    base = Path(tempfile.mkdtemp(prefix="enclave-test-"))
    base.chmod(0o755)
    return base


def write_site_config(base: Path, **overrides: object) -> Path:
    """A site configuration on free ports and a hub address of its own (so that deployments
    started by the tests never share one), with its state inside `base`, and without the
    demo datasets unless asked for."""
    ports = iter(free_ports(14))
    config = {
        "state_dir": str(base / "state"),
        "data_root": str(base / "data"),
        "demo_datasets": False,
        "sessions": {
            "workspace_root": str(base / "workspaces"),
            "start_timeout": 60,
            "hub_address": next(HUB_ADDRESSES),
        },
        # Sessions on paths of the hub's origin, so that the tests' HTTP clients reach every
        # part by one address; test_browser's origin test turns user_subdomains on.
        "hub": {
            "port": next(ports),
            "proxy_api_port": next(ports),
            "hub_port": next(ports),
            "user_subdomains": False,
        },
        "identity": {"dev_provider": {"port": next(ports)}},
        "audit": {"port": next(ports)},
        "dask": {
            "api_port": next(ports),
            "proxy_port": next(ports),
            "scheduler_proxy_port": next(ports),
        },
        "registry": {"port": next(ports), "reconcile_interval": 3},
        "airlock": {"port": next(ports)},
        "inquiry": {"port": next(ports)},
        "packages": {"port": next(ports)},
        "jobs": {"port": next(ports)},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path = base / "enclave.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class RunningEnclave:
    """An `enclave up` process and the addresses it serves."""

    process: subprocess.Popen
    config: dict
    base: Path

    @property
    def url(self) -> str:
        return self.site.public_url

    @property
    def idp_url(self) -> str:
        return f"http://127.0.0.1:{self.config['identity']['dev_provider']['port']}"

    @property
    def state_dir(self) -> Path:
        return Path(self.config["state_dir"])

    @property
    def site(self) -> SiteConfig:
        return parse_site_config(self.config, "the test's site configuration")

    def hub_pid(self) -> int:
        return int((self.state_dir / "run" / "hub.pid").read_text())

    def output(self) -> str:
        return Path(self.base, "up.out").read_text()

    def stop(self, timeout: float = 90) -> int:
        """Press Ctrl-C and wait for `enclave up` to exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout)


def start_enclave(config_path: Path, timeout: float = 90) -> RunningEnclave:
    """Run `enclave up --config FILE` and wait until it says it is running."""
    base = config_path.parent
    out = open(base / "up.out", "wb")  # noqa: SIM115 - kept open for the process's life
    process = subprocess.Popen(
        [str(ENCLAVE), "up", "--config", str(config_path)],
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    enclave = RunningEnclave(process, yaml.safe_load(config_path.read_text()), base)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "Enclave is running" in enclave.output():
            return enclave
        if process.poll() is not None:
            raise RuntimeError(f"enclave up exited early:\n{enclave.output()}")
        time.sleep(0.3)
    enclave.stop()
    raise RuntimeError(f"enclave up did not start in time:\n{enclave.output()}")


def login(enclave: RunningEnclave, username: str) -> tuple[httpx.Client, httpx.Response]:
    """Log in through the authorization-code flow, filling in the provider's login form."""
    client = httpx.Client(base_url=enclave.url, follow_redirects=True, timeout=HTTP_TIMEOUT)
    page = client.get("/hub/oauth_login")
    assert page.url.port == enclave.config["identity"]["dev_provider"]["port"], page.url
    form = next(
        form
        for form in BeautifulSoup(page.text, "html.parser").find_all("form")
        if form.find("input", attrs={"name": "sub"})
    )
    action = str(page.url.join(form.get("action") or str(page.url)))
    landing = client.post(action, data={"sub": username})
    return client, landing


def xsrf_headers(client: httpx.Client) -> dict[str, str]:
    token = next(cookie.value for cookie in client.cookies.jar if cookie.name == "_xsrf")
    return {"X-XSRFToken": token}


def create_api_token(client: httpx.Client, username: str) -> str:
    """What a user does on the hub's token page: make an API token with their own rights."""
    response = client.post(
        f"/hub/api/users/{username}/tokens",
        headers=xsrf_headers(client),
        json={"note": "test token", "expires_in": 3600},
    )
    response.raise_for_status()
    return response.json()["token"]


class HubAPI:
    """The hub's REST API, as one token holder."""

    def __init__(self, enclave: RunningEnclave, token: str):
        self.enclave = enclave
        self.http = httpx.Client(
            base_url=f"{enclave.url}/hub/api",
            headers={"Authorization": f"token {token}"},
            timeout=HTTP_TIMEOUT,
        )
        self.token = token

    def start_session(self, username: str, project: str) -> httpx.Response:
        return self.http.post(f"/users/{username}/servers/{project}")

    def wait_until_ready(
        self, username: str, project: str, timeout: float = 90, poll: float = 0.5
    ) -> dict:
        """The server once the hub says it is ready, asked every `poll` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.http.get(f"/users/{username}").json()["servers"].get(project, {})
            if server.get("ready"):
                return server
            if not server.get("pending") and not server.get("ready") and server != {}:
                raise AssertionError(f"session {username}/{project} stopped: {server}")
            time.sleep(poll)
        raise AssertionError(f"session {username}/{project} not ready after {timeout}s")

    def stop_session(self, username: str, project: str) -> None:
        self.http.delete(f"/users/{username}/servers/{project}").raise_for_status()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if project not in self.http.get(f"/users/{username}").json()["servers"]:
                return
            time.sleep(0.5)
        raise AssertionError(f"session {username}/{project} did not stop")


class Kernel:
    """A kernel started over a session's REST API and driven over its websocket."""

    def __init__(self, session_url: str, token: str, timeout: float = 60, name: str = ""):
        self.session_url = session_url
        self.headers = {"Authorization": f"token {token}"}
        body = {"name": name} if name else {}
        response = httpx.post(
            f"{session_url}api/kernels", headers=self.headers, json=body, timeout=HTTP_TIMEOUT
        )
        response.raise_for_status()
        self.id = response.json()["id"]
        ws_url = session_url.replace("http://", "ws://") + f"api/kernels/{self.id}/channels"
        self.channel = websocket.create_connection(
            ws_url, header=[f"Authorization: token {token}"], timeout=timeout
        )
        self.session = uuid.uuid4().hex

    def request(self, msg_type: str, content: dict, channel: str = "shell") -> str:
        """Send a request on a channel; its message id."""
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": msg_type,
            "username": "test",
            "session": self.session,
            "version": "5.3",
        }
        self.channel.send(
            json.dumps(
                {
                    "header": header,
                    "parent_header": {},
                    "metadata": {},
                    "content": content,
                    "channel": channel,
                }
            )
        )
        return msg_id

    def replies(self, msg_id: str):
        """The messages answering a request, as they come."""
        while True:
            message = json.loads(self.channel.recv())
            if message.get("parent_header", {}).get("msg_id") == msg_id:
                yield message

    def wait_ready(self) -> None:
        """Return once the kernel answers a kernel_info request."""
        msg_id = self.request("kernel_info_request", {})
        next(m for m in self.replies(msg_id) if m["msg_type"] == "kernel_info_reply")

    def execute(self, code: str) -> str:
        """Run `code`; return what it printed, or raise with the kernel's traceback."""
        printed = []
        # All of the request's fields, as JupyterLab sends them (IRkernel reads each).
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        for message in self.replies(self.request("execute_request", content)):
            kind = message["msg_type"]
            if kind == "stream":
                printed.append(message["content"]["text"])
            elif kind == "error":
                raise AssertionError("kernel error: " + "\n".join(message["content"]["traceback"]))
            elif kind == "status" and message["content"]["execution_state"] == "idle":
                return "".join(printed)
        raise AssertionError("the kernel's channel closed")

    def close(self) -> None:
        self.channel.close()
        url = f"{self.session_url}api/kernels/{self.id}"
        httpx.delete(url, headers=self.headers, timeout=HTTP_TIMEOUT)


def run_in_kernel(session_url: str, token: str, code: str, timeout: float = 60) -> str:
    """Start a kernel over REST, run `code` over the websocket, return what it printed."""
    kernel = Kernel(session_url, token, timeout)
    try:
        return kernel.execute(code)
    finally:
        kernel.close()


def session_url(enclave: RunningEnclave, username: str, project: str) -> str:
    return f"{enclave.url}/user/{username}/{project}/"


class SessionNotebook:
    """A user's session in one project, with one kernel kept open between cells."""

    def __init__(self, enclave, user: str, project: str, timeout: float = 180):
        set_provider_claims(enclave, user, {"preferred_username": user, "groups": ["researchers"]})
        self.client, _ = login(enclave, user)  # signed in at the hub, as in a browser
        self.token = create_api_token(self.client, user)
        self.api = HubAPI(enclave, self.token)
        self.user, self.project = user, project
        self.url = session_url(enclave, user, project)
        assert self.api.start_session(user, project).status_code in (201, 202)
        self.api.wait_until_ready(user, project)
        self.kernel = Kernel(self.url, self.token, timeout=timeout)
        self.kernel.wait_ready()

    def run(self, code: str) -> dict:
        """Run a cell that prints one JSON document last; return it."""
        return json.loads(self.kernel.execute(code).strip().splitlines()[-1])

    def stop(self) -> None:
        self.kernel.close()
        self.api.stop_session(self.user, self.project)


def kill_hub_and_wait_for_the_next(enclave: RunningEnclave, timeout: float = 60) -> int:
    """Kill the hub as a crash would; return the pid of the hub `enclave up` starts instead."""
    old_pid = enclave.hub_pid()
    os.kill(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid = enclave.hub_pid()
            up = httpx.get(f"{enclave.url}/hub/api/", timeout=2).status_code == 200
        except (OSError, ValueError, httpx.HTTPError):
            pid, up = None, False
        if up and pid not in (None, old_pid):
            return pid
        time.sleep(0.3)
    raise AssertionError(f"the hub did not come back:\n{enclave.output()}")


def set_provider_claims(enclave: RunningEnclave, username: str, claims: dict) -> None:
    """Change a user at the development provider, as an IdP admin would."""
    response = httpx.put(f"{enclave.idp_url}/users/{username}", json=claims, timeout=10)
    response.raise_for_status()


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def sandbox_namespaces() -> set[str]:
    """The network namespaces of Enclave's sandboxes on this machine: sessions', clusters'."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in listing.splitlines() if line.startswith("enclave-s")}


def session_namespaces() -> set[str]:
    """The network namespaces of Enclave sessions on this machine (not of the clusters that
    the Dask gateway prepares for them meanwhile)."""
    return {
        name
        for name in sandbox_namespaces()
        if int(name.removeprefix("enclave-s")) in SESSION_NUMBERS
    }


def session_server_pids(enclave: RunningEnclave, username: str, project: str) -> list[int]:
    """Host pids of the notebook server of one session of `enclave` (found by the variables its
    hub gave it; other deployments on this machine may have sessions of the same names)."""
    hub_api = f"{enclave.site.hub_url}/"
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_text().split("\0")
            if not argv[0].endswith(("python3", "python")) or "jupyterhub.singleuser" not in argv:
                continue
            env = environ_of(int(proc.name))
        except OSError:
            continue
        if (
            env.get("JUPYTERHUB_USER") == username
            and env.get("JUPYTERHUB_SERVER_NAME") == project
            and env.get("JUPYTERHUB_API_URL", "").startswith(hub_api)
        ):
            found.append(int(proc.name))
    return found


def require_root() -> None:
    if os.geteuid() != 0:
        raise RuntimeError("these tests start sessions under their own uids and need root")


def project_cli(enclave: RunningEnclave, *argv: str) -> subprocess.CompletedProcess:
    """`enclave project ARGV...` against the running enclave's site configuration."""
    command = [sys.executable, "-m", "enclave_hub.cli", "project", *argv]
    result = subprocess.run(
        [*command, "--config", str(enclave.base / "enclave.yaml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result


def run_in_project_session(
    enclave: RunningEnclave,
    user: str,
    project: str,
    datasets: list[str],
    code: str,
    profile: str = "default",
) -> dict:
    """Make `project` (of `profile`) with `user` its member and `datasets` granted, start the
    user's session for it, run `code` in a kernel there, stop the session; the JSON object
    printed last."""
    project_cli(enclave, "create", project, "--title", project, "--profile", profile)
    project_cli(enclave, "add-member", project, user)
    for dataset in datasets:
        project_cli(enclave, "grant", project, dataset)
    set_provider_claims(enclave, user, {"preferred_username": user, "groups": ["researchers"]})
    client, _ = login(enclave, user)
    api = HubAPI(enclave, create_api_token(client, user))
    assert api.start_session(user, project).status_code in (201, 202)
    api.wait_until_ready(user, project)
    try:
        printed = run_in_kernel(session_url(enclave, user, project), api.token, code, 180)
    finally:
        api.stop_session(user, project)
    return json.loads(printed.strip().splitlines()[-1])
