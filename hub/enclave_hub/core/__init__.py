"""The platform layer: what every process of a deployment shares (the site configuration and
its secrets, the sandboxes' address pool, project groups, service plumbing). It imports nothing
of the services, the sandbox or the hub plug-ins; they import it. See docs/architecture.md."""
