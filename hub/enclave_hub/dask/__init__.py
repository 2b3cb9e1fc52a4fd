"""Dask clusters per project session, through dask-gateway-server, inside the enclave."""
