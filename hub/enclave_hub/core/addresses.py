"""The sandboxes' address pool: each sandbox's link takes a /30 of IPV4_POOL and a /64 under
IPV6_PREFIX, by its number. The site configuration keeps the hub's address out of it."""

from __future__ import annotations

import ipaddress

IPV4_POOL = ipaddress.IPv4Network("169.254.0.0/17")
IPV6_PREFIX = "fd3e:6e63:6c76"
# Sandbox numbers: notebook sessions take the lower half, Dask clusters and jobs a quarter each,
# so that the hub, the gateway and the job service, which reserve numbers in separate
# processes, never pick the same one.
_SANDBOXES = IPV4_POOL.num_addresses // 4
SESSION_NUMBERS = range(1, _SANDBOXES // 2)
CLUSTER_NUMBERS = range(_SANDBOXES // 2, _SANDBOXES * 3 // 4)
JOB_NUMBERS = range(_SANDBOXES * 3 // 4, _SANDBOXES)
