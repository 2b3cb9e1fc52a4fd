"""JupyterHub overrides for the benchmark's baseline: the spawner a plain JupyterHub would use.

SimpleLocalProcessSpawner runs each server as a local process of the hub's user (root here),
with no sandbox; it is the reference the sandbox's cost is measured against.
"""

c.JupyterHub.spawner_class = "simple"  # noqa: F821
c.SimpleLocalProcessSpawner.home_dir_template = "/tmp/enclave-baseline/{username}"  # noqa: F821
c.SimpleLocalProcessSpawner.args = ["--allow-root"]  # noqa: F821
c.SimpleLocalProcessSpawner.default_url = "/lab"  # noqa: F821
# The same patience as Enclave's sessions get (sessions.start_timeout in the bench's site config).
c.SimpleLocalProcessSpawner.start_timeout = 300  # noqa: F821
c.SimpleLocalProcessSpawner.http_timeout = 300  # noqa: F821
