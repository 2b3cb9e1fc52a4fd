"""The project registry reflected into JupyterHub's groups and roles.

Each project is a JupyterHub group `project-<id>` of the users whose membership is in force.
Each such user also holds a role of their own granting exactly their project sessions (the
named servers `<user>/<project>`): the hub's standard `user` role is cut down so that it no
longer carries the servers, and the sharing, of every server of its holder. A token, which
never has more than its owner, therefore reaches only sessions of projects in force. The
platform roles (`operator`, `registry-user`, `auditor`) follow identity-provider groups.

No one is a JupyterHub admin: that role enters every session and acts in it as its owner. The
site's admins are operators instead: they see every user and session on the hub's admin page
and may stop a session (recorded under their own name), and never enter or start one.

The authenticator applies this at every login and auth refresh (`manage_groups`,
`manage_roles`). The registry service asks the hub to apply it again, to every user, after
each change and each reconcile (`POST /hub/api/enclave/access`), so a new membership can be
used at once and a revoked one stops being usable at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from .core.hub_api import REFLECT_ACCESS_PATH
from .core.registry import DatabaseUnavailable
from .core.services import AIRLOCK, AUDIT, DASK_GATEWAY, INQUIRY, JOBS, PACKAGES, REGISTRY

PROJECT_GROUP_PREFIX = "project-"
REFLECT_SCOPE = "custom:enclave:reflect-access"
REFLECT_ROUTE = f"/api{REFLECT_ACCESS_PATH}"

# The hub's `user` role without starting, entering or sharing servers: those come from
# project roles only. Reading their own servers' status stays, and everyone may open the
# airlock's pages, which show each person only what is theirs to see.
USER_ROLE = {
    "name": "user",
    "description": "a signed-in user: their own profile, activity, tokens and server status, "
    "and the airlock",
    "scopes": [
        "read:users!user",
        "users:activity!user",
        "tokens!user",
        "read:servers!user",
        AIRLOCK.access_scope,
    ],
}
REGISTRY_USER_ROLE = {
    "name": "registry-user",
    "description": "opens the project registry (admins change it, auditors read it)",
    "scopes": [REGISTRY.access_scope],
}
AUDITOR_ROLE = {
    "name": "auditor",
    "description": "reads the audit log in the audit console",
    "scopes": [AUDIT.access_scope],
}
INQUIRER_ROLE = {
    "name": "inquirer",
    "description": "opens the data inquiry portal: the catalogue, cohort counts, applications",
    "scopes": [INQUIRY.access_scope],
}
OPERATOR_ROLE = {
    "name": "operator",
    "description": "the site's admins: every user and session on the admin page, and stopping a "
    "session; never entering or starting one",
    "scopes": [
        "admin-ui",
        "list:users",
        "read:users",
        "read:servers",
        "delete:servers",
        "list:groups",
        "read:groups",
    ],
}
SESSION_SCOPES = ("servers", "access:servers")


def project_group(project_id: str) -> str:
    return PROJECT_GROUP_PREFIX + project_id


def sessions_role_name(username: str) -> str:
    """A valid, unambiguous role name for one user ('@' cannot occur in role names)."""
    return f"sessions.{username.replace('@', '~')}.role"


def identity_groups(groups: Iterable[str]) -> list[str]:
    """The groups that come from the identity provider: the reflected ones are Enclave's own."""
    return sorted(g for g in groups if not g.startswith(PROJECT_GROUP_PREFIX))


@dataclass(frozen=True)
class HubAccess:
    """Computes a user's JupyterHub groups and roles from the registry and their IdP groups."""

    registry: object  # the project registry: projects_of(username)
    admin_groups: frozenset[str]
    auditor_groups: frozenset[str]
    inquiry_groups: frozenset[str]

    def model(self, username: str, groups: Iterable[str]) -> dict:
        """`admin` (never), `groups` and `roles` as an Authenticator's auth model carries them."""
        idp_groups = identity_groups(groups)
        projects = [p.id for p in self.registry.projects_of(username)]
        roles = [USER_ROLE]
        if set(idp_groups) & self.admin_groups:
            roles.append(OPERATOR_ROLE)
        if set(idp_groups) & (self.admin_groups | self.auditor_groups):
            roles.append(REGISTRY_USER_ROLE)
        if set(idp_groups) & self.auditor_groups:
            roles.append(AUDITOR_ROLE)
        if set(idp_groups) & self.inquiry_groups:
            roles.append(INQUIRER_ROLE)
        if projects:
            servers = [f"{username}/{project}" for project in projects]
            scopes = [f"{scope}!server={s}" for s in servers for scope in SESSION_SCOPES]
            # The default server's spawn page lists the projects to choose from; the spawner
            # never starts that server itself.
            scopes.append(f"servers!server={username}/")
            # Their sessions' tokens carry these too (server_token_scopes): Dask clusters and
            # the package index and the job service.
            scopes += [DASK_GATEWAY.access_scope, PACKAGES.access_scope, JOBS.access_scope]
            roles.append(
                {
                    "name": sessions_role_name(username),
                    "description": f"the sessions of {username} in {', '.join(projects)}",
                    "scopes": scopes,
                }
            )
        return {
            "admin": False,
            "groups": [*idp_groups, *map(project_group, projects)],
            "roles": roles,
        }


def apply(user, model: dict) -> bool:
    """Give a hub user the groups and roles of `model`; True if anything changed."""
    before = _holdings(user.orm_user)
    user.sync_groups(model["groups"])
    user.sync_roles(model["roles"])
    return _holdings(user.orm_user) != before


def _holdings(orm_user: orm.User) -> tuple:
    roles = {(r.name, tuple(r.scopes)) for r in orm_user.roles}
    return frozenset(g.name for g in orm_user.groups), frozenset(roles)


class ReflectAccessHandler(APIHandler):
    """`POST /hub/api/enclave/access`: re-apply every user's groups and roles now.

    Only the registry service holds the scope. Answers the names of the users whose access
    changed; 503 while the registry's database is unavailable.
    """

    async def post(self):
        if not self.has_scope(REFLECT_SCOPE):
            raise web.HTTPError(403, f"reflecting project access needs the {REFLECT_SCOPE} scope")
        access: HubAccess = self.authenticator.access
        changed = []
        for orm_user in self.db.query(orm.User).all():
            user = self.users[orm_user]
            groups = [g.name for g in orm_user.groups]
            try:
                model = access.model(user.name, groups)
            except DatabaseUnavailable as error:
                # Those done so far keep what they were given; the next pass does them all.
                raise web.HTTPError(503, str(error)) from None
            if apply(user, model):
                changed.append(user.name)
        self.write(json.dumps({"changed": changed}))
