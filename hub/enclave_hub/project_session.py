"""What every Enclave spawner shares: a session is one user's JupyterHub named server for one
project, recorded in the audit log, with the project's services in its environment.

The local spawner (`spawner.EnclaveSpawner`, a sandbox on this machine) and the Kubernetes one
(`kubernetes.spawner.EnclaveKubeSpawner`, a pod) add only where and how the session runs.
"""

from __future__ import annotations

import secrets

from jupyterhub.spawner import SpawnException
from traitlets import Any as AnyTrait
from traitlets import HasTraits, Integer, List, Unicode, default

from enclave.jobs import URL_VARIABLE as JOBS_URL_VARIABLE

from .core.audit_client import AuditRefused
from .core.hub_api import SavedSession
from .core.mounts import DATA_MOUNT, PROJECT_MOUNT, home_inside
from .core.pages import page_templates
from .core.registry import DatabaseUnavailable
from .core.session_packages import package_index_env
from .hub_pages import HUB_TEMPLATES
from .kernels import DEFAULT_KERNEL, kernel_specs
from .singleuser import (
    SESSION_PAGE_POLICY,
    airlock_page,
    contents,
    dask_dashboard,
    jobs_page,
    lab_look,
    packages_page,
    recording,
    terminals,
)

CSP = "Content-Security-Policy"
SESSION_PAGES = page_templates(HUB_TEMPLATES)
# The server extensions every session runs: recording, Dask dashboards, the airlock's page,
# the package request page, and the project's name in JupyterLab.
SESSION_EXTENSIONS = (
    recording,
    dask_dashboard,
    airlock_page,
    packages_page,
    jobs_page,
    lab_look,
)
# Installed server extensions a session does without: no language server is installed for
# jupyter-lsp to find, and looking for them (`npm prefix` among others) slowed every start.
SESSION_WITHOUT = ("jupyter_lsp",)
# The kernels a session offers: Enclave's own, not the Python package's native one.
ENCLAVE_KERNELS = sorted(kernel_specs())


def session_server_command(python: str) -> list[str]:
    """The session's Jupyter server, isolated from what user code can write: `-I` takes no
    user site-packages (and no `.pth` planted there), no PYTHON* variables and not the working
    folder (the home) on its path. The recording extension then makes it non-dumpable."""
    return [python, "-I", "-m", "jupyterhub.singleuser"]


class SessionRefused(SpawnException):
    """A start refused or failed, shown to the person in its own words (JupyterHub shows an
    exception's `jupyterhub_message` where it would otherwise show its Python form)."""

    @property
    def jupyterhub_message(self) -> str:
        return self.message


def first_line(error: BaseException) -> str:
    return (str(error) or type(error).__name__).splitlines()[0]


