"""The one page frame of Enclave: the Enclave name, navigation by the person's role, who is
signed in, and sign-out, in the hub's own stylesheet (JupyterHub's Bootstrap, served by the
hub, so nothing comes from the internet). The hub's templates and each service's extend it;
errors are pages of the frame too, in plain words, with what to do next."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader
from tornado import web

from .services import AIRLOCK, AUDIT, HUB_PREFIX, INQUIRY, REGISTRY

FRAME_TEMPLATES = Path(__file__).with_name("templates")
# What an error is called at the top of its page, by HTTP status.
ERROR_HEADINGS = {
    400: "That could not be done as asked",
    403: "You may not open this page",
    404: "There is no such page",
    409: "That cannot be done now",
    503: "That cannot be done for the moment",
}
SERVER_ERROR_HEADING = "Something went wrong on Enclave's side"
NOTICE_COOKIE = "enclave-notice"


@dataclass(frozen=True)
class Frame:
    """What the frame shows on one page: where the person may go, and who they are."""

    here: str  # the navigation entry the page belongs to
    hub_prefix: str  # the hub's pages: home, sign-in and sign-out
    person: str | None
    links: tuple[tuple[str, str], ...]
    stylesheet: str  # the hub's stylesheet, or a copy served on the page's own origin


def role_tools(role: str | None) -> list[tuple[str, str, str]]:
    """The tools of the platform's roles: (name, path, what it is for). The registry for
    admins and auditors, the hub's session list for admins, the audit console for auditors."""
    tools = []
    if role == "admin":
        tools.append(("Registry", REGISTRY.prefix, "create projects, add members, grant datasets"))
        tools.append(("Sessions", f"{HUB_PREFIX}admin", "see and stop running sessions"))
    if role == "auditor":
        tools.append(("Registry", REGISTRY.prefix, "read every project, its members and grants"))
        tools.append(("Audit", AUDIT.prefix, "the audit log, each session's timeline, datasets"))
    return tools


def frame_for(
    here: str, person: str | None, role: str | None, origin: str = "", stylesheet: str = ""
) -> Frame:
    """My projects, the data inquiry portal and the airlock for everyone, then the person's
    tools. `origin` is the hub's, for pages served on another (a session's); `stylesheet` is
    then their copy of the hub's stylesheet."""
    paths = [
        ("My projects", f"{HUB_PREFIX}home"),
        ("Data inquiry", INQUIRY.prefix),
        ("Airlock", AIRLOCK.prefix),
    ]
    paths += [(name, path) for name, path, _ in role_tools(role)]
    hub_prefix = origin + HUB_PREFIX
    return Frame(
        here,
        hub_prefix,
        person,
        tuple((name, origin + path) for name, path in paths) if person else (),
        stylesheet or f"{hub_prefix}static/css/style.min.css",
    )


def error_heading(status: int) -> str:
    return ERROR_HEADINGS.get(status, SERVER_ERROR_HEADING if status >= 500 else "Not done")


def shown_time(value: str | float | datetime | None) -> str:
    """A moment as people read it, in UTC to the minute ('2027-01-31 09:05 UTC'); a date
    alone ('2027-01-31') when it is midnight."""
    if value in (None, ""):
        return ""
    if isinstance(value, int | float):
        moment = datetime.fromtimestamp(value, UTC)
    elif isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    if (moment.hour, moment.minute, moment.second) == (0, 0, 0):
        return moment.date().isoformat()
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def shown_size(size: int | None) -> str:
    """A number of bytes as people read it: '812 B', '3.4 KB', '51.0 MB'."""
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def page_templates(service_templates: Path | None = None) -> Environment:
    """A service's templates (or the frame's alone), with the frame they extend and the
    filters for times and sizes."""
    folders = [FileSystemLoader(FRAME_TEMPLATES)]
    if service_templates is not None:
        folders.insert(0, FileSystemLoader(service_templates))
    environment = Environment(loader=ChoiceLoader(folders), autoescape=True)
    environment.filters["when"] = shown_time
    environment.filters["size"] = shown_size
    return environment


FRAME_PAGES = page_templates()


class FormRefused(Exception):
    """A form that is shown again: what was typed, and what is wrong (by field, or `form`)."""

    def __init__(self, form: str, values: dict, errors: dict[str, str], warning: str = ""):
        super().__init__(next(iter(errors.values()), warning))
        self.form, self.values, self.errors, self.warning = form, values, errors, warning


class FramedPages:
    """A service's pages in the frame, for a `SignedInHandler` of a service: `pages` are its
    templates, `section` its entry in the navigation; errors are framed pages too."""

    pages: Environment = FRAME_PAGES
    section = ""

    def person_role(self) -> str | None:
        return self.settings["site"].platform_role(self.current_user.get("groups") or ())

    def notify(self, notice: str) -> None:
        """A line for the next page this person sees: what their change did."""
        self.set_signed_cookie(NOTICE_COOKIE, notice, path=self.hub_auth.base_url, httponly=True)

    def render_page(self, template: str, status: int = 200, **values) -> None:
        role = self.person_role()
        notice = self.get_signed_cookie(NOTICE_COOKIE, max_age_days=1)
        if notice:
            self.clear_cookie(NOTICE_COOKIE, path=self.hub_auth.base_url)
        self.set_status(status)
        self.finish(
            self.pages.get_template(template).render(
                frame=frame_for(self.section, self.current_user["name"], role),
                prefix=self.hub_auth.base_url,
                role=role,
                xsrf=self.xsrf_form_html(),
                notice=notice.decode() if notice else None,
                **values,
            )
        )

    def write_error(self, status_code: int, **kwargs) -> None:
        """The error in the frame, with the person's way home; plain text for calls that are
        not a signed-in person's (a script's token, a session)."""
        message = self.error_message(**kwargs)
        try:
            user = self.current_user
        except web.HTTPError:
            user = None
        if not user or user.get("kind") == "service" or self.request.headers.get("Authorization"):
            self.finish(f"{status_code}: {message}")
            return
        self.render_page(
            "error.html",
            status_code,
            heading=error_heading(status_code),
            message=message,
            status_code=status_code,
        )
