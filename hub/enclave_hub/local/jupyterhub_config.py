"""JupyterHub's config file for Enclave: everything comes from the site configuration."""

import os
from pathlib import Path

from enclave_hub.core.site_config import load_site_config
from enclave_hub.local.hub_config import configure

site = load_site_config(Path(os.environ["ENCLAVE_CONFIG"]))
configure(c, site)  # noqa: F821
if site.hub.extra_config is not None:
    load_subconfig(str(site.hub.extra_config))  # noqa: F821
