"""A volume as an OME-Zarr 0.5 store: axes z, y, x in millimetres, its patient geometry kept.

OME-NGFF's scale gives the voxel spacing; the origin and direction cosines of the patient
frame (LPS, as DICOM states them), the modality and the unit of the values are kept beside it
under `enclave`, so an oblique volume keeps its true position.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from .series import Geometry

NGFF_VERSION = "0.5"
CHUNK = (16, 256, 256)
SHARD = (64, 512, 512)


def write_volume(
    target: Path, name: str, voxels: np.ndarray, geometry: Geometry, modality: str, units: str
) -> dict:
    """Write `voxels` (z, y, x) into a new store at `target`; what dataset.json should say."""
    root = zarr.open_group(target, mode="w", zarr_format=3)
    depth, height, width = voxels.shape
    chunks = tuple(min(c, n) for c, n in zip(CHUNK, voxels.shape, strict=True))
    shards = tuple(
        -(-min(s, n) // c) * c for s, n, c in zip(SHARD, voxels.shape, chunks, strict=True)
    )
    root.create_array(
        "0",
        data=voxels,
        chunks=chunks,
        shards=shards,
        # Bit-shuffled LZ4: smaller than Zstandard on CT and MR values, and faster to read.
        compressors=BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"),
        dimension_names=("z", "y", "x"),
    )
    root.attrs.update(
        {
            "ome": {
                "version": NGFF_VERSION,
                "multiscales": [
                    {
                        "name": name,
                        "axes": [
                            {"name": axis, "type": "space", "unit": "millimeter"}
                            for axis in ("z", "y", "x")
                        ],
                        "datasets": [
                            {
                                "path": "0",
                                "coordinateTransformations": [
                                    {"type": "scale", "scale": list(geometry.spacing)}
                                ],
                            }
                        ],
                    }
                ],
            },
            "enclave": {
                "frame": "LPS",
                "origin": list(geometry.origin),
                "directions": geometry.directions.tolist(),
                "modality": modality,
                "units": units,
            },
        }
    )
    return {
        "shape": [depth, height, width],
        "dtype": str(voxels.dtype),
        "spacing_mm": list(geometry.spacing),
        "modality": modality,
        "units": units,
    }


def read_geometry(attributes: dict) -> tuple[Geometry, str, str]:
    """The geometry, modality and units of a store written by `write_volume`."""
    try:
        (scale,) = [
            t["scale"]
            for t in attributes["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"]
            if t["type"] == "scale"
        ]
        frame = attributes["enclave"]
        geometry = Geometry(
            origin=tuple(frame["origin"]),
            directions=np.array(frame["directions"], dtype=float),
            spacing=tuple(scale),
        )
        return geometry, frame["modality"], frame["units"]
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise ValueError(f"not an Enclave volume store: {error}") from None
