"""`enclave up`: start the identity provider, the audit service, the proxy, the registry
service, the airlock service, the Dask gateway and the hub.

Each component runs in its own process session with its output in `<state>/logs/`. The hub is
restarted if it exits (sessions and the proxy survive a hub restart and are re-adopted; before
each start of the hub, sandboxes its database does not record are removed), and so are the
proxy (the hub puts its routes back), the audit service (sessions refuse what they cannot
record meanwhile) and the Dask gateway (its clusters end with it, and users start new ones); if
any other component exits, everything stops. SIGINT or SIGTERM stops the sessions through the
hub's API, then the hub, the proxy and the provider, then removes any sandbox still there.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..core.registry import site_registry
from ..core.site_config import SiteConfig, write_site_config
from ..core.site_secrets import Secrets, ensure_secrets
from ..kernels import has_gpu, has_r, install_kernels
from ..sandbox.network import add_hub_address, has_address, remove_hub_address
from . import StartupError
from .demo import DemoDataset, grant_demo_datasets, ingest_demo_datasets
from .hub_files import hub_paths
from .leftovers import (
    SUPERVISOR,
    RunRecord,
    hub_owned_sandboxes,
    remove_leftovers,
    remove_sandboxes,
)
from .ports import bound_sockets, port_problem

HUB_CONFIG_FILE = Path(__file__).with_name("jupyterhub_config.py")
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
SESSION_STOP_TIMEOUT = 60.0
RESTART_LIMIT = 5
PROXY = "proxy"
RESTART_WINDOW = 300.0


@dataclass
class Component:
    """One long-running process of the deployment."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    is_ready: Callable[[], bool]
    process: subprocess.Popen | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self) -> None:
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def exit_status(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.exit_status()
            if status is not None:
                raise StartupError(
                    f"the {self.name} exited while starting (status {status}); "
                    f"its log {self.log_path} ends with:\n{self.log_tail()}"
                )
            if self.is_ready():
                return
            time.sleep(0.2)
        raise StartupError(f"the {self.name} was not ready within {timeout:.0f} seconds")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def port_bindings(site: SiteConfig) -> dict[str, tuple[str, str]]:
    """What listens on each of the site's ports on one machine, and on which address."""
    hub_address = str(site.sessions.hub_address)
    return {
        "hub.port": ("the public proxy port", str(site.hub.bind)),
        "hub.proxy_api_port": ("the proxy's API", "127.0.0.1"),
        "hub.hub_port": ("the hub", "0.0.0.0"),
        "audit.port": ("the audit service", "0.0.0.0"),
        "registry.port": ("the registry service", "127.0.0.1"),
        "airlock.port": ("the airlock service", hub_address),
        "inquiry.port": ("the inquiry service", "127.0.0.1"),
        "packages.port": ("the package index", hub_address),
        "jobs.port": ("the job service", hub_address),
        "dask.api_port": ("the Dask gateway", hub_address),
        "dask.proxy_port": ("the Dask gateway", hub_address),
        "dask.scheduler_proxy_port": ("the Dask gateway", hub_address),
        "identity.dev_provider.port": ("the development OIDC provider", "127.0.0.1"),
    }


def check_ports(site: SiteConfig) -> None:
    """Fail, naming the port, its key and what is wrong, if any port Enclave needs is taken."""
    bindings = port_bindings(site)
    for key, port in site.ports.items():
        purpose, address = bindings[key]
        problem = port_problem(address, port)
        if problem is None:
            continue
        remedy = (
            "stop what uses it or choose another port"
            if problem.in_use
            else f"change {key} or the address it is bound to"
        )
        raise StartupError(
            f"port {port} on {address} ({key}, {purpose}) {problem.reason}; {remedy}"
        )


def check_reachable_by_sessions(path: Path, what: str) -> None:
    """Sessions run under their own uids: every folder above `path` must let them through."""
    for folder in [path, *path.parents]:
        if not folder.stat().st_mode & 0o001:
            raise StartupError(
                f"{what} {path} cannot be reached by sessions: {folder} is mode "
                f"{folder.stat().st_mode & 0o777:o}; sessions need it to be searchable (o+x)"
            )


def _say(line: str) -> None:
    print(line, flush=True)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _tcp_open(port: int, address: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def find_proxy_command() -> str:
    """configurable-http-proxy, installed beside this Python or on PATH."""
    beside = Path(sys.prefix, "bin", "configurable-http-proxy")
    if beside.exists():
        return str(beside)
    found = shutil.which("configurable-http-proxy")
    if found is None:
        raise StartupError(
            "configurable-http-proxy is not installed; run the README's set-up command"
        )
    return found


@dataclass(frozen=True)
class PlannedComponent:
    """What `enclave up` runs for one component, decided before anything starts."""

    name: str
    argv: tuple[str, ...]
    log_name: str
    is_ready: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)


def component_plan(
    site: SiteConfig, config_path: Path, proxy_command: str, secrets: Secrets
) -> list[PlannedComponent]:
    """The deployment's processes in the order they start, the hub last: how each is run, where
    it logs and how it is seen ready (each is restarted when it exits, up to RESTART_LIMIT
    times in RESTART_WINDOW seconds)."""

    def enclave_module(name: str, module: str, log_name: str, is_ready, **more):
        argv = (sys.executable, "-m", module, "--config", str(config_path))
        return PlannedComponent(name, argv, log_name, is_ready, **more)

    hub_address = str(site.sessions.hub_address)
    plan = []
    if site.uses_dev_provider:
        plan.append(
            enclave_module(
                "development OIDC provider",
                "enclave_hub.local.devidp",
                "idp.log",
                lambda: _http_ok(f"{site.issuer_url}/.well-known/openid-configuration"),
            )
        )
    proxy_argv = (
        proxy_command,
        *("--ip", str(site.hub.bind), "--port", str(site.hub.port)),
        *("--api-ip", "127.0.0.1", "--api-port", str(site.hub.proxy_api_port)),
        *("--error-target", f"{site.hub_url}/hub/error"),
        *(("--host-routing",) if site.hub.user_subdomains else ()),
    )
    hub_argv = (sys.executable, "-m", "jupyterhub", "-f", str(HUB_CONFIG_FILE))
    return [
        *plan,
        enclave_module(
            "audit service",
            "enclave_hub.audit.service",
            "audit.log",
            lambda: _tcp_open(site.audit.port, hub_address),
        ),
        PlannedComponent(
            PROXY,
            proxy_argv,
            "proxy.log",
            lambda: _tcp_open(site.hub.proxy_api_port),
            env={"CONFIGPROXY_AUTH_TOKEN": secrets.proxy_token},
        ),
        enclave_module(
            "registry service",
            "enclave_hub.registry.service",
            "registry.log",
            lambda: _tcp_open(site.registry.port),
        ),
        enclave_module(
            "airlock service",
            "enclave_hub.airlock.service",
            "airlock.log",
            lambda: _tcp_open(site.airlock.port, hub_address),
        ),
        enclave_module(
            "inquiry service",
            "enclave_hub.inquiry.service",
            "inquiry.log",
            lambda: _tcp_open(site.inquiry.port),
        ),
        enclave_module(
            "package index",
            "enclave_hub.packages.service",
            "packages.log",
            lambda: _tcp_open(site.packages.port, hub_address),
        ),
        enclave_module(
            "job service",
            "enclave_hub.jobs.service",
            "jobs.log",
            lambda: _tcp_open(site.jobs.port, hub_address),
        ),
        enclave_module(
            "Dask gateway",
            "enclave_hub.dask.service",
            "dask-gateway.log",
            lambda: _http_ok(f"{site.gateway_url}/api/health"),
        ),
        PlannedComponent(
            "hub",
            hub_argv,
            "hub.log",
            lambda: _http_ok(f"{site.public_url}/hub/api/"),
            env={"ENCLAVE_CONFIG": str(config_path)},
        ),
    ]


class Supervisor:
    """Starts, watches and stops the components of one deployment."""

    def __init__(self, site: SiteConfig):
        self.site = site
        self.run_dir = site.state_dir / "run"
        # The components read the configuration as resolved here (command-line overrides too).
        self.config_path = self.run_dir / "site.yaml"
        self.log_dir = site.state_dir / "logs"
        self.components: list[Component] = []
        self.hub: Component | None = None
        self.record = RunRecord(self.run_dir)
        self.new_demo_datasets: list[DemoDataset] = []
        self._stop_requested = False

    # -- building the components -------------------------------------------------------------

    def _base_env(self) -> dict[str, str]:
        keep = ("PATH", "LANG", "LC_ALL", "HOME", "TZ")
        env = {key: os.environ[key] for key in keep if key in os.environ}
        env["PATH"] = os.pathsep.join([str(Path(sys.prefix, "bin")), env.get("PATH", "")])
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _components(self, secrets: Secrets) -> list[Component]:
        plan = component_plan(self.site, self.config_path, find_proxy_command(), secrets)
        components = [
            Component(
                name=step.name,
                argv=list(step.argv),
                env={**self._base_env(), **step.env},
                log_path=self.log_dir / step.log_name,
                is_ready=step.is_ready,
            )
            for step in plan
        ]
        self.hub = components[-1]
        return components

    @property
    def _hub_address_marker(self) -> Path:
        """Present while the hub's address is on loopback because `enclave up` put it there."""
        return self.run_dir / "hub-address"

    def _claim_hub_address(self) -> None:
        address = self.site.sessions.hub_address
        if not has_address(address):
            add_hub_address(address)
            self._hub_address_marker.write_text(f"{address}\n")

    def _release_hub_address(self) -> None:
        """Take the hub's address off loopback if this deployment added it and nothing else
        (another deployment's services) is still bound to it."""
        address = self.site.sessions.hub_address
        if self._hub_address_marker.exists() and not bound_sockets(str(address)):
            remove_hub_address(address)
            self._hub_address_marker.unlink()

    def _take_state_folder(self) -> None:
        """The state folder, refused while another `enclave up` runs from it."""
        state = self.site.state_dir
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(state, 0o700)
        for folder in (self.log_dir, self.run_dir):
            folder.mkdir(mode=0o700, exist_ok=True)
        running = self.record.running_supervisor()
        if running is not None:
            raise StartupError(
                f"Enclave is already running from {state} (enclave up, pid {running.pid}); "
                "stop it first"
            )

    def _prepare_host(self) -> None:
        """What an earlier run left removed, the hub's address added, the ports checked."""
        remove_leftovers(self.record, self.site.sessions.workspace_root, _say)
        self.record.add(SUPERVISOR, os.getpid())
        self._claim_hub_address()
        check_ports(self.site)

    def _prepare_state(self) -> Secrets:
        workspaces = self.site.sessions.workspace_root.resolve()
        workspaces.mkdir(mode=0o755, parents=True, exist_ok=True)
        check_reachable_by_sessions(workspaces, "the session workspace root")
        check_reachable_by_sessions(Path(sys.prefix).resolve(), "the Python environment")
        write_site_config(self.site, self.config_path)
        # The sessions' kernels, into the environment sessions run from.
        install_kernels(Path(sys.prefix), sys.executable, gpu=has_gpu(), r=has_r())
        secrets = ensure_secrets(self.site.state_dir)
        if self.site.uses_dev_provider and self.site.demo_datasets:
            self.new_demo_datasets = ingest_demo_datasets(self.site, self.config_path, _say)
        return secrets

    # -- running -----------------------------------------------------------------------------

    def _request_stop(self, signum: int, frame: object) -> None:
        self._stop_requested = True

    def run(self) -> int:
        self._take_state_folder()
        secrets = None
        try:
            self._prepare_host()
            secrets = self._prepare_state()
            self.components = self._components(secrets)
            signal.signal(signal.SIGINT, self._request_stop)
            signal.signal(signal.SIGTERM, self._request_stop)
            for component in self.components:
                if self._stop_requested:
                    return 0
                self._start(component)
                component.wait_ready()
            # The registry is seeded by the hub's first start.
            grant_demo_datasets(self.new_demo_datasets, site_registry(self.site), _say)
            self._print_banner()
            return self._watch()
        finally:
            self.shutdown(secrets)

    def _start(self, component: Component) -> None:
        if component is self.hub:
            owned = hub_owned_sandboxes(hub_paths(self.site)["database"])
            remove_sandboxes(owned, self.site.sessions.workspace_root, _say, "no hub record owns")
        component.start()
        assert component.process is not None
        self.record.add(component.name, component.process.pid)

    def _watch(self) -> int:
        while not self._stop_requested:
            time.sleep(0.5)
            for component in self.components:
                status = component.exit_status()
                if status is None:
                    continue
                if self._may_restart(component):
                    print(f"The {component.name} exited (status {status}); restarting it.")
                    self._start(component)
                    try:
                        component.wait_ready()
                    except StartupError as error:  # seen again on the next pass, and counted
                        print(f"The {component.name} did not come back: {error}", flush=True)
                        continue
                    print(f"The {component.name} is back.", flush=True)
                    continue
                print(
                    f"The {component.name} exited (status {status}); stopping Enclave. "
                    f"See {component.log_path}.",
                    file=sys.stderr,
                    flush=True,
                )
                return 1
        return 0

    @staticmethod
    def _may_restart(component: Component) -> bool:
        now = time.monotonic()
        component.restarts = [t for t in component.restarts if now - t < RESTART_WINDOW]
        component.restarts.append(now)
        return len(component.restarts) <= RESTART_LIMIT

    def _print_banner(self) -> None:
        site = self.site
        lines = [f"Enclave is running at {site.public_url}", ""]
        if site.uses_dev_provider:
            registry = site_registry(site, writable=False)
            lines.append(
                f"Demo logins (development OIDC provider at {site.issuer_url}; "
                "pick the user on its login page):"
            )
            for user in site.identity.dev_provider.users:
                projects = ", ".join(p.id for p in registry.projects_of(user.username))
                suffix = f"  projects: {projects}" if projects else ""
                lines.append(f"  {user.username:<8} {user.role:<15}{suffix}")
            lines.append("")
        lines.append(f"State and logs: {site.state_dir}. Press Ctrl-C to stop.")
        print("\n".join(lines), flush=True)

    # -- stopping ----------------------------------------------------------------------------

    def shutdown(self, secrets: Secrets | None) -> None:
        """Stop the sessions, then every component in reverse order of start, then give back
        what `enclave up` added to the host."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if secrets is not None and self.hub is not None and self.hub.process is not None:
            proxy = next(c for c in self.components if c.name == PROXY)
            if proxy.exit_status() is None:
                print("Stopping sessions...", flush=True)
                self._stop_sessions(self.hub, secrets.supervisor_token)
            else:  # the hub takes a session's route off the proxy before it stops it
                print("The proxy is down, so the hub cannot stop sessions.", flush=True)
        for component in reversed(self.components):
            component.stop()
        remove_sandboxes(set(), self.site.sessions.workspace_root, _say, "the stopped hub left")
        self.record.clear()
        self._release_hub_address()
        if self.components:
            print("Enclave stopped.", flush=True)

    def _stop_sessions(self, hub: Component, token: str, attempts: int = 2) -> None:
        """Stop every session through the hub, which alone knows them.

        A hub that is down, or going down, is started again for this.
        """
        for attempt in range(1, attempts + 1):
            try:
                if hub.exit_status() is not None:
                    self._start(hub)
                    hub.wait_ready()
                stop_all_sessions(self.site, token)
                return
            except (OSError, urllib.error.URLError, ValueError, StartupError) as error:
                if attempt == attempts:
                    print(f"Could not stop every session: {error}", file=sys.stderr, flush=True)
                    return
                assert hub.process is not None
                with contextlib.suppress(subprocess.TimeoutExpired):
                    hub.process.wait(STOP_TIMEOUT)


def _hub_api(site: SiteConfig, token: str, path: str, method: str = "GET") -> object:
    request = urllib.request.Request(f"{site.hub_api_url}{path}", method=method)
    request.add_header("Authorization", f"token {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
    return json.loads(body) if body else None


def _active_servers(site: SiteConfig, token: str) -> list[tuple[str, str]]:
    users = _hub_api(site, token, "/users?state=active")
    assert isinstance(users, list)
    return [(user["name"], name) for user in users for name in user.get("servers", {})]


def stop_all_sessions(site: SiteConfig, token: str) -> None:
    """Ask the hub to stop every running session and wait until they have stopped."""
    for user, server in _active_servers(site, token):
        path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
        _hub_api(site, token, path, method="DELETE")
    deadline = time.monotonic() + SESSION_STOP_TIMEOUT
    while _active_servers(site, token) and time.monotonic() < deadline:
        time.sleep(0.5)
