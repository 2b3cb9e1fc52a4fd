"""How a session's pip reaches the package index, and where what it installs goes.

Every pip in a session (the terminal's, `%pip`, `python -m pip`) asks the package index alone,
with the session's own token as the password of the index's URL, and reads no configuration
file of the host. What it installs goes under `~/.local` in the session's home (the
environment Enclave ships is read-only there), which its Python finds first: installed
packages add to that environment, and stay with the home for the next session.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit

from enclave.packages import URL_VARIABLE as PACKAGES_URL_VARIABLE


def user_prefix(home: str) -> str:
    return f"{home}/.local"


def user_site_packages(home: str) -> str:
    """Where pip installs in a session whose home is `home` (as the session sees it)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return f"{user_prefix(home)}/lib/{version}/site-packages"


def package_index_env(service_url: str, token: str, home: str) -> dict[str, str]:
    """The variables that point a session's pip at the package index served at `service_url`
    (the service's prefix, ending in '/')."""
    parts = urlsplit(service_url)
    index = f"{parts.scheme}://session:{token}@{parts.netloc}{parts.path}simple/"
    return {
        PACKAGES_URL_VARIABLE: service_url,
        "PIP_INDEX_URL": index,
        "PIP_TRUSTED_HOST": parts.netloc,
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_PREFIX": user_prefix(home),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "PYTHONPATH": user_site_packages(home),
    }
