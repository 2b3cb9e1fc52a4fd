"""A volume as an OME-Zarr 0.5 store: axes z, y, x in millimetres, its patient geometry kept.

OME-NGFF's scale gives the voxel spacing; the origin and direction cosines of the patient
frame (LPS, as DICOM states them), the modality and the unit of the values are kept beside it
under `enclave`, so an oblique volume keeps its true position. A 4D volume has a leading axis:
`t` (time, in seconds, one repetition time apart) for a functional series, `volume` for a
diffusion series, whose b-values and gradients are kept under `enclave` too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from .series import Geometry
from .volume_axis import TIME, VolumeAxis

NGFF_VERSION = "0.5"
CHUNK = (16, 256, 256)
SHARD = (64, 512, 512)


def write_volume(
    target: Path, name: str, voxels: np.ndarray, geometry: Geometry, modality: str, units: str
) -> dict:
    """Write `voxels` (z, y, x), or (t or volume, z, y, x) for a geometry with an axis, into
    a new store at `target`; what dataset.json should say."""
    root = zarr.open_group(target, mode="w", zarr_format=3)
    axis = geometry.axis
    lead = () if axis is None else (1,)  # a chunk and a shard hold one volume
    chunks = lead + tuple(min(c, n) for c, n in zip(CHUNK, voxels.shape[-3:], strict=True))
    shards = lead + tuple(
        -(-min(s, n) // c) * c
        for s, n, c in zip(SHARD, voxels.shape[-3:], chunks[-3:], strict=True)
    )
    space = [{"name": name, "type": "space", "unit": "millimeter"} for name in ("z", "y", "x")]
    scale = list(geometry.spacing)
    volumes = {} if axis is None else {"volumes": axis.attributes()}
    if axis is not None:
        space.insert(0, _leading(axis))
        scale.insert(0, axis.step_seconds)
    root.create_array(
        "0",
        data=voxels,
        chunks=chunks,
        shards=shards,
        # Bit-shuffled LZ4: smaller than Zstandard on CT and MR values, and faster to read.
        compressors=BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"),
        dimension_names=tuple(a["name"] for a in space),
    )
    root.attrs.update(
        {
            "ome": {
                "version": NGFF_VERSION,
                "multiscales": [
                    {
                        "name": name,
                        "axes": space,
                        "datasets": [
                            {
                                "path": "0",
                                "coordinateTransformations": [{"type": "scale", "scale": scale}],
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
                **volumes,
            },
        }
    )
    return {
        "shape": list(voxels.shape),
        "dtype": str(voxels.dtype),
        "spacing_mm": list(geometry.spacing),
        "modality": modality,
        "units": units,
        **volumes,
    }


def _leading(axis: VolumeAxis) -> dict:
    """The NGFF axis of a 4D volume's volumes: time in seconds, or diffusion volumes (a
    channel-like axis: the same place under different encodings)."""
    if axis.name == TIME:
        return {"name": axis.name, "type": "time", "unit": "second"}
    return {"name": axis.name, "type": "channel"}


def read_geometry(attributes: dict) -> tuple[Geometry, str, str]:
    """The geometry, modality and units of a store written by `write_volume`."""
    try:
        (scale,) = [
            t["scale"]
            for t in attributes["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"]
            if t["type"] == "scale"
        ]
        frame = attributes["enclave"]
        volumes = frame.get("volumes")
        geometry = Geometry(
            origin=tuple(frame["origin"]),
            directions=np.array(frame["directions"], dtype=float),
            spacing=tuple(scale[-3:]),
            axis=None if volumes is None else VolumeAxis.from_attributes(volumes),
        )
        return geometry, frame["modality"], frame["units"]
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise ValueError(f"not an Enclave volume store: {error}") from None
