"""The library researchers import in their notebook sessions (`import enclave`).

Readers for slides, volumes and matrices arrive with the data issues.
"""

__version__ = "0.1.0"
