"""The registry's web pages: projects, one project with its members and grants, and a
confirmation step that says what removing, suspending or archiving will stop. Admins change;
auditors see the same pages without the forms.

Forms are checked field by field before anything changes: a bad field is named beside it, the
form keeps what was typed, and a change that is made is confirmed on the next page."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import quote

from tornado import web

from enclave.catalog import datasets as datasets_in

from ..core import validation
from ..core.identities import Identities
from ..core.pages import FormRefused, FramedPages, page_templates
from ..core.service_auth import error_text
from .access import RegistryHandler

PAGES = page_templates(Path(__file__).with_name("templates"))
# What a confirmation page can lead to: (the question, the registry operation's name).
DESTRUCTIVE = {
    "remove-member": ("End {target}'s membership of {project} now?", "remove_member"),
    "revoke": ("Withdraw dataset {target} from {project} now?", "revoke"),
    "suspend": ("Suspend {project}?", "set_status"),
    "archive": ("Archive {project} for good? It cannot be reopened.", "set_status"),
}
PROJECT_FIELDS = ("id", "title", "description", "agreement", "starts", "ends", "profile")
EDIT_FIELDS = PROJECT_FIELDS[1:]


class PageHandler(FramedPages, RegistryHandler):
    pages = PAGES
    section = "Registry"

    def project_url(self, project: str) -> str:
        return f"{self.hub_auth.base_url}projects/{quote(project, safe='')}"

    def known_users(self) -> list[str]:
        """Everyone who has signed in: the names a membership is expected for."""
        return Identities(self.registry.sessions, self.registry.record).usernames()

    def choices(self) -> dict:
        """What the forms' pickers offer: profiles, datasets in the data root, known people."""
        return {
            "profiles": sorted(self.settings["site"].sessions.profiles),
            "datasets": datasets_in(self.registry.data_root),
            "known_users": self.known_users(),
            "roles": validation.ROLES,
        }

    def field_errors(self, values: dict) -> dict[str, str]:
        """Each typed field checked on its own, so that a refusal names the field."""
        profiles = sorted(self.settings["site"].sessions.profiles)
        checks = {
            "id": lambda v: validation.identifier(v, "project id"),
            "title": lambda v: v or _refuse("a title is required"),
            "starts": lambda v: validation.day(v, "start date"),
            "ends": lambda v: validation.day(v, "end date"),
            "profile": lambda v: (
                v in profiles or _refuse(f"no profile {v!r}: choose one of {', '.join(profiles)}")
            ),
            "username": validation.username,
            "role": validation.role,
            "expires": lambda v: validation.moment(v, "expiry date"),
            "dataset": lambda v: (
                v in datasets_in(self.registry.data_root)
                or _refuse(f"no dataset {v!r} in the data root: choose one from the list")
            ),
        }
        errors = {}
        for name, value in values.items():
            if name in checks and (value or name in ("id", "title", "username", "dataset")):
                try:
                    checks[name](value)
                except validation.InvalidInput as error:
                    errors[name] = str(error)
        return errors

    async def change_from(
        self, form: str, values: dict, operation, *args, warning: str = "", **kwargs
    ) -> dict:
        """A change made from a form; or the form shown again with what was typed, when a
        field is bad, when the change is refused, or when `warning` asks to be confirmed."""
        errors = self.field_errors(values)
        if errors or warning:
            raise FormRefused(form, values, errors, "" if errors else warning)
        try:
            return await self.change(operation, *args, **kwargs)
        except web.HTTPError as error:
            if error.status_code not in (400, 404, 409):
                raise
            raise FormRefused(form, values, {"form": error_text(error)}) from None

    def show_refused(self, template: str, refused: FormRefused, **values) -> None:
        self.render_page(
            template,
            400 if refused.errors else 200,
            refused=refused,
            **self.choices(),
            **values,
        )


def _refuse(message: str):
    raise validation.InvalidInput(message)


