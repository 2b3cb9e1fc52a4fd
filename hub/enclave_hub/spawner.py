"""EnclaveSpawner: one notebook session per user and project, never as root.

A session is a JupyterHub named server whose name is the project id. It runs as an unprivileged
uid of its own (`uid_base` + the hub's user id), in a home kept for that user and project, with
a minimal environment. Its output goes to a log file the session cannot open, so that a session
which dies while starting can be reported to the user with its reason.
"""

from __future__ import annotations

import asyncio
import html
import os
import socket
import sys
from pathlib import Path
from typing import Any

from jupyterhub.spawner import LocalProcessSpawner, SpawnException
from traitlets import Any as AnyTrait
from traitlets import Integer, Unicode, default

LOG_TAIL_LINES = 15


def process_start_time(pid: int) -> int | None:
    """The start time of a process in clock ticks since boot, or None if it is gone.

    Together with the pid it names one process: a pid reused by a later process has
    another start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name, which is in parentheses and may hold spaces.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


class EnclaveSpawner(LocalProcessSpawner):
    """Starts a project session as a local process under the session's own uid."""

    registry = AnyTrait(
        help="the project registry: projects_of(user) and membership(user, project)"
    ).tag(config=True)

    workspace_root = Unicode(
        "/srv/enclave/workspaces",
        help="folder of project workspaces; homes are <root>/<project>/home/<user>",
    ).tag(config=True)

    log_dir = Unicode(help="folder for session logs, inside the hub's state directory").tag(
        config=True
    )

    uid_base = Integer(
        200000, help="sessions run as uid_base + the hub's user id, with the same gid"
    ).tag(config=True)

    pid_start_time = Integer(0, help="start time of the recorded pid, in clock ticks")

    @default("cmd")
    def _cmd_default(self) -> list[str]:
        return [os.path.join(sys.prefix, "bin", "jupyterhub-singleuser")]

    @default("env_keep")
    def _env_keep_default(self) -> list[str]:
        return ["LANG", "LC_ALL"]

    @default("default_url")
    def _default_url_default(self) -> str:
        return "/lab"

    @default("options_form")
    def _options_form_default(self):
        return self._project_form

    # -- identity and places -------------------------------------------------------------

    @property
    def session_uid(self) -> int:
        return self.uid_base + self.user.id

    @property
    def home_dir(self) -> Path:
        return Path(self.workspace_root, self.name, "home", self.user.name)

    @property
    def log_path(self) -> Path:
        return Path(self.log_dir, f"{self.user.name}--{self.name}.log")

    def _project(self):
        if self.registry is None:
            raise SpawnException("Enclave is misconfigured: no project registry", reason="config")
        return self.registry.membership(self.user.name, self.name)

    def _project_form(self, spawner: EnclaveSpawner) -> str:
        """The spawn page: the project being started, or the user's projects to pick from."""
        project = self._project()
        if project is not None:
            return (
                f'<p class="enclave-project">Start a session for project '
                f"<strong>{html.escape(project.title)}</strong> "
                f"(<code>{html.escape(project.id)}</code>).</p>"
            )
        links = "".join(
            f'<li><a href="{self.hub.base_url}spawn/{self.user.escaped_name}/{p.id}">'
            f"{html.escape(p.title)}</a> (<code>{p.id}</code>)</li>"
            for p in self.registry.projects_of(self.user.name)
        )
        return (
            "<p>Sessions are started for one project. Your projects:</p>"
            f'<ul class="enclave-projects">{links or "<li>none yet</li>"}</ul>'
        )

    # -- process ---------------------------------------------------------------------------

    def _prepare_home(self) -> None:
        self.home_dir.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.home_dir.mkdir(mode=0o700, exist_ok=True)
        os.chown(self.home_dir, self.session_uid, self.session_uid)
        os.chmod(self.home_dir, 0o700)

    def make_preexec_fn(self, name: str):
        uid = self.session_uid
        home = str(self.home_dir)

        def drop_to_session_user() -> None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.umask(0o077)
            os.chdir(home)

        return drop_to_session_user

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        env["USER"] = self.user.name
        env["HOME"] = str(self.home_dir)
        env["SHELL"] = "/bin/bash"
        env["PATH"] = os.pathsep.join(
            [os.path.join(sys.prefix, "bin"), "/usr/local/bin", "/usr/bin", "/bin"]
        )
        env["ENCLAVE_PROJECT"] = self.name
        return env

    async def start(self) -> tuple[str, int]:
        if self._project() is None:
            message = (
                f"{self.user.name} is not a member of project '{self.name}'."
                if self.name
                else "Sessions are started for a project: choose one on the home page."
            )
            raise SpawnException(message, reason="membership", status_code=403)
        if self.session_uid == 0:
            raise SpawnException(
                "Enclave is misconfigured: a session would run as root.", reason="config"
            )
        self._prepare_home()
        Path(self.log_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.log_path, "ab") as session_log:
            self.popen_kwargs = {"stdout": session_log, "stderr": session_log}
            ip, port = await super().start()
        self.pid_start_time = process_start_time(self.pid) or 0
        await self._wait_until_listening(ip, port)
        return ip, port

    async def _wait_until_listening(self, ip: str, port: int) -> None:
        """Return once the server accepts connections; raise with its reason if it exits."""
        deadline = asyncio.get_running_loop().time() + self.start_timeout
        while asyncio.get_running_loop().time() < deadline:
            status = self.proc.poll()
            if status is not None:
                self.clear_state()
                raise SpawnException(
                    f"The session for project '{self.name}' exited while starting "
                    f"(exit status {status}). Its last output:\n{self._log_tail()}",
                    reason="exited",
                    status_code=500,
                )
            try:
                with socket.create_connection((ip, port), timeout=1):
                    return
            except OSError:
                await asyncio.sleep(0.2)
        raise SpawnException(
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

    # -- state kept across hub restarts ---------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.pid:
            state["pid_start_time"] = self.pid_start_time
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.pid_start_time = state.get("pid_start_time", 0)

    def clear_state(self) -> None:
        super().clear_state()
        self.pid_start_time = 0

    async def poll(self) -> int | None:
        if self.proc is None and self.pid:
            current = process_start_time(self.pid)
            if current is None or current != self.pid_start_time:
                # Gone, or the pid now belongs to another process: never adopt that one.
                self.log.warning(
                    "Session %s/%s: recorded pid %d is no longer its process",
                    self.user.name,
                    self.name,
                    self.pid,
                )
                self.clear_state()
                return 0
        return await super().poll()
