"""One job's run: its folder, its sandbox, its process, and what it left.

A job runs as the member who submitted it (the uid that owns their home in the project, which
the hub's spawner gave their sessions) in the project's group, in a sandbox built as a
session's is (`enclave_hub.sandbox`): a network namespace whose firewall lets out only the
project's allow-list (no Enclave service: a job has no token), a cgroup of its profile's size,
bubblewrap with the project's datasets read-only under /data, the member's home and
`/project`, and its GPUs alone. It starts in `/project/jobs/<id>/`, where the code as
submitted, its parameters, its log and whatever it writes stay; a notebook runs through
papermill, which writes its executed copy beside it.

The process is the job service's child and dies with it (bubblewrap's --die-with-parent).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from enclave.jobs import PARAMETERS_VARIABLE

from .. import sandbox
from ..core import validation
from ..core.addresses import JOB_NUMBERS
from ..core.jobs import JobBook, Start
from ..core.mounts import DATA_MOUNT, PROJECT_MOUNT, home_inside, home_subpath, shared_subpath
from ..core.project_groups import ProjectGroups
from ..core.registry import ActiveProject
from ..core.session_packages import user_prefix, user_site_packages
from ..sandbox.bubblewrap import SandboxView, bwrap_argv, runtime_paths
from ..sandbox.cgroup import CgroupError
from ..sandbox.gpu import GpuUnavailable, gpu_devices, visible_devices

log = logging.getLogger("enclave.jobs")
JOBS_FOLDER = "jobs"
LOG_NAME = "job.log"
PARAMETERS_NAME = "parameters.json"
# Notebooks without a kernel named in their metadata run with ipykernel's own.
FALLBACK_KERNEL = "python3"


class LaunchError(Exception):
    """The job could not be started; the message says why, for its record."""


@dataclass
class RunningJob:
    """A job whose process runs."""

    job_id: int
    project: str
    submitter: str
    process: asyncio.subprocess.Process
    box: sandbox.SessionSandbox
    folder: Path
    started: float  # the event loop's clock
    stop: tuple[str, str] | None = None  # (status, reason) once it is being stopped
    tasks: list[asyncio.Task] = field(default_factory=list)
    removing: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def remove_sandbox(self) -> None:
        """Kill every process of the job's sandbox and remove it (once at a time: a stop and
        the end it causes both ask)."""
        async with self.removing:
            try:
                await asyncio.to_thread(self.box.destroy)
            except (sandbox.NetworkError, CgroupError, OSError) as error:
                log.error("Removing job %d's sandbox: %s", self.job_id, error)


def executed_name(name: str) -> str:
    """The executed copy of notebook `name`."""
    return f"{Path(name).stem}.executed.ipynb"


def job_command(kind: str, name: str, code: bytes) -> list[str]:
    """What runs in the job's folder for a file of `kind`."""
    if kind == "notebook":
        kernel = json.loads(code).get("metadata", {}).get("kernelspec", {}).get("name")
        return [
            sys.executable,
            "-m",
            "papermill",
            name,
            executed_name(name),
            "--parameters_file",
            PARAMETERS_NAME,
            "--kernel",
            kernel or FALLBACK_KERNEL,
            "--log-output",
            "--no-progress-bar",
        ]
    if kind == "r":
        return ["Rscript", name]
    return [sys.executable, name]


def _write(folder_fd: int, name: str, data: bytes, uid: int, gid: int, mode: int) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=folder_fd)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        os.fchown(out.fileno(), uid, gid)


