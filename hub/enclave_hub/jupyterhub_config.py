"""JupyterHub's config file for Enclave: everything comes from the site configuration."""

import os
from pathlib import Path

from enclave_hub.config import load_site_config
from enclave_hub.hub_config import configure

configure(c, load_site_config(Path(os.environ["ENCLAVE_CONFIG"])))  # noqa: F821
