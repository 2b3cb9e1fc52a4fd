"""What runs inside each session's Jupyter server, loaded by the spawners as server
extensions: the recording of code and files, the airlock's page and the Dask dashboard relay.
It imports only the platform layer: it must stay light, and it runs beside user code."""

from pathlib import Path

# The sessions' own Jupyter settings (downloads and exports off), read-only in every session.
CONFIG_DIR = Path(__file__).with_name("session_jupyter_config")

# What the pages of a session may run and load. Scripts come only from the server's own files
# (JupyterLab's bundles, which need eval for their schemas): never inline, so markup planted in
# a notebook's output, an SVG or an HTML file runs nothing, not even in JupyterLab's
# same-origin frames. Nothing is loaded from elsewhere, and no other site may frame a session.
SESSION_PAGE_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-eval'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "frame-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'self'",
    ]
)
# The Dask dashboard's pages (bokeh) need their inline scripts: they come from the cluster's
# scheduler, which runs the project's own code.
DASHBOARD_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "object-src 'none'",
        "frame-ancestors 'self'",
    ]
)