class JobLauncher:
    """Starts jobs in their sandboxes and removes the sandboxes once they end."""

    def __init__(self, site, book: JobBook):
        self.site = site
        self.book = book
        self.project_groups = ProjectGroups(site.state_dir, site.sessions.gid_base)

    @property
    def workspace_root(self) -> Path:
        return Path(self.site.sessions.workspace_root)

    def remove_leftovers(self) -> list[int]:
        """Remove the sandboxes of jobs an earlier run of the service left; their numbers."""
        removed = []
        for number in sandbox.built_numbers(self.workspace_root):
            if number in JOB_NUMBERS:
                sandbox.SessionSandbox.existing(number, self.workspace_root).destroy()
                removed.append(number)
        return removed

    # -- places -------------------------------------------------------------------------------

    def member_uid(self, project: str, user: str) -> int:
        """The uid of `user`'s sessions in `project`: the owner of their home there."""
        home = self.workspace_root / home_subpath(project, user)
        try:
            status = home.lstat()
        except FileNotFoundError:
            raise LaunchError(f"{user} has no home in project '{project}' yet") from None
        if not stat.S_ISDIR(status.st_mode) or status.st_uid < self.site.sessions.uid_base:
            raise LaunchError(f"{home} is not a session's home folder")
        return status.st_uid

    def job_folder(self, project: str, job_id: int, uid: int, gid: int) -> Path:
        """Make `/project/jobs/<id>/`: `jobs` is the service's (members read it), each job's
        folder its member's, readable by the project."""
        shared = self.workspace_root / shared_subpath(project)
        jobs = shared / JOBS_FOLDER
        try:
            jobs.mkdir(mode=0o750)
            os.chown(jobs, 0, gid)
            os.chmod(jobs, 0o2750)
        except FileExistsError:
            status = jobs.lstat()
            if not stat.S_ISDIR(status.st_mode) or status.st_uid != 0:
                raise LaunchError(
                    f"{PROJECT_MOUNT}/{JOBS_FOLDER} is not the job service's folder (owner uid "
                    f"{status.st_uid}); move it away so that jobs can run"
                ) from None
        folder = jobs / str(job_id)
        try:
            folder.mkdir(mode=0o750)
        except FileExistsError:
            raise LaunchError(f"{PROJECT_MOUNT}/{JOBS_FOLDER}/{job_id} exists already") from None
        os.chown(folder, uid, gid)
        os.chmod(folder, 0o2750)
        return folder

    # -- starting -----------------------------------------------------------------------------

    async def launch(self, start: Start, project: ActiveProject, job: dict) -> RunningJob:
        """Build the sandbox of `job` (as the book describes it) and start it; LaunchError if
        it cannot run."""
        submitter = job["submitter"]
        uid = self.member_uid(project.id, submitter)
        gid = self.project_groups.gid(project.id)
        try:
            datasets = project.dataset_folders(Path(self.site.data_root))
            devices = gpu_devices(start.gpus)
        except (validation.InvalidInput, GpuUnavailable) as error:
            raise LaunchError(str(error)) from None
        folder = self.job_folder(project.id, start.job_id, uid, gid)
        view = SandboxView(
            home=self.workspace_root / home_subpath(project.id, submitter),
            home_inside=home_inside(submitter),
            project_folder=self.workspace_root / shared_subpath(project.id),
            datasets=datasets,
            runtime=runtime_paths(),
            hosts_file=Path(),  # the sandbox's own, once it is built
            resolv_conf=Path(),
            hostname=f"enclave-job-{start.job_id}",
            devices=devices,
            workdir=f"{PROJECT_MOUNT}/{JOBS_FOLDER}/{start.job_id}",
        )
        try:
            box, process = await self._start(start, project, job, view, folder, uid, gid)
        except BaseException:
            # Nothing ran: a job tried again later (its start unrecorded) starts afresh.
            shutil.rmtree(folder, ignore_errors=True)
            raise
        loop_time = asyncio.get_running_loop().time()
        return RunningJob(start.job_id, project.id, submitter, process, box, folder, loop_time)

    async def _start(self, start, project, job, view, folder, uid, gid):
        """Write the job's files, build its sandbox, record its start and start it."""
        name, kind, code = await asyncio.to_thread(self.book.code_of, start.job_id)
        profile = self.site.sessions.profiles[job["profile"]]
        parameters = json.dumps(job["parameters"]).encode()
        folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            for file_name, data in ((name, code), (PARAMETERS_NAME, parameters), (LOG_NAME, b"")):
                _write(folder_fd, file_name, data, uid, gid, 0o640)
            log_fd = os.open(LOG_NAME, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW, dir_fd=folder_fd)
        finally:
            os.close(folder_fd)
        try:
            box = await self._sandbox(project, uid, gid, profile)
            view = replace(view, hosts_file=box.hosts_file, resolv_conf=box.resolv_conf)
            try:
                number = box.spec.number
                await asyncio.to_thread(self.book.started, start.job_id, start.gpus, number)
                process = await asyncio.create_subprocess_exec(
                    *bwrap_argv(view, job_command(kind, name, code)),
                    env=self._env(project.id, job, start, profile),
                    preexec_fn=box.launch_hook(view.home),
                    start_new_session=True,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log_fd,
                    stderr=asyncio.subprocess.STDOUT,
                )
            except BaseException as error:
                await asyncio.to_thread(box.destroy)
                if isinstance(error, OSError | subprocess.SubprocessError):
                    raise LaunchError(f"its process did not start: {error}") from None
                raise
        finally:
            os.close(log_fd)
        return box, process

    async def _sandbox(self, project: ActiveProject, uid: int, gid: int, profile):
        number = await asyncio.to_thread(sandbox.reserve_session_number, JOB_NUMBERS)
        try:
            egress = project.egress(self.site.sessions.egress_allow)
            allowed, names = await asyncio.to_thread(sandbox.resolve_endpoints, egress)
            box = sandbox.SessionSandbox(
                sandbox.SessionSpec(
                    number=number,
                    uid=uid,
                    gid=gid,
                    inbound_ports=(),
                    allowed=tuple(allowed),
                    host_names=tuple(names),
                    limits=sandbox.Limits(
                        memory_bytes=int(profile.memory), cpus=profile.cpus, pids=profile.pids
                    ),
                    files_dir=sandbox.files_dir(self.workspace_root, number),
                )
            )
            try:
                await asyncio.to_thread(box.create)
            except sandbox.SandboxError as error:
                raise LaunchError(str(error)) from None
        finally:
            sandbox.release_session_number(number)
        try:
            await asyncio.to_thread(box.verify, box.firewall_fingerprint)
        except sandbox.SandboxError as error:
            await asyncio.to_thread(box.destroy)
            raise LaunchError(str(error)) from None
        return box

    @staticmethod
    def _env(project: str, job: dict, start: Start, profile) -> dict[str, str]:
        submitter = job["submitter"]
        inside = home_inside(submitter)
        env = {
            "PATH": os.pathsep.join(
                [str(Path(sys.prefix, "bin")), f"{user_prefix(inside)}/bin", "/usr/bin", "/bin"]
            ),
            "HOME": inside,
            "USER": submitter,
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "PYTHONPATH": user_site_packages(inside),
            "PYTHONUNBUFFERED": "1",
            "MPLBACKEND": "Agg",
            "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime",
            "MEM_LIMIT": str(int(profile.memory)),
            "ENCLAVE_PROJECT": project,
            "ENCLAVE_DATA": DATA_MOUNT,
            "ENCLAVE_PROJECT_FOLDER": PROJECT_MOUNT,
            "ENCLAVE_JOB": str(start.job_id),
            PARAMETERS_VARIABLE: json.dumps(job["parameters"]),
        }
        if start.gpus:
            env["CUDA_VISIBLE_DEVICES"] = visible_devices(len(start.gpus))
        return env
