"""Zarr arrays opened for reading through TensorStore, as slides and volumes read them."""

from __future__ import annotations

from pathlib import Path

import tensorstore


def open_zarr(path: Path) -> tensorstore.TensorStore:
    """The zarr array (v3, or v2) at `path`, read-only, without a cache: regions rarely
    repeat, and memory stays the caller's."""
    spec = {
        "driver": "zarr3" if (path / "zarr.json").exists() else "zarr",
        "kvstore": {"driver": "file", "path": str(path)},
        "context": {"cache_pool": {"total_bytes_limit": 0}},
    }
    return tensorstore.open(spec, read=True, open=True).result()