class ProjectsPage(PageHandler):
    @web.authenticated
    def get(self) -> None:
        self.render_page(
            "projects.html",
            projects=self.read(self.registry.list_projects),
            **self.choices(),
        )

    @web.authenticated
    async def post(self) -> None:
        values = {name: self.get_body_argument(name, "").strip() for name in PROJECT_FIELDS}
        values["profile"] = values["profile"] or "default"
        try:
            project = await self.change_from(
                "create",
                values,
                self.registry.create_project,
                values["id"],
                values["title"],
                description=values["description"],
                agreement=values["agreement"],
                starts=values["starts"] or None,
                ends=values["ends"] or None,
                profile=values["profile"],
            )
        except FormRefused as refused:
            self.show_refused(
                "projects.html", refused, projects=self.read(self.registry.list_projects)
            )
            return
        self.notify(f"Project {project['id']} was created. Add its members and datasets here.")
        self.redirect(self.project_url(project["id"]))


class ProjectPage(PageHandler):
    @web.authenticated
    def get(self, project: str) -> None:
        self.render_page(
            "project.html", project=self.read(self.registry.show, project), **self.choices()
        )

    @web.authenticated
    async def post(self, project: str) -> None:
        """The forms of the project page: edit, add a member, grant a dataset."""
        form = self.get_body_argument("form", "")
        field = self.get_body_argument
        try:
            if form == "edit":
                notice = await self._edit(project)
            elif form == "member":
                notice = await self._add_member(project)
            elif form == "grant":
                values = {name: field(name, "").strip() for name in ("dataset", "expires")}
                await self.change_from(
                    form,
                    values,
                    self.registry.grant,
                    project,
                    values["dataset"],
                    values["expires"] or None,
                )
                notice = f"Dataset {values['dataset']} was granted to {project}."
            else:
                raise web.HTTPError(400, f"unknown form {form!r}")
        except FormRefused as refused:
            self.show_refused(
                "project.html", refused, project=self.read(self.registry.show, project)
            )
            return
        self.notify(notice)
        self.redirect(self.project_url(project))

    async def _edit(self, project: str) -> str:
        values = {name: self.get_body_argument(name, "").strip() for name in EDIT_FIELDS}
        values["profile"] = values["profile"] or "default"
        changed = {name: value or None for name, value in values.items()}
        changed["title"] = values["title"]
        await self.change_from("edit", values, self.registry.update_project, project, **changed)
        return f"The changes to {project} were saved."

    async def _add_member(self, project: str) -> str:
        field = self.get_body_argument
        values = {name: field(name, "").strip() for name in ("username", "role", "expires")}
        values["role"] = values["role"] or "researcher"
        name = values["username"].lower()
        warning = ""
        if name not in self.known_users() and field("unknown_ok", "") != "yes":
            warning = (
                f"No one has signed in as '{name}' yet: check the spelling with the person, or "
                "add them anyway and the membership applies at their first sign-in."
            )
        await self.change_from(
            "member",
            values,
            self.registry.add_member,
            project,
            values["username"],
            values["role"],
            values["expires"] or None,
            warning=warning,
        )
        return f"{name} was added to {project} as {values['role']}."


