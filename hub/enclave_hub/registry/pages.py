"""The registry's web pages: projects, one project with its members and grants, and a
confirmation step before anything is removed, suspended or archived. Admins change; auditors
see the same pages without the forms."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from tornado import web

from ..core.pages import frame_values, page_templates
from .access import RegistryHandler

PAGES = page_templates(Path(__file__).with_name("templates"))
# What a confirmation page can lead to: (the question, the registry operation's name).
DESTRUCTIVE = {
    "remove-member": ("End {target}'s membership of {project} now?", "remove_member"),
    "revoke": ("Withdraw dataset {target} from {project} now?", "revoke"),
    "suspend": ("Suspend {project}? Its sessions stop.", "set_status"),
    "archive": ("Archive {project} for good? Its sessions stop.", "set_status"),
}


class PageHandler(RegistryHandler):
    def render_page(self, template: str, status: int = 200, **values) -> None:
        role = self.role()
        self.set_status(status)
        self.finish(
            PAGES.get_template(template).render(
                **frame_values(
                    "Registry", self.hub_auth.hub_prefix, self.current_user["name"], role
                ),
                prefix=self.hub_auth.base_url,
                role=role,
                xsrf=self.xsrf_form_html(),
                **values,
            )
        )

    def write_error(self, status_code: int, **kwargs) -> None:
        if status_code == 403 or self.current_user is None:
            self.finish(f"{status_code}: {self.error_message(**kwargs)}")
            return
        self.render_page("error.html", status_code, message=self.error_message(**kwargs))

    def project_url(self, project: str) -> str:
        return f"{self.hub_auth.base_url}projects/{quote(project, safe='')}"


class ProjectsPage(PageHandler):
    @web.authenticated
    def get(self) -> None:
        self.render_page("projects.html", projects=self.read(self.registry.list_projects))

    @web.authenticated
    async def post(self) -> None:
        form = {name: self.get_body_argument(name, "").strip() for name in FORM_FIELDS}
        project = await self.change(
            self.registry.create_project,
            form["id"],
            form["title"],
            description=form["description"],
            agreement=form["agreement"],
            starts=form["starts"] or None,
            ends=form["ends"] or None,
            profile=form["profile"] or "default",
        )
        self.redirect(self.project_url(project["id"]))


FORM_FIELDS = ("id", "title", "description", "agreement", "starts", "ends", "profile")


class ProjectPage(PageHandler):
    @web.authenticated
    def get(self, project: str) -> None:
        self.render_page("project.html", project=self.read(self.registry.show, project))

    @web.authenticated
    async def post(self, project: str) -> None:
        """The forms of the project page: edit, add a member, grant a dataset."""
        form = self.get_body_argument("form", "")
        field = self.get_body_argument
        if form == "edit":
            names = ("title", "description", "agreement", "starts", "ends", "profile")
            values = {name: field(name, "").strip() or None for name in names}
            values["title"] = values["title"] or ""
            values["profile"] = values["profile"] or "default"
            await self.change(self.registry.update_project, project, **values)
        elif form == "member":
            await self.change(
                self.registry.add_member,
                project,
                field("username", ""),
                field("role", "researcher"),
                field("expires", "").strip() or None,
            )
        elif form == "grant":
            expires = field("expires", "").strip() or None
            await self.change(self.registry.grant, project, field("dataset", ""), expires)
        else:
            raise web.HTTPError(400, f"unknown form {form!r}")
        self.redirect(self.project_url(project))


class ConfirmPage(PageHandler):
    """GET asks; POST does it."""

    def _action(self) -> tuple[str, str, str]:
        action = self.get_argument("action", "")
        if action not in DESTRUCTIVE:
            raise web.HTTPError(400, f"unknown action {action!r}")
        return action, self.get_argument("target", ""), DESTRUCTIVE[action][1]

    @web.authenticated
    def get(self, project: str) -> None:
        self.require_admin()
        action, target, _ = self._action()
        question = DESTRUCTIVE[action][0].format(target=target, project=project)
        self.render_page(
            "confirm.html", project=project, action=action, target=target, question=question
        )

    @web.authenticated
    async def post(self, project: str) -> None:
        action, target, operation = self._action()
        if operation == "set_status":
            status = {"suspend": "suspended", "archive": "archived"}[action]
            await self.change(self.registry.set_status, project, status)
        else:
            await self.change(getattr(self.registry, operation), project, target)
        self.redirect(self.project_url(project))


def page_handlers(prefix: str) -> list[tuple]:
    return [
        (prefix, ProjectsPage),
        (prefix + r"projects/([^/]+)", ProjectPage),
        (prefix + r"projects/([^/]+)/confirm", ConfirmPage),
    ]