class ProjectSession(HasTraits):
    """What makes a JupyterHub spawner a spawner of project sessions (a mixin, placed before
    the spawner class it extends); subclasses decide where a session runs."""

    registry = AnyTrait(
        help="the project registry: projects_of(user) and membership(user, project)"
    ).tag(config=True)
    profiles = AnyTrait(help="resource profiles by name").tag(config=True)
    project_groups = AnyTrait(help="ProjectGroups: the group id of each project").tag(config=True)
    audit = AnyTrait(help="the AuditClient that records session events").tag(config=True)
    audit_url = Unicode(help="the audit service, as sessions reach it").tag(config=True)
    audit_events_path = Unicode(help="the audit service's event URL path").tag(config=True)
    airlock_url = Unicode(help="the airlock service, as sessions reach it").tag(config=True)
    packages_url = Unicode(help="the package index, as sessions reach it").tag(config=True)
    jobs_url = Unicode(help="the job service, as sessions reach it").tag(config=True)
    view_max_bytes = Integer(help="the most of one file a session shows").tag(config=True)
    gateway_url = Unicode(help="the Dask gateway's API, as sessions reach it").tag(config=True)
    gateway_scheduler_proxy = Unicode(
        help="gateway://host:port where Dask clients reach their schedulers"
    ).tag(config=True)

    _checked_project = None  # as `_check_project` last found it
    session_id = Unicode("", help="this run of the session, as the audit log names it")
    stop_reason = Unicode("", help="why this run was stopped, when not by its owner")
    mounted_datasets = List(help="the datasets this run mounted (the reconciler checks them)")

    def get_args(self) -> list[str]:
        # On the command line, which outranks any configuration file.
        recorded_terminals = self.profiles[self._check_project().profile].terminals == "recorded"
        extensions = {module.__name__: True for module in SESSION_EXTENSIONS}
        extensions |= {"jupyter_server_terminals": False, terminals.__name__: recorded_terminals}
        extensions |= dict.fromkeys(SESSION_WITHOUT, False)
        return [
            *super().get_args(),
            f"--ServerApp.jpserver_extensions={extensions!r}",
            "--ServerApp.kernel_websocket_connection_class="
            f"{recording.__name__}.{recording.RecordingChannels.__name__}",
            "--ServerApp.contents_manager_class="
            f"{contents.__name__}.{contents.ShowingContents.__name__}",
            f"--ShowingContents.view_max_bytes={self.view_max_bytes}",
            f"--ServerApp.terminals_enabled={recorded_terminals}",
            f"--ServerApp.tornado_settings={ {'headers': {CSP: SESSION_PAGE_POLICY}}!r}",
            "--KernelSpecManager.ensure_native_kernel=False",
            f"--KernelSpecManager.allowed_kernelspecs={set(ENCLAVE_KERNELS)!r}",
            f"--MappingKernelManager.default_kernel_name={DEFAULT_KERNEL}",
        ]

    @default("default_url")
    def _default_url_default(self) -> str:
        return "/lab"

    @default("options_form")
    def _options_form_default(self):
        return self._project_form

    @property
    def home_inside(self) -> str:
        return home_inside(self.user.name)

    # -- the project -----------------------------------------------------------------------

    def _project(self):
        return self._ask_registry(self.registry.membership, self.user.name, self.name)

    def _ask_registry(self, question, *args):
        """The registry's answer; refused (503, nothing started) while its database is
        unavailable."""
        if self.registry is None:
            raise SessionRefused("Enclave is misconfigured: no project registry", reason="config")
        try:
            return question(*args)
        except DatabaseUnavailable as error:
            raise SessionRefused(
                f"The session was not started: {error}.", reason="database", status_code=503
            ) from None

    def _project_form(self, spawner: ProjectSession) -> str:
        """The session page: the project being started, with its datasets, the profile's
        limits and the membership's end; or the user's projects to pick from."""
        project = self._project()
        projects = [] if project else self._ask_registry(self.registry.projects_of, self.user.name)
        return SESSION_PAGES.get_template("session_options.html").render(
            project=project,
            profile=self.profiles.get(project.profile) if project else None,
            projects=projects,
            spawn_url=f"{self.hub.base_url}spawn/{self.user.escaped_name}/",
        )

    def _check_project(self):
        """The project this server is for, if the user is a member in force and the one who
        asked for it; else refuse."""
        requester = getattr(self.handler, "current_user", None)
        if requester is not None and requester.name != self.user.name:
            raise SessionRefused(
                f"Only {self.user.name} starts their own sessions.", reason="owner", status_code=403
            )
        project = self._project()
        if project is None:
            message = (
                f"{self.user.name} is not a member of project '{self.name}'."
                if self.name
                else "Sessions are started for a project: choose one on the home page."
            )
            raise SessionRefused(message, reason="membership", status_code=403)
        self._checked_project = project
        return project

    # -- the session's environment ---------------------------------------------------------

    def project_env(self, env: dict[str, str]) -> dict[str, str]:
        """The variables by which a session finds its project, its data and Enclave's services."""
        env["USER"] = self.user.name
        env["HOME"] = self.home_inside
        env["SHELL"] = "/bin/bash"
        env["ENCLAVE_PROJECT"] = self.name
        # As checked when this start began: asked again, an outage could fail a start whose
        # sandbox is already built, outside its clean-up.
        project = self._checked_project or self._project()
        env[lab_look.PROJECT_TITLE_VARIABLE] = project.title if project else self.name
        env["ENCLAVE_DATA"] = DATA_MOUNT
        env["ENCLAVE_PROJECT_FOLDER"] = PROJECT_MOUNT
        env["ENCLAVE_AUDIT_URL"] = self.audit_url
        env["ENCLAVE_AUDIT_EVENTS_PATH"] = self.audit_events_path
        env["ENCLAVE_AIRLOCK_URL"] = self.airlock_url
        env[JOBS_URL_VARIABLE] = self.jobs_url
        env.update(
            package_index_env(self.packages_url, env["JUPYTERHUB_API_TOKEN"], self.home_inside)
        )
        # dask-gateway's client reads these: Gateway() reaches this deployment's gateway.
        env["DASK_GATEWAY__ADDRESS"] = self.gateway_url
        env["DASK_GATEWAY__PROXY_ADDRESS"] = self.gateway_scheduler_proxy
        env["DASK_GATEWAY__AUTH__TYPE"] = "jupyterhub"
        env["JUPYTERLAB_SETTINGS_DIR"] = f"{self.home_inside}/.jupyter/lab/user-settings"
        env["JUPYTERLAB_WORKSPACES_DIR"] = f"{self.home_inside}/.jupyter/lab/workspaces"
        return env

    # -- the audit log ---------------------------------------------------------------------

    async def _record_start(self, project) -> None:
        """Record the start and each dataset mount, or refuse to start (fail closed)."""
        self.session_id = secrets.token_hex(8)
        common = {"actor": self.user.name, "project": project.id, "session": self.session_id}
        try:
            await self.audit.record(
                action="session.start",
                target=f"{self.user.name}/{self.name}",
                outcome="ok",
                **common,
            )
            for dataset in project.datasets:
                await self.audit.record(
                    action="dataset.mount",
                    target=f"{DATA_MOUNT}/{dataset}",
                    dataset=dataset,
                    outcome="read-only",
                    **common,
                )
        except AuditRefused as error:
            await self._record_end("session.failure", "refused", f"audit: {error}")
            raise SessionRefused(
                f"The session was not started because it cannot be audited: {error}",
                reason="audit",
                status_code=503,
            ) from None

    async def _record_end(self, action: str, outcome: str, reason: str = "") -> None:
        """Record how this run ended, once; it never stops the session from being removed."""
        if not self.session_id:
            return
        session, self.session_id = self.session_id, ""
        reason, self.stop_reason = reason or self.stop_reason, ""
        await self.audit.record_best_effort(
            self.log,
            actor=self.user.name,
            action=action,
            target=f"{self.user.name}/{self.name}",
            project=self.name,
            session=session,
            outcome=outcome,
            reason=reason or None,
        )

    # -- state kept across hub restarts ---------------------------------------------------

    def get_state(self) -> dict:
        state = super().get_state()
        if self.session_id:
            state.update(SavedSession(self.session_id, tuple(self.mounted_datasets)).to_state())
        return state

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        saved = SavedSession.from_state(state)
        self.session_id = saved.session_id
        self.mounted_datasets = list(saved.datasets)