class DecisionsPage(PageHandler):
    """Requests that admins approve, or reject with a reason their author reads; auditors read
    them. A subclass names its template, its requests' keeper (in the application's settings,
    with `approve`, `reject` and `all`) and what each decision is said to have done."""

    template: str
    keeper: str
    path: str

    def approved(self, number: str, done: dict) -> str:
        raise NotImplementedError

    def rejected(self, number: str) -> str:
        raise NotImplementedError

    @web.authenticated
    def get(self) -> None:
        self.render_page(self.template, **self._listing())

    @web.authenticated
    async def post(self) -> None:
        number = self.get_body_argument("request", "")
        decision = self.get_body_argument("decision", "")
        reason = self.get_body_argument("reason", "").strip()
        keeper = self.settings[self.keeper]
        form = f"decide-{number}"
        try:
            if decision == "approve":
                done = await self.change_from(form, {}, keeper.approve, number)
                notice = self.approved(number, done)
            elif decision == "reject":
                await self.change_from(form, {"reason": reason}, keeper.reject, number, reason)
                notice = self.rejected(number)
            else:
                raise web.HTTPError(400, f"unknown decision {decision!r}")
        except FormRefused as refused:
            self.show_refused(self.template, refused, **self._listing())
            return
        self.notify(notice)
        self.redirect(f"{self.hub_auth.base_url}{self.path}")

    def _listing(self) -> dict:
        return {"requests": self.read(self.settings[self.keeper].all)}


class ApplicationsPage(DecisionsPage):
    """Applications for access: an approval makes the project, its memberships and grants."""

    template, keeper, path = "applications.html", "applications", "applications"

    def approved(self, number: str, done: dict) -> str:
        return f"Application {number} was approved: project {done['project']} is open."

    def rejected(self, number: str) -> str:
        return f"Application {number} was rejected; its applicant sees why."


class PackagesPage(DecisionsPage):
    """Researchers' requests for Python packages, and every allowance in force: an approval
    lets the request's project install the package."""

    template, keeper, path = "packages.html", "package_allowances", "packages"

    def approved(self, number: str, done: dict) -> str:
        return (
            f"Request {number} was approved: {done['name']} may be installed in {done['project']}."
        )

    def rejected(self, number: str) -> str:
        return f"Request {number} was rejected; the researcher sees why."

    def _listing(self) -> dict:
        allowances = self.read(self.settings[self.keeper].allowances)
        return {**super()._listing(), "allowances": allowances}


class ConfirmPage(PageHandler):
    """GET asks, saying what will stop; POST does it."""

    def _action(self) -> tuple[str, str, str]:
        action = self.get_argument("action", "")
        if action not in DESTRUCTIVE:
            raise web.HTTPError(400, f"unknown action {action!r}")
        return action, self.get_argument("target", ""), DESTRUCTIVE[action][1]

    async def _sessions_stopping(self, action: str, project: str, target: str) -> list[str]:
        """The running sessions the action stops: 'user/project' each."""
        running = await asyncio.to_thread(self.settings["reconciler"].hub.running)
        return [
            f"{session.user}/{session.project}"
            for session in running
            if session.project == project
            and (
                action in ("suspend", "archive")
                or (action == "remove-member" and session.user == target)
                or (action == "revoke" and target in session.datasets)
            )
        ]

    @web.authenticated
    async def get(self, project: str) -> None:
        self.require_admin()
        action, target, _ = self._action()
        self.read(self.registry.show, project)
        self.render_page(
            "confirm.html",
            project=project,
            action=action,
            target=target,
            question=DESTRUCTIVE[action][0].format(target=target, project=project),
            stopping=await self._sessions_stopping(action, project, target),
        )

    @web.authenticated
    async def post(self, project: str) -> None:
        action, target, operation = self._action()
        if operation == "set_status":
            status = {"suspend": "suspended", "archive": "archived"}[action]
            await self.change(self.registry.set_status, project, status)
            self.notify(f"{project} is {status}; its sessions were stopped.")
        else:
            await self.change(getattr(self.registry, operation), project, target)
            done = "membership ended" if action == "remove-member" else "grant withdrawn"
            self.notify(f"{target}: {done} in {project}; the sessions it allowed were stopped.")
        self.redirect(self.project_url(project))


def page_handlers(prefix: str) -> list[tuple]:
    return [
        (prefix, ProjectsPage),
        (prefix + r"projects/([^/]+)", ProjectPage),
        (prefix + r"projects/([^/]+)/confirm", ConfirmPage),
        (prefix + "applications", ApplicationsPage),
        (prefix + "packages", PackagesPage),
    ]
