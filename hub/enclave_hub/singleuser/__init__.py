"""What runs inside each session's Jupyter server, loaded by the spawners as server
extensions: the recording of code and files, the airlock's page and the Dask dashboard relay.
It imports only the platform layer: it must stay light, and it runs beside user code."""

from pathlib import Path

# The sessions' own Jupyter settings (downloads and exports off), read-only in every session.
CONFIG_DIR = Path(__file__).with_name("session_jupyter_config")
