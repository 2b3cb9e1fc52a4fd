"""How JupyterLab presents a session: the project's name in the page title and in the top bar
(a button back to the person's projects), Enclave's menu entries, and Enclave's kernels only.
The news and update checks, which would reach the internet, are off in
`session_jupyter_config/labconfig`."""

from __future__ import annotations

import os

from jupyter_server.utils import url_path_join

# The project's title, in the session's environment (the spawners set it).
PROJECT_TITLE_VARIABLE = "ENCLAVE_PROJECT_TITLE"
TOP_BAR_PLUGIN = "@jupyterlab/application-extension:top-bar"
MAIN_MENU_PLUGIN = "@jupyterlab/mainmenu-extension:plugin"


def app_name(project_title: str) -> str:
    return f"{project_title} · Enclave"


def page_menu(menu_id: str, rank: int, server_url: str, page: str, text: str) -> dict:
    """A JupyterLab menu (by id) with an entry that opens the session's `page` in a new tab,
    after a separator (rank 1 entries, first in their menu, need none)."""
    entry = {
        "command": "help:open",
        "rank": rank,
        "args": {"url": url_path_join(server_url, page), "text": text, "newBrowserTab": True},
    }
    items = [entry] if rank <= 1 else [{"type": "separator", "rank": rank}, entry]
    return {"id": menu_id, "items": items}


def lab_setting_overrides(project_title: str, menus: list[dict]) -> dict:
    """JupyterLab setting defaults that name the project in the top bar and add `menus`
    (Enclave's entries in JupyterLab's menus, by menu id)."""
    item = {
        "name": "enclave-project",
        "command": "hub:control-panel",
        "label": f"Project: {project_title}",
        "caption": "Your projects and sessions (opens the Enclave home page)",
        "rank": 0,
    }
    return {TOP_BAR_PLUGIN: {"toolbar": [item]}, MAIN_MENU_PLUGIN: {"menus": menus}}


def _load_jupyter_server_extension(serverapp) -> None:
    """JupyterLab puts its application's name in every page title (`appName` of the page
    configuration, which it takes from the application at each request)."""
    title = os.environ.get(PROJECT_TITLE_VARIABLE) or os.environ.get("ENCLAVE_PROJECT", "")
    for app in serverapp.extension_manager.extension_apps.get("jupyterlab", ()):
        app.app_name = app_name(title)


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": __name__}]
