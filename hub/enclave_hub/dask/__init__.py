"""Dask clusters per project session, through dask-gateway-server, inside the enclave."""

SERVICE_NAME = "dask-gateway"
# What a notebook session's token carries so that the gateway admits it.
ACCESS_SCOPE = f"access:services!service={SERVICE_NAME}"
# What the dashboard relays pass on of an answer's headers.
DASHBOARD_HEADERS = ("Content-Type", "Location", "Cache-Control", "Last-Modified", "ETag")
