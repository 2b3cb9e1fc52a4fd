"""EnclaveKubeSpawner: a project session as a pod, started by KubeSpawner under Zero to JupyterHub.

The session is the same as on one machine (`project_session`): one named server per project,
refused to non-members, recorded in the audit log before it starts. Its pod gets the project's
profile (`profiles`), and `modify_pod_hook` confines it (`pods`): the project's folders and
datasets, read-only where they are data, the site's DNS resolver, and nothing that runs as
root. Where a pod may connect
is the NetworkPolicies' business (the Helm chart).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubespawner import KubeSpawner
from traitlets import Any as AnyTrait
from traitlets import Unicode, default

from ..core.kube_pods import pod_dns
from ..core.mounts import home_inside, home_subpath, shared_subpath
from ..project_session import (
    ProjectSession,
    SessionRefused,
    first_line,
    session_server_command,
)
from .pods import SessionMounts, confine_session_pod
from .profiles import kubespawner_profile

# Where the notebook images put the sessions' Jupyter configuration (images/notebook).
SESSION_JUPYTER_CONFIG = "/etc/enclave/jupyter"


def session_pod_hook(spawner: EnclaveKubeSpawner, pod):
    """KubeSpawner's `modify_pod_hook`: the last word on the pod."""
    return confine_session_pod(pod, spawner.session_mounts(), pod_dns(spawner.kube))


class EnclaveKubeSpawner(ProjectSession, KubeSpawner):
    """Starts a project session as a pod in the hub's namespace."""

    kube = AnyTrait(help="the site's KubernetesSettings: images, claims, uid").tag(config=True)
    workspace_root = Unicode(
        help="where the hub mounts the workspace claim, to prepare a session's folders"
    ).tag(config=True)

    @default("profile_list")
    def _profile_list_default(self):
        return self._project_profiles

    @default("modify_pod_hook")
    def _modify_pod_hook_default(self):
        return session_pod_hook

    @default("cmd")
    def _cmd_default(self) -> list[str]:
        return session_server_command("python3")

    def _project_profiles(self, spawner: EnclaveKubeSpawner) -> list[dict[str, Any]]:
        """The one profile a session of this project may have: the project's."""
        project = self._check_project()
        return [kubespawner_profile(project.profile, self.profiles[project.profile], self.kube)]

    def session_mounts(self) -> SessionMounts:
        project = self._check_project()
        return SessionMounts(
            user=self.user.name,
            project=project.id,
            datasets=tuple(project.datasets),
            workspace_claim=self.kube.workspace_claim,
            data_claim=self.kube.data_claim,
            uid=self.kube.session_uid,
            gid=self.project_groups.gid(project.id),
        )

    def get_env(self) -> dict[str, str]:
        env = self.project_env(super().get_env())
        # No Jupyter configuration from the home folder: it could switch the recording off.
        env["JUPYTER_CONFIG_DIR"] = SESSION_JUPYTER_CONFIG
        env["JUPYTER_CONFIG_PATH"] = SESSION_JUPYTER_CONFIG
        env["HOME"] = home_inside(self.user.name)
        return env

    def _prepare_folders(self, project_id: str) -> None:
        """The session's home and the project's shared folder, in the workspace claim.

        Every session runs as the same uid as the hub (`kubernetes.session_uid`): a pod sees
        only its own project's folders, so its mounts, not its uid, keep projects apart.
        """
        home = Path(self.workspace_root, home_subpath(project_id, self.user.name))
        shared = Path(self.workspace_root, shared_subpath(project_id))
        try:
            home.mkdir(mode=0o700, parents=True, exist_ok=True)
            shared.mkdir(mode=0o770, exist_ok=True)
        except OSError as error:
            raise SessionRefused(
                f"The session's folders could not be prepared: {error}", reason="storage"
            ) from None

    async def _start(self):
        project = self._check_project()
        self.mounted_datasets = sorted(project.datasets)
        self._prepare_folders(project.id)
        await self._record_start(project)
        try:
            return await super()._start()
        except BaseException as error:
            await self._record_end("session.failure", "failed", first_line(error))
            raise

    async def stop(self, now: bool = False) -> None:
        await self._record_end("session.stop", "stopped")
        await super().stop(now=now)

    async def poll(self) -> int | None:
        status = await super().poll()
        if status is not None:
            await self._record_end("session.stop", "exited", f"exit status {status}")
        return status
