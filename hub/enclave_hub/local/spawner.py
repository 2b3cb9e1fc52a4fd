"""EnclaveSpawner: one sandboxed notebook session per user and project, never as root.

A session is a JupyterHub named server whose name is the project id. It runs in a sandbox of its
own (network namespace and firewall, cgroup, bubblewrap: see `enclave_hub.sandbox`), as an
unprivileged uid of its own (`uid_base` + the server's number) in its project's group. Its
output goes to a log file the session cannot open, so that a session which dies while starting
can be reported to the user with its reason. The firewall is checked while the session runs: a
session whose rules are missing or altered is stopped (fail closed).

Each run of a session has an id, and its start, dataset mounts, blocked network attempts, stop
or failure are recorded in the audit log. A session is not started unless its start and mounts
are on disk (fail closed).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jupyterhub.spawner import LocalProcessSpawner
from jupyterhub.utils import random_port
from traitlets import Dict, Integer, List, Unicode, default

from .. import sandbox
from ..core import validation
from ..core.mounts import SESSION_CONFIG_MOUNT, home_subpath, shared_subpath
from ..core.session_packages import user_prefix
from ..project_session import (
    ProjectSession,
    SessionRefused,
    first_line,
    session_server_command,
)
from ..sandbox.bubblewrap import SandboxView, bwrap_argv, runtime_paths
from ..sandbox.gpu import GpuUnavailable, nvidia_devices, visible_devices
from ..singleuser import CONFIG_DIR as SESSION_CONFIG_DIR
from ..singleuser import airlock_page, dask_dashboard, jobs_page, lab_look, packages_page

LOG_TAIL_LINES = 15
LISTEN_POLL = 0.05  # seconds between tries of the new server's port: its start is the wait
# bubblewrap's parent: the sandbox dies with it (--die-with-parent), and it outlives the hub, so
# that a restarted hub can adopt the session.
SESSION_KEEPER = ("setsid", "--fork", "--wait")
# The steps of a start, as its progress page names them.
START_STEPS = (
    "Membership of {project} checked; profile {profile}",
    "Start recorded in the audit log",
    "Building the sandbox: network namespace, firewall, CPU and memory limits",
    "Firewall checked: the session reaches only {endpoints} allowed endpoints and the hub",
    "Starting JupyterLab in the sandbox with {datasets} dataset(s) mounted read-only",
)


class EnclaveSpawner(ProjectSession, LocalProcessSpawner):
    """Starts a project session in its sandbox, under the session's own uid."""

    workspace_root = Unicode(
        "/srv/enclave/workspaces",
        help="project workspaces: <root>/<project>/home/<user> and <root>/<project>/shared",
    ).tag(config=True)
    data_root = Unicode("/srv/enclave/data", help="one folder per dataset").tag(config=True)
    state_dir = Unicode(help="the hub's state directory (session logs)").tag(config=True)
    uid_base = Integer(200000, help="a session runs as uid_base + its server's number").tag(
        config=True
    )
    hub_address = Unicode(help="the hub's address, the one sessions may reach").tag(config=True)
    hub_port = Integer(help="the hub's API port").tag(config=True)
    egress_allow = List(help="HostPort entries sessions may connect to").tag(config=True)

    pid_start_time = Integer(0, help="start time of the recorded pid, in clock ticks")
    firewall_fingerprint = Unicode("", help="hash of the session's rules as loaded")
    blocked_seen = Integer(0, help="blocked packets already reported")
    blocked_destinations = Dict(help="blocked packets already reported, by destination")
    sandbox_number = Integer(0, help="the session's number on this machine (network, cgroup)")
    start_steps = List(help="the steps of the current start done so far")

    @default("cmd")
    def _cmd_default(self) -> list[str]:
        return session_server_command(sys.executable)

    @default("env_keep")
    def _env_keep_default(self) -> list[str]:
        return ["LANG", "LC_ALL"]

    # -- identity and places -------------------------------------------------------------

    @property
    def session_uid(self) -> int:
        return self.uid_base + self.orm_spawner.id

    @property
    def home_dir(self) -> Path:
        return Path(self.workspace_root, home_subpath(self.name, self.user.name))

    @property
    def project_folder(self) -> Path:
        return Path(self.workspace_root, shared_subpath(self.name))

    @property
    def log_path(self) -> Path:
        return Path(self.state_dir, "logs", "sessions", f"{self.user.name}--{self.name}.log")

    def _sandbox(
        self,
        port: int,
        gid: int,
        profile,
        allowed: list[sandbox.Endpoint],
        names: list[tuple[str, str]],
    ) -> sandbox.SessionSandbox:
        hub_ip = ipaddress.ip_address(self.hub_address)
        hub = sandbox.Endpoint(hub_ip, self.hub_port)
        services = [
            sandbox.Endpoint(hub_ip, urlsplit(url).port)
            for url in (
                self.audit_url,
                self.airlock_url,
                self.packages_url,
                self.jobs_url,
                self.gateway_url,
                self.gateway_scheduler_proxy,
            )
        ]
        return sandbox.SessionSandbox(
            sandbox.SessionSpec(
                number=self.sandbox_number,
                uid=self.session_uid,
                gid=gid,
                inbound_ports=(port,),
                allowed=(hub, *services, *allowed),
                host_names=tuple(names),
                limits=sandbox.Limits(
                    memory_bytes=int(profile.memory), cpus=profile.cpus, pids=profile.pids
                ),
                files_dir=sandbox.files_dir(Path(self.workspace_root), self.sandbox_number),
            )
        )

    def _existing_sandbox(self) -> sandbox.SessionSandbox:
        """This session's sandbox, for checks and removal."""
        return sandbox.SessionSandbox.existing(self.sandbox_number, Path(self.workspace_root))

    # -- starting ------------------------------------------------------------------------

    def _check_project(self):
        project = super()._check_project()
        if self.session_uid <= 0 or self.uid_base < 1000:
            raise SessionRefused(
                "Enclave is misconfigured: a session would run as root.", reason="config"
            )
        return project

    def _dataset_folders(self, project) -> dict[str, Path]:
        """The granted datasets' folders, each checked to lie right under the data root."""
        try:
            return project.dataset_folders(Path(self.data_root))
        except validation.InvalidInput as error:
            raise SessionRefused(f"Project '{project.id}': {error}.", reason="data") from None

    def _gpu_devices(self, profile_name: str, gpus: int) -> list[str]:
        try:
            return nvidia_devices(gpus)
        except GpuUnavailable as error:
            raise SessionRefused(f"Profile '{profile_name}': {error}.", reason="gpu") from None

    def _prepare_folders(self, gid: int) -> None:
        self.project_folder.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.home_dir.parent.mkdir(mode=0o755, exist_ok=True)
        for folder, owner, mode in (
            (self.home_dir, self.session_uid, 0o700),
            (self.project_folder, 0, 0o2770),
        ):
            folder.mkdir(exist_ok=True)
            os.chown(folder, owner, gid)
            os.chmod(folder, mode)

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        env = self.project_env(env)
        env["PATH"] = os.pathsep.join(
            [
                os.path.join(sys.prefix, "bin"),
                f"{user_prefix(self.home_inside)}/bin",
                "/usr/local/bin",
                "/usr/bin",
                "/bin",
            ]
        )
        # No Jupyter configuration from the home folder: it could switch the recording off.
        env["JUPYTER_CONFIG_DIR"] = str(SESSION_CONFIG_DIR)
        env["JUPYTER_CONFIG_PATH"] = SESSION_CONFIG_MOUNT
        return env

    async def progress(self):
        """The steps of the start so far, for its progress page."""
        shown = 0
        while True:
            for message in self.start_steps[shown:]:
                shown += 1
                yield {"progress": min(95, shown * 100 // len(START_STEPS)), "message": message}
            await asyncio.sleep(0.3)

    def _step(self, message: str) -> None:
        self.start_steps = [*self.start_steps, message]

    async def start(self) -> tuple[str, int]:
        self.start_steps = []
        project = self._check_project()
        profile_name = project.profile
        profile = self.profiles[profile_name]
        devices = self._gpu_devices(profile_name, profile.gpus)
        datasets = self._dataset_folders(project)
        self.mounted_datasets = sorted(datasets)
        gid = self.project_groups.gid(project.id)
        self._step(START_STEPS[0].format(project=project.title, profile=profile_name))
        await self._record_start(project)
        self._step(START_STEPS[1])
        self.port = random_port()
        self.sandbox_number = await asyncio.to_thread(sandbox.reserve_session_number)
        egress = project.egress(self.egress_allow)
        allowed, names = await asyncio.to_thread(sandbox.resolve_endpoints, egress)
        box = self._sandbox(self.port, gid, profile, allowed, names)
        self.ip = box.session_ip
        self._prepare_folders(gid)
        self._step(START_STEPS[2])
        try:
            try:
                await asyncio.to_thread(box.create)
            finally:
                # Once created, the namespace itself keeps the number taken.
                sandbox.release_session_number(self.sandbox_number)
            self.firewall_fingerprint = box.firewall_fingerprint
            # Fail closed: the rules are checked once more right before the session starts.
            await asyncio.to_thread(box.verify, self.firewall_fingerprint)
            self._step(START_STEPS[3].format(endpoints=len(allowed)))
        except sandbox.SandboxError as error:
            await asyncio.to_thread(box.destroy)
            await self._record_end("session.failure", "failed", f"sandbox: {error}")
            raise SessionRefused(
                f"The session's sandbox could not be set up, so it was not started: {error}",
                reason="sandbox",
                status_code=500,
            ) from None
        view = SandboxView(
            home=self.home_dir,
            home_inside=self.home_inside,
            project_folder=self.project_folder,
            datasets=datasets,
            runtime=runtime_paths(),
            hosts_file=box.hosts_file,
            resolv_conf=box.resolv_conf,
            hostname=f"enclave-{self.name}",
            devices=devices,
            session_config=self._write_session_config(box, project.title),
        )
        env = self.get_env()
        # The session's cgroup limit, as KubeSpawner announces it.
        env["MEM_LIMIT"] = str(int(profile.memory))
        # Dashboard links lead through the user's own server (dask_dashboard).
        env["DASK_GATEWAY__PUBLIC_ADDRESS"] = (
            env["JUPYTERHUB_SERVICE_PREFIX"] + dask_dashboard.PUBLIC_ADDRESS
        )
        if devices:
            env["CUDA_VISIBLE_DEVICES"] = visible_devices(profile.gpus)
        try:
            argv = [*SESSION_KEEPER, *bwrap_argv(view, [*self.cmd, *self.get_args()])]
            self._step(START_STEPS[4].format(datasets=len(datasets)))
            self._launch(argv, env, box.launch_hook(self.home_dir))
            await self._wait_until_listening(self.ip, self.port)
        except BaseException as error:
            await self._record_end("session.failure", "failed", first_line(error))
            await self._remove_session(box)
            raise
        return self.ip, self.port

    def _write_session_config(self, box: sandbox.SessionSandbox, project_title: str) -> Path:
        """This session's own Jupyter configuration: JupyterLab's "Request an export",
        "Request a package" and "Run as a job" entries, which need the session's address, and
        the project's name. Read-only in the session, beside the shared one."""
        labconfig = Path(box.spec.files_dir, "jupyter", "labconfig")
        labconfig.mkdir(mode=0o755, parents=True, exist_ok=True)
        overrides = labconfig / "default_setting_overrides.json"
        menus = [
            airlock_page.lab_menu(self.server.base_url),
            packages_page.lab_menu(self.server.base_url),
            jobs_page.lab_menu(self.server.base_url),
        ]
        settings = lab_look.lab_setting_overrides(project_title, menus)
        overrides.write_text(json.dumps(settings))
        overrides.chmod(0o644)
        return labconfig.parent

    def _launch(self, argv: list[str], env: dict[str, str], hook) -> None:
        self.log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.log_path, "ab") as session_log:
            self.proc = subprocess.Popen(
                argv,
                env=env,
                preexec_fn=hook,
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=session_log,
                stderr=subprocess.STDOUT,
            )
        self.pid = self.proc.pid
        self.pid_start_time = sandbox.process_start_time(self.pid) or 0
        self.log.info(
            "Session %s/%s started as pid %d, uid %d, in %s",
            self.user.name,
            self.name,
            self.pid,
            self.session_uid,
            f"enclave-s{self.sandbox_number}",
        )

    async def _wait_until_listening(self, ip: str, port: int) -> None:
        """Return once the server accepts connections; raise with its reason if it exits."""
        deadline = asyncio.get_running_loop().time() + self.start_timeout
        while asyncio.get_running_loop().time() < deadline:
            status = self.proc.poll()
            if status is not None:
                raise SessionRefused(
                    f"The session for project '{self.name}' exited while starting "
                    f"(exit status {status}). Its last output:\n{self._log_tail()}",
                    reason="exited",
                    status_code=500,
                )
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), 1)
            except (OSError, TimeoutError):
                await asyncio.sleep(LISTEN_POLL)
                continue
            writer.close()
            return
        raise SessionRefused(
            f"The session for project '{self.name}' did not start within "
            f"{self.start_timeout} seconds.",
            reason="timeout",
            status_code=500,
        )

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no output)"
        return "\n".join(lines[-LOG_TAIL_LINES:]) or "(no output)"

    # -- running and stopping -------------------------------------------------------------

    async def _remove_session(self, box: sandbox.SessionSandbox | None = None) -> None:
        """Kill what is left of the session and remove its sandbox."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if box is None and self.sandbox_number:
            box = self._existing_sandbox()
        if box is not None:
            await asyncio.to_thread(box.destroy)
        if self.proc is not None:
            await asyncio.to_thread(self.proc.wait)
        self.clear_state()
        self.sandbox_number = 0

    async def stop(self, now: bool = False) -> None:
        # Recorded first: stopping polls the process, which would report it as exited.
        await self._record_end("session.stop", "stopped")
        await super().stop(now=now)
        await self._remove_session()

    async def poll(self) -> int | None:
        if self.proc is None and self.pid:
            current = sandbox.process_start_time(self.pid)
            if current is None or current != self.pid_start_time:
                # Gone, or the pid now belongs to another process: never adopt that one.
                self.log.warning(
                    "Session %s/%s: recorded pid %d is no longer its process",
                    self.user.name,
                    self.name,
                    self.pid,
                )
                await self._record_end("session.stop", "exited", "its process is gone")
                await self._remove_session()
                return 0
        status = await super().poll()
        if status is not None:
            await self._record_end("session.stop", "exited", f"exit status {status}")
            await self._remove_session()
            return status
        if self.firewall_fingerprint:
            return await self._check_firewall()
        return None

    async def _check_firewall(self) -> int | None:
        box = self._existing_sandbox()
        try:
            await asyncio.to_thread(box.verify, self.firewall_fingerprint)
        except sandbox.SandboxError as error:
            self.log.error(
                "Session %s/%s stopped, failing closed: %s", self.user.name, self.name, error
            )
            await self._record_end("session.stop", "failed-closed", str(error))
            await self._remove_session(box)
            return 1
        await self._report_blocked(box)
        return None

    async def _report_blocked(self, box: sandbox.SessionSandbox) -> None:
        """Record the network attempts the firewall blocked since the last check, by target."""
        total = await asyncio.to_thread(box.blocked_count)
        if total <= self.blocked_seen:
            return
        by_destination = await asyncio.to_thread(box.blocked_destinations)
        new = {
            target: packets - self.blocked_destinations.get(target, 0)
            for target, packets in by_destination.items()
            if packets > self.blocked_destinations.get(target, 0)
        }
        other = total - self.blocked_seen - sum(new.values())
        if other > 0:
            new["other (not TCP or UDP, or inbound)"] = other
        self.log.warning(
            "Session %s/%s (uid %d): blocked network attempts: %s",
            self.user.name,
            self.name,
            self.session_uid,
            new,
        )
        for target, packets in new.items():
            await self.audit.record_best_effort(
                self.log,
                actor=self.user.name,
                action="egress.blocked",
                target=target,
                project=self.name,
                session=self.session_id or None,
                outcome="blocked",
                count=packets,
            )
        self.blocked_seen = total
        self.blocked_destinations = by_destination

    # -- state kept across hub restarts ---------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.sandbox_number:
            # Kept until the sandbox is removed, even once the process has exited.
            state["sandbox_number"] = self.sandbox_number
        if self.pid:
            state.update(
                pid_start_time=self.pid_start_time,
                ip=self.ip,
                port=self.port,
                uid=self.session_uid,
                firewall_fingerprint=self.firewall_fingerprint,
                blocked_seen=self.blocked_seen,
                blocked_destinations=self.blocked_destinations,
            )
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.pid_start_time = state.get("pid_start_time", 0)
        self.firewall_fingerprint = state.get("firewall_fingerprint", "")
        self.blocked_seen = state.get("blocked_seen", 0)
        self.blocked_destinations = state.get("blocked_destinations", {})
        self.sandbox_number = state.get("sandbox_number", 0)
        self.port = state.get("port", 0)
        self.ip = state.get("ip", "")

    def clear_state(self) -> None:
        super().clear_state()
        self.pid_start_time = 0
        self.firewall_fingerprint = ""
        self.blocked_seen = 0
        self.blocked_destinations = {}
