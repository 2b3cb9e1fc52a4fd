"""Everything that runs beside JupyterHub: site configuration, identity, sessions and the CLI."""
