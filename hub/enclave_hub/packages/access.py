"""Who calls the package index: notebook sessions only, each by its own token.

`pip` cannot send a header of its own, so the token also comes as the password of HTTP Basic
authentication (the session's index URL carries it; the user name is not read). Whoever
presents it, the caller is the session the hub says the token belongs to: its user and project.
"""

from __future__ import annotations

from ..core import service_auth
from ..core.package_allowances import PackageAllowances


class SessionHandler(service_auth.SessionHandler):
    """A request by a notebook session, with the project's package allowances at hand."""

    @property
    def allowances(self) -> PackageAllowances:
        return self.settings["allowances"]
