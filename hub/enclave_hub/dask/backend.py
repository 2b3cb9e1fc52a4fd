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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dask_gateway_server.backends.base import PublicException
from dask_gateway_server.backends.db_base import DBBackendBase, JobStatus

from .. import sandbox
from ..core import validation
from ..core.addresses import CLUSTER_NUMBERS
from ..core.mounts import DATA_MOUNT, shared_subpath
from ..core.project_groups import ProjectGroups
from ..core.registry import ActiveProject
from ..sandbox.bubblewrap import SandboxView, bwrap_argv, runtime_paths
from . import forkserver, scheduler_start
from .dashboard import add_dashboard_route
from .forkserver import FD_VARIABLE
from .identity import Principal
from .policy import ClusterView, ProjectPolicy
from .prepared import PreparedCluster, order_sockets

SCHEDULER_PORT = 8786
DASHBOARD_PORT = 8787
SCHEDULER_API_PORT = 8788
CLUSTER_HOME = "/cluster"
CERT_FILE, KEY_FILE = "dask.crt", "dask.pem"
# Processes and threads in one cluster's sandbox.
CLUSTER_PIDS = 4096
STOP_GRACE = 5.0


class SandboxBackend(ProjectPolicy, DBBackendBase):
    """Starts, checks and stops clusters in sandboxes, under the projects' policy."""

    # -- set-up -------------------------------------------------------------------------------

    async def setup(self, app) -> None:
        add_dashboard_route(app)
        await super().setup(app)

    async def do_setup(self) -> None:
        self.prepared: dict[Principal, PreparedCluster] = {}  # by the session each is for
        self.forkservers: dict[str, PreparedCluster] = {}  # by the cluster that took each
        self.preparing: asyncio.Future | None = None
        self.cluster_users: set[Principal] = set()  # sessions that have started a cluster
        # Prepared clusters are built by a thread of the lowest priority, as are its commands.
        self.preparer = ThreadPoolExecutor(1, "prepare", initializer=os.nice, initargs=(19,))
        self.project_groups = ProjectGroups(self.site.state_dir, self.site.sessions.gid_base)
        await asyncio.to_thread(self.remove_leftovers)
        self.start_policy()

    async def cleanup(self) -> None:
        # The base class stops every active cluster on shutdown; the audit log says why.
        for cluster in self.db.active_clusters() if hasattr(self, "db") else ():
            self.stop_reasons[cluster.name] = "the gateway stopped"
        await self.stop_policy()
        if hasattr(self, "prepared"):
            if self.preparing is not None:
                self.preparing.cancel()
            for prepared in self.prepared.values():
                await asyncio.to_thread(self._discard, prepared)
            self.preparer.shutdown(cancel_futures=True)
        await super().cleanup()

    @property
    def clusters_root(self) -> Path:
        return Path(self.site.sessions.workspace_root, ".clusters")

    # -- the policy's view --------------------------------------------------------------------

    def policy_clusters(self) -> list[ClusterView]:
        return [_view_of(cluster) for cluster in self.db.active_clusters()]

    def policy_cluster(self, name: str) -> ClusterView | None:
        cluster = self.db.get_cluster(name)
        return None if cluster is None else _view_of(cluster)

    async def watched_clusters(self) -> list[tuple[ClusterView, bool]]:
        watched = []
        for cluster in self.db.active_clusters():
            if cluster.target > JobStatus.RUNNING:
                continue  # already stopping
            holds = cluster.status != JobStatus.RUNNING or await asyncio.to_thread(
                self.cluster_holds, cluster.state
            )
            watched.append((_view_of(cluster), holds))
        return watched

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

    async def start_cluster(self, user, cluster_options) -> str:
        """A new cluster, asking from the start for the workers its `workers` option names
        (within the project's limits): they are started with its scheduler."""
        options, config = await self.process_cluster_options(user, cluster_options)
        self.check_start(user.name, options, config.to_dict())
        cluster = self.db.create_cluster(user.name, options, config.to_dict())
        self.db.update_cluster(cluster, count=options["workers"])
        self.log.info("Created cluster %s for user %s", cluster.name, user.name)
        self.queue.put(cluster)
        return cluster.name

    async def do_start_cluster(self, cluster):
        principal, project = self.project_of(cluster.username)
        await self.record_start(cluster.name, principal)
        self.cluster_users.add(principal)
        home = self.clusters_root / cluster.name
        prepared = await self._take_prepared(principal, project)
        if prepared is None:
            number = await asyncio.to_thread(sandbox.reserve_session_number, CLUSTER_NUMBERS)
            yield {"number": number}
            box, view = await asyncio.to_thread(self._build, number, principal, project, home)
        else:
            self.forkservers[cluster.name] = prepared
            # Stopped from now on, its sandbox and folder go too.
            yield {"number": prepared.box.spec.number, "home": str(prepared.home)}
            prepared.move_home(home)
            box, view = prepared.box, prepared.view
        self._write_credentials(cluster, home, box.spec.uid, box.spec.gid)
        state = {
            "number": box.spec.number,
            "ip": box.session_ip,
            "home": str(home),
            "fingerprint": box.firewall_fingerprint,
        }
        yield state
        command = self.get_scheduler_command(cluster, box.session_ip)
        env = self.get_scheduler_env(cluster)
        pid, started = await self._launch(cluster, "scheduler", box, view, command, env)
        yield {**state, "pid": pid, "started": started}
        # The first workers start beside the scheduler (they wait for it to listen), not
        # after its first heartbeat; the scheduler asks for them too (`scheduler_start`).
        for _ in range(cluster.count):
            self.queue.put(self.db.create_worker(cluster))

    def _build(self, number: int, principal, project, home: Path) -> tuple:
        """A cluster's sandbox, checked, and its folder `home`: the sandbox and what it sees."""
        gid = self.project_groups.gid(project.id)
        allowed, names = self._endpoints(project)
        box = self.cluster_sandbox(number, project, gid, allowed, names)
        try:
            box.create()
        finally:
            sandbox.release_session_number(number)
        box.verify(box.firewall_fingerprint)
        self.clusters_root.mkdir(mode=0o711, parents=True, exist_ok=True)
        home.mkdir(mode=0o700)
        os.chown(home, box.spec.uid, gid)
        return box, self._view(principal, project, box, home)

    def _write_credentials(self, cluster, home: Path, uid: int, gid: int) -> None:
        """The cluster's TLS credentials, in its folder: the cluster's uid alone reads them."""
        for name, data in ((CERT_FILE, cluster.tls_cert), (KEY_FILE, cluster.tls_key)):
            fd = os.open(home / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.chown(home / name, uid, gid)

    def _view(self, principal, project, box, home: Path) -> SandboxView:
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

    async def _launch(self, cluster, role: str, box, view, command, env) -> tuple[int, int]:
        """Start the cluster's scheduler or one worker (`role`, then `--name`); its pid and
        start time. Forked by its prepared cluster's fork server when it has one."""
        name = role if role == "scheduler" else f"worker-{command[command.index('--name') + 1]}"
        fd = self._log_file(f"{cluster.name}-{name}")
        try:
            prepared = self.forkservers.get(cluster.name)
            if prepared is not None:
                prefix = len(getattr(cluster.config, f"{role}_cmd"))
                argv = [role, *command[prefix:]]
                pid = await asyncio.to_thread(prepared.fork, argv, env, fd)
            else:
                pid = await self._spawn(box, view.home, bwrap_argv(view, command), env, fd)
        finally:
            os.close(fd)
        return pid, sandbox.process_start_time(pid) or 0

    def _log_file(self, name: str) -> int:
        log_dir = Path(self.site.state_dir, "logs", "clusters")
        log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return os.open(log_dir / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    async def _spawn(self, box, home: Path, argv, env, log_fd: int, pass_fds=()) -> int:
        """Start one process in the cluster's sandbox; its pid."""
        process = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            preexec_fn=box.launch_hook(home),
            start_new_session=True,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_fd,
            stderr=asyncio.subprocess.STDOUT,
            pass_fds=pass_fds,
        )
        return process.pid

    # -- prepared clusters --------------------------------------------------------------------

    def sessions_seen(self, running: set[Principal]) -> None:
        if self.site.dask.prepared_clusters and (self.preparing is None or self.preparing.done()):
            self.preparing = asyncio.ensure_future(self._keep_prepared(running))

    async def _keep_prepared(self, running: set[Principal]) -> None:
        """Prepared clusters for running sessions that have none, up to
        `dask.prepared_clusters`, while the hub starts no session: sessions that have started
        a cluster before come first. None for a session that has stopped."""
        for principal in [p for p in self.prepared if p not in running]:
            await asyncio.to_thread(self._discard, self.prepared.pop(principal))
        with_cluster = {
            Principal.parse(c.username)
            for c in self.db.active_clusters()
            if c.target <= JobStatus.RUNNING  # not one that stops
        }
        waiting = sorted(
            running - with_cluster - set(self.prepared),
            key=lambda principal: (principal not in self.cluster_users, principal.name),
        )
        for principal in waiting:
            # Not while the hub starts sessions: a burst of them would wait behind the builds.
            if len(self.prepared) >= self.site.dask.prepared_clusters or self.watch.starting:
                return
            try:
                self.prepared[principal] = await self._prepare(principal)
            except (PublicException, sandbox.SandboxError, OSError) as error:
                self.log.warning("Cannot prepare a cluster for %s: %s", principal.name, error)

    async def _prepare(self, principal: Principal) -> PreparedCluster:
        _, project = self.project_of(principal.name)
        box, view = await asyncio.get_running_loop().run_in_executor(
            self.preparer, self._build_prepared, principal, project
        )
        number = box.spec.number
        gateway_end, server_end = order_sockets()
        env = {**self.sandbox_env(), FD_VARIABLE: str(server_end.fileno())}
        argv = bwrap_argv(view, [sys.executable, "-m", forkserver.__name__])
        fd = self._log_file(f"prepared-{number}")
        try:
            pid = await self._spawn(box, view.home, argv, env, fd, (server_end.fileno(),))
        except OSError:
            gateway_end.close()
            await asyncio.to_thread(box.destroy)
            raise
        finally:
            os.close(fd)
            server_end.close()
        started = sandbox.process_start_time(pid) or 0
        return PreparedCluster(box, view, gateway_end, pid, started)

    def _build_prepared(self, principal, project) -> tuple:
        """`_build` for a prepared cluster, at idle CPU weight (it waits for no one)."""
        number = sandbox.reserve_session_number(CLUSTER_NUMBERS)
        home = self.clusters_root / f"prepared-{number}"
        box, view = self._build(number, principal, project, home)
        box.cgroup.set_idle(True)  # it imports Dask only while nothing else wants the CPU
        return box, view

    async def _take_prepared(self, principal, project) -> PreparedCluster | None:
        """The session's prepared cluster if it is still what would be built now, or None;
        one that is not, or whose check fails, is removed."""
        prepared = self.prepared.pop(principal, None)
        if prepared is None:
            return None
        fits = False
        try:
            fits = await self._still_fits(prepared, principal, project)
        finally:
            if not fits:
                await asyncio.to_thread(self._discard, prepared)
        if not fits:
            return None
        prepared.box.cgroup.set_idle(False)
        return prepared

    async def _still_fits(self, prepared: PreparedCluster, principal, project) -> bool:
        """Whether the prepared cluster runs, its firewall is as loaded, and its sandbox and
        what it sees are what would be built now."""
        gid = self.project_groups.gid(project.id)
        allowed, names = await asyncio.to_thread(self._endpoints, project)
        wanted = self.cluster_sandbox(prepared.box.spec.number, project, gid, allowed, names)
        return (
            wanted.spec == prepared.box.spec
            and self._view(principal, project, wanted, prepared.home) == prepared.view
            and prepared.alive()
            and await asyncio.to_thread(
                self._sandbox_holds, wanted.spec.number, prepared.box.firewall_fingerprint
            )
        )

    def _discard(self, prepared: PreparedCluster) -> None:
        prepared.close()
        self.existing_sandbox(prepared.box.spec.number).destroy()
        shutil.rmtree(prepared.home, ignore_errors=True)

    async def do_stop_cluster(self, cluster) -> None:
        prepared = self.forkservers.pop(cluster.name, None)
        if prepared is not None:
            prepared.close()
            self.sessions_seen(set(self.watch.running))  # its session's next, now
        state = cluster.state
        number = state.get("number")
        if number is not None:
            await _end_process(state)
            await asyncio.to_thread(self.existing_sandbox(number).destroy)
        if "home" in state:
            await asyncio.to_thread(shutil.rmtree, state["home"], True)
        await self.record_stop(cluster.name, cluster.username, cluster.target == JobStatus.FAILED)

    async def do_check_clusters(self, clusters) -> list[bool]:
        return [await asyncio.to_thread(self.cluster_holds, c.state) for c in clusters]

    def cluster_holds(self, state: dict) -> bool:
        """Whether the scheduler runs and the firewall is as loaded (fail closed)."""
        if "number" not in state:
            return True  # still being built
        if "pid" in state and not _alive(state):
            return False
        return "fingerprint" in state and self._sandbox_holds(state["number"], state["fingerprint"])

    def _sandbox_holds(self, number: int, fingerprint: str) -> bool:
        """Whether sandbox `number` exists with its firewall as loaded (`fingerprint`)."""
        try:
            self.existing_sandbox(number).verify(fingerprint)
        except sandbox.SandboxError:
            return False
        return True

    # -- commands -----------------------------------------------------------------------------

    async def _check_cluster_proxied(self, cluster) -> None:
        """Route only the scheduler (by SNI): the dashboard is served to its session alone
        (`dashboard.py`), never on an open path of the proxy."""
        if not cluster.added_to_proxies:
            await self.proxy.add_route(
                kind="SNI", sni=cluster.name, target=cluster.scheduler_address
            )
            cluster.added_to_proxies = True

    def dashboard_of(self, cluster_name: str):
        """The cluster and where its dashboard is, or None while it has no address."""
        cluster = self.db.get_cluster(cluster_name)
        if cluster is None or not cluster.state:
            return None
        return cluster, f"http://{cluster.state['ip']}:{DASHBOARD_PORT}"

    def get_tls_paths(self, cluster) -> tuple[str, str]:
        return f"{CLUSTER_HOME}/{CERT_FILE}", f"{CLUSTER_HOME}/{KEY_FILE}"

    def sandbox_env(self) -> dict[str, str]:
        """The environment of every process in a cluster's sandbox."""
        return {
            "PATH": os.pathsep.join([str(Path(sys.prefix, "bin")), "/usr/bin", "/bin"]),
            "HOME": "/tmp",
            "DASK_TEMPORARY_DIRECTORY": "/tmp",
            "ENCLAVE_DATA": DATA_MOUNT,
        }

    def get_env(self, cluster) -> dict[str, str]:
        return {**super().get_env(cluster), **self.sandbox_env()}

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
            "--preload",
            scheduler_start.PRELOAD,
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
        prepared = self.forkservers.get(cluster.name)
        if prepared is not None:
            box, view = prepared.box, prepared.view
        else:  # workers run in the scheduler's sandbox, as its uid and group
            gid = self.project_groups.gid(project.id)
            box = self.cluster_sandbox(cluster.state["number"], project, gid, [], [])
            view = self._view(principal, project, box, Path(cluster.state["home"]))
        command = self.get_worker_command(cluster, worker.name)
        env = self.get_worker_env(cluster)
        pid, started = await self._launch(cluster, "worker", box, view, command, env)
        yield {"pid": pid, "started": started}

    async def do_stop_worker(self, worker) -> None:
        await _end_process(worker.state)

    async def do_check_workers(self, workers) -> list[bool]:
        return [("pid" not in w.state) or _alive(w.state) for w in workers]


def _view_of(cluster) -> ClusterView:
    return ClusterView(
        name=cluster.name,
        principal=Principal.parse(cluster.username),
        config=cluster.config,
        workers=cluster.count,
        start_time=cluster.start_time,
    )


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
