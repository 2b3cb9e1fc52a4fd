"""The one page frame of Enclave's services: the Enclave name, navigation by the person's role,
who is signed in, and sign-out, in the hub's own stylesheet (JupyterHub's Bootstrap, served by
the hub, so nothing comes from the internet). Each service's templates extend `frame.html`."""

from __future__ import annotations

from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader

from .services import AIRLOCK, AUDIT, REGISTRY

FRAME_TEMPLATES = Path(__file__).with_name("templates")


def page_templates(service_templates: Path) -> Environment:
    """A service's templates, with the frame they extend."""
    loader = ChoiceLoader([FileSystemLoader(service_templates), FileSystemLoader(FRAME_TEMPLATES)])
    return Environment(loader=loader, autoescape=True)


def frame_values(service_name: str, hub_prefix: str, user: str, role: str | None) -> dict:
    """What the frame shows: the service's name, who is signed in, and where they may go
    (My projects and the airlock for everyone, the registry for admins and auditors, the audit
    console for auditors)."""
    links = [("My projects", f"{hub_prefix}home"), ("Airlock", AIRLOCK.prefix)]
    if role in ("admin", "auditor"):
        links.append(("Registry", REGISTRY.prefix))
    if role == "auditor":
        links.append(("Audit", AUDIT.prefix))
    return {
        "service_name": service_name,
        "hub_prefix": hub_prefix,
        "user": user,
        "frame_links": links,
    }
