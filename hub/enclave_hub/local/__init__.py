"""Enclave on one machine: `enclave up` (the supervisor, its port checks, what a killed run
left, the demo commons), the development identity provider, the local spawner and the hub's
configuration; `kubernetes/` is its mirror for a cluster."""


class StartupError(Exception):
    """Enclave cannot start; the message says why."""
