"""The gateway's backend: each Dask cluster in a sandbox of its own, under its project's policy.

A cluster's scheduler and workers share one sandbox, built as a session's is (see
`enclave_hub.sandbox`): a network namespace whose firewall lets out only the gateway's API and
the project's allow-list and lets in only the gateway's connections to the scheduler; a
cgroup sized by the project's cluster limits; bubblewrap with the project's datasets
read-only under /data and its shared folder under /project; an unprivileged uid of its own in
the project's group. Client, scheduler and workers speak TLS with the cluster's own
credentials, written into the cluster's folder for its uid alone.

The processes are children of the gateway and die with it (bubblewrap's --die-with-parent);
the gateway's database is in memory, so a restarted gateway removes whatever sandboxes a
previous run left and users start new clusters. Cluster start and stop are audit events; a
cluster is not started unless its start is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from pathlib import Path

from aiohttp import web
from dask_gateway_server.backends.base import PublicException
from dask_gateway_server.backends.db_base import DBBackendBase, JobStatus
from traitlets import Any as AnyTrait

from .. import sandbox
from ..core import validation
from ..core.addresses import CLUSTER_NUMBERS
from ..core.audit_client import AuditRefused, site_audit_client
from ..core.hub_api import HubSessions
from ..core.mounts import DATA_MOUNT, shared_subpath
from ..core.project_groups import ProjectGroups
from ..core.registry import ActiveProject, Registry, site_registry
from ..core.site_secrets import load_secrets
from ..sandbox.bubblewrap import SandboxView, bwrap_argv, runtime_paths
from .dashboard import add_dashboard_route
from .identity import Principal
from .lifetimes import SessionWatch
from .limits import LimitExceeded, Usage, allowed_workers, check_growth
from .options import cluster_options

SCHEDULER_PORT = 8786
DASHBOARD_PORT = 8787
SCHEDULER_API_PORT = 8788
CLUSTER_HOME = "/cluster"
CERT_FILE, KEY_FILE = "dask.crt", "dask.pem"
# Processes and threads in one cluster's sandbox.
CLUSTER_PIDS = 4096
STOP_GRACE = 5.0


class SandboxBackend(DBBackendBase):
    """Starts, checks and stops clusters in sandboxes; enforces the projects' limits."""

    site = AnyTrait(help="the SiteConfig of this deployment").tag(config=True)

    # -- set-up -------------------------------------------------------------------------------

    async def setup(self, app) -> None:
        add_dashboard_route(app)
        await super().setup(app)

    async def do_setup(self) -> None:
        site = self.site
        secrets = load_secrets(site.state_dir)
        self.registry: Registry = site_registry(site, writable=False)
        self.audit = site_audit_client(site, secrets.audit_ingest_token)
        self.project_groups = ProjectGroups(site.state_dir, site.sessions.gid_base)
        self.sessions = HubSessions(site.hub_api_url, secrets.gateway_service_token)
        self.stop_reasons: dict[str, str] = {}
        await asyncio.to_thread(self.remove_leftovers)
        self.watch = SessionWatch(self, self.site.dask.check_interval)
        self.task_pool.spawn(self.watch.run())

    async def cleanup(self) -> None:
        # The base class stops every active cluster on shutdown; the audit log says why.
        for cluster in self.db.active_clusters() if hasattr(self, "db") else ():
            self.stop_reasons[cluster.name] = "the gateway stopped"
        await super().cleanup()

    @property
    def clusters_root(self) -> Path:
        return Path(self.site.sessions.workspace_root, ".clusters")

    def project_of(self, username: str) -> tuple[Principal, ActiveProject]:
        """The principal and its project as in force now; PublicException if it is not."""
        principal = Principal.parse(username)
        project = self.registry.membership(principal.user, principal.project)
        if project is None:
            raise PublicException(
                f"{principal.user} may not use project {principal.project} now: the "
                "membership or the project is not in force"
            )
        return principal, project

    def limits_of(self, project: ActiveProject):
        return self.site.sessions.profiles[project.profile].dask

    async def get_cluster_options(self, user):
        try:
            principal, project = self.project_of(user.name)
        except PublicException as error:
            raise web.HTTPForbidden(reason=str(error)) from None
        return cluster_options(self.limits_of(project), principal.project)

    # -- limits -------------------------------------------------------------------------------

    def usage_beside(self, cluster_name: str, project: str) -> Usage:
        """What the project's other active clusters hold (their asked-for workers)."""
        total = Usage()
        for other in self.db.active_clusters():
            if other.name != cluster_name and Principal.parse(other.username).project == project:
                total += Usage.of(other.count, *worker_size(other.config))
        return total

    async def forward_message_to_scheduler(self, cluster, msg: dict) -> None:
        """Refuse a scale past the limits; keep adaptive scaling within them."""
        principal, project = self.project_of(cluster.username)
        limits = self.limits_of(project)
        cores, memory = worker_size(cluster.config)
        others = self.usage_beside(cluster.name, principal.project)
        if msg.get("op") == "scale":
            try:
                wanted = Usage.of(msg["count"], cores, memory)
                check_growth(limits, principal.project, wanted, others, project.profile)
            except LimitExceeded as error:
                raise PublicException(f"Scaling to {msg['count']} workers {error}") from None
        elif msg.get("op") == "adapt":
            most = allowed_workers(limits, cores, memory, others)
            if (msg.get("minimum") or 0) > most:
                raise PublicException(
                    f"Adapting with at least {msg['minimum']} workers refused: project "
                    f"{principal.project} has room for {most} more in this cluster"
                )
            msg = {**msg, "maximum": min(most, msg.get("maximum") or most)}
        await super().forward_message_to_scheduler(cluster, msg)

    async def on_cluster_heartbeat(self, cluster_name: str, msg: dict) -> None:
        """The scheduler asks for workers here too (adaptive scaling): cap what it asks."""
        cluster = self.db.get_cluster(cluster_name)
        if cluster is not None:
            principal = Principal.parse(cluster.username)
            project = self.registry.membership(principal.user, principal.project)
            most = 0
            if project is not None:
                others = self.usage_beside(cluster_name, principal.project)
                most = allowed_workers(
                    self.limits_of(project), *worker_size(cluster.config), others
                )
            msg = {**msg, "count": min(msg["count"], most)}
        await super().on_cluster_heartbeat(cluster_name, msg)

    # -- clusters -----------------------------------------------------------------------------

    def cluster_sandbox(self, number: int, project: ActiveProject, gid: int, allowed, names):
        limits = self.limits_of(project)
        return sandbox.SessionSandbox(
            sandbox.SessionSpec(
                number=number,
                uid=self.cluster_uid(number),
                gid=gid,
                inbound_ports=(SCHEDULER_PORT, DASHBOARD_PORT, SCHEDULER_API_PORT),
                allowed=tuple(allowed),
                host_names=tuple(names),
                limits=sandbox.Limits(
                    memory_bytes=int(limits.cluster_memory + self.site.dask.scheduler_memory),
                    cpus=limits.cluster_cores + 1,
                    pids=CLUSTER_PIDS,
                ),
                files_dir=sandbox.files_dir(self.site.sessions.workspace_root, number),
            )
        )

    def cluster_uid(self, number: int) -> int:
        return self.site.dask.uid_base + number

    def existing_sandbox(self, number: int) -> sandbox.SessionSandbox:
        """A cluster's sandbox, for checks and removal."""
        return sandbox.SessionSandbox.existing(number, self.site.sessions.workspace_root)

    def remove_leftovers(self) -> None:
        """Remove the sandboxes and folders of clusters an earlier run of this gateway left.

        A sandbox is this deployment's if its files are in this deployment's workspace root.
        """
        for number in sandbox.built_numbers(self.site.sessions.workspace_root):
            if number in CLUSTER_NUMBERS:
                self.log.warning("Removing sandbox %d, left by an earlier run", number)
                self.existing_sandbox(number).destroy()
        if self.clusters_root.exists():
            for folder in self.clusters_root.iterdir():
                shutil.rmtree(folder, ignore_errors=True)

    def _endpoints(self, project: ActiveProject):
        gateway = sandbox.Endpoint(self.site.sessions.hub_address, self.site.dask.api_port)
        allowed, names = sandbox.resolve_endpoints(project.egress(self.site.sessions.egress_allow))
        return [gateway, *allowed], names

    async def do_start_cluster(self, cluster):
        principal, project = self.project_of(cluster.username)
        await self._record_start(cluster, principal)
        number = await asyncio.to_thread(sandbox.reserve_session_number, CLUSTER_NUMBERS)
        yield {"number": number}
        gid = self.project_groups.gid(project.id)
        allowed, names = await asyncio.to_thread(self._endpoints, project)
        box = self.cluster_sandbox(number, project, gid, allowed, names)
        try:
            await asyncio.to_thread(box.create)
        finally:
            sandbox.release_session_number(number)
        await asyncio.to_thread(box.verify, box.firewall_fingerprint)
        home = self._make_home(cluster, box.spec.uid, gid)
        state = {
            "number": number,
            "ip": box.session_ip,
            "home": str(home),
            "fingerprint": box.firewall_fingerprint,
        }
        yield state
        view = self._view(cluster, principal, project, box, home)
        argv = bwrap_argv(view, self.get_scheduler_command(cluster, box.session_ip))
        pid, started = await self._launch(
            box, home, argv, self.get_scheduler_env(cluster), "scheduler", cluster
        )
        yield {**state, "pid": pid, "started": started}

    def _make_home(self, cluster, uid: int, gid: int) -> Path:
        """The cluster's folder, with its TLS credentials: the cluster's uid alone reads it."""
        home = self.clusters_root / cluster.name
        self.clusters_root.mkdir(mode=0o711, parents=True, exist_ok=True)
        home.mkdir(mode=0o700)
        for name, data in ((CERT_FILE, cluster.tls_cert), (KEY_FILE, cluster.tls_key)):
            fd = os.open(home / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.chown(home / name, uid, gid)
        os.chown(home, uid, gid)
        return home

    def _view(self, cluster, principal, project, box, home: Path) -> SandboxView:
        try:
            datasets = project.dataset_folders(Path(self.site.data_root))
        except validation.InvalidInput as error:
            raise PublicException(f"project {project.id}: {error}") from None
        return SandboxView(
            home=home,
            home_inside=CLUSTER_HOME,
            project_folder=Path(self.site.sessions.workspace_root, shared_subpath(project.id)),
            datasets=datasets,
            runtime=runtime_paths(),
            hosts_file=box.hosts_file,
            resolv_conf=box.resolv_conf,
            hostname=f"dask-{principal.project}",
        )

    async def _launch(self, box, home, argv, env, role, cluster) -> tuple[int, int]:
        """Start one process of the cluster in its sandbox; its pid and start time."""
        log_dir = Path(self.site.state_dir, "logs", "clusters")
        log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(log_dir / f"{cluster.name}-{role}.log", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                preexec_fn=box.launch_hook(home),
                start_new_session=True,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=fd,
                stderr=asyncio.subprocess.STDOUT,
            )
        finally:
            os.close(fd)
        return process.pid, sandbox.process_start_time(process.pid) or 0

    async def _record_start(self, cluster, principal: Principal) -> None:
        await self.watch.refresh()
        try:
            await self.audit.record(
                actor=principal.user,
                action="dask.cluster.start",
                target=cluster.name,
                project=principal.project,
                session=self.watch.session_id(principal),
                outcome="ok",
            )
        except AuditRefused as error:
            raise PublicException(
                f"the cluster cannot be audited, so it was not started: {error}"
            ) from None

    async def do_stop_cluster(self, cluster) -> None:
        state = cluster.state
        number = state.get("number")
        if number is not None:
            await _end_process(state)
            await asyncio.to_thread(self.existing_sandbox(number).destroy)
        if "home" in state:
            await asyncio.to_thread(shutil.rmtree, state["home"], True)
        principal = Principal.parse(cluster.username)
        failed = cluster.target == JobStatus.FAILED
        await self.audit.record_best_effort(
            self.log,
            actor=principal.user,
            action="dask.cluster.stop",
            target=cluster.name,
            project=principal.project,
            outcome="failed" if failed else "stopped",
            reason=self.stop_reasons.pop(cluster.name, None),
        )

    async def do_check_clusters(self, clusters) -> list[bool]:
        return [await asyncio.to_thread(self.cluster_holds, c.state) for c in clusters]

    def cluster_holds(self, state: dict) -> bool:
        """Whether the scheduler runs and the firewall is as loaded (fail closed)."""
        if "number" not in state:
            return True  # still being built
        if "pid" in state and not _alive(state):
            return False
        try:
            self.existing_sandbox(state["number"]).verify(state["fingerprint"])
        except (sandbox.SandboxError, KeyError):
            return False
        return True

    async def stop_for(self, cluster_name: str, reason: str, failed: bool = False) -> None:
        self.stop_reasons[cluster_name] = reason
        self.log.info("Stopping cluster %s: %s", cluster_name, reason)
        await self.stop_cluster(cluster_name, failed=failed)

    # -- commands -----------------------------------------------------------------------------

    async def _check_cluster_proxied(self, cluster) -> None:
        """Route only the scheduler (by SNI): the dashboard is served to its session alone
        (`dashboard.py`), never on an open path of the proxy."""
        if not cluster.added_to_proxies:
            await self.proxy.add_route(
                kind="SNI", sni=cluster.name, target=cluster.scheduler_address
            )
            cluster.added_to_proxies = True

    def dashboard_url(self, cluster) -> str:
        return f"http://{cluster.state['ip']}:{DASHBOARD_PORT}"

    def get_tls_paths(self, cluster) -> tuple[str, str]:
        return f"{CLUSTER_HOME}/{CERT_FILE}", f"{CLUSTER_HOME}/{KEY_FILE}"

    def get_env(self, cluster) -> dict[str, str]:
        env = super().get_env(cluster)
        env.update(
            PATH=os.pathsep.join([str(Path(sys.prefix, "bin")), "/usr/bin", "/bin"]),
            HOME="/tmp",
            DASK_TEMPORARY_DIRECTORY="/tmp",
            ENCLAVE_DATA=DATA_MOUNT,
        )
        return env

    def get_scheduler_command(self, cluster, host: str = "") -> list[str]:
        return [
            *cluster.config.scheduler_cmd,
            "--protocol",
            "tls",
            "--host",
            host,
            "--port",
            str(SCHEDULER_PORT),
            "--dashboard-address",
            f"{host}:{DASHBOARD_PORT}",
            "--preload",
            "dask_gateway.scheduler_preload",
            "--dg-api-address",
            f"{host}:{SCHEDULER_API_PORT}",
            "--dg-heartbeat-period",
            str(self.cluster_heartbeat_period),
            "--dg-adaptive-period",
            str(cluster.config.adaptive_period),
            "--dg-idle-timeout",
            str(cluster.config.idle_timeout),
        ]

    def get_worker_command(self, cluster, worker_name: str, scheduler_address=None) -> list[str]:
        host = cluster.state["ip"]
        return [
            *cluster.config.worker_cmd,
            f"tls://{host}:{SCHEDULER_PORT}",
            "--host",
            host,
            "--no-dashboard",
            "--name",
            worker_name,
            "--nthreads",
            str(cluster.config.worker_threads),
            "--memory-limit",
            str(cluster.config.worker_memory),
            "--local-directory",
            "/tmp",
        ]

    # -- workers ------------------------------------------------------------------------------

    async def do_start_worker(self, worker):
        cluster = worker.cluster
        principal, project = self.project_of(cluster.username)
        # Workers run in the scheduler's sandbox, as its uid and group.
        gid = self.project_groups.gid(project.id)
        box = self.cluster_sandbox(cluster.state["number"], project, gid, [], [])
        home = Path(cluster.state["home"])
        argv = bwrap_argv(
            self._view(cluster, principal, project, box, home),
            self.get_worker_command(cluster, worker.name),
        )
        pid, started = await self._launch(
            box, home, argv, self.get_worker_env(cluster), f"worker-{worker.name}", cluster
        )
        yield {"pid": pid, "started": started}

    async def do_stop_worker(self, worker) -> None:
        await _end_process(worker.state)

    async def do_check_workers(self, workers) -> list[bool]:
        return [("pid" not in w.state) or _alive(w.state) for w in workers]


def worker_size(config) -> tuple[int, int]:
    """A cluster's worker cores and memory (bytes), from its configuration."""
    return int(config["worker_cores"]), int(config["worker_memory"])


def _alive(state: dict) -> bool:
    return sandbox.process_start_time(state["pid"]) == state.get("started")


async def _end_process(state: dict) -> None:
    """Stop one of a cluster's processes: bubblewrap takes everything inside down with it."""
    if "pid" not in state or not _alive(state):
        return
    for signum in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(state["pid"], signum)
        for _ in range(int(STOP_GRACE / 0.1)):
            if not _alive(state):
                return
            await asyncio.sleep(0.1)
