"""Kernel specs for sessions, one folder each (installed by `enclave kernels install`)."""
