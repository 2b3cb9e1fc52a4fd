"""`enclave.open_volume`: a volume as an xarray DataArray (z, y, x) in millimetres.

The DataArray is lazy, as xarray's own backends make it: indexing it reads only the chunks
it needs, and `.values` reads the whole volume in one TensorStore call, decoding shards in
parallel, with no task graph in between. `.chunk()` turns it into dask for a cluster. Its
attributes carry the modality, the unit of its values (HU for CT) and the voxel-to-patient
affine in both conventions (`affine_lps` as DICOM states it, `affine_ras` as NIfTI does). The
`volume` accessor adds what a DataArray lacks: `v.volume.to_nifti(path)`,
`v.volume.to_napari()` (and so `enclave.view(v)`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import tensorstore
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

from ..catalog import CatalogError, locate
from ..tensorstores import open_zarr3
from .store import read_geometry


class TensorStoreArray(BackendArray):
    """A zarr array read through TensorStore, as xarray's lazy indexing wants it."""

    def __init__(self, path: Path):
        self.store = open_zarr3(path)
        self.shape = tuple(self.store.shape)
        self.dtype = np.dtype(self.store.dtype.numpy_dtype)
        self.shard = tuple(self.store.chunk_layout.write_chunk.shape)

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.OUTER, self._read
        )

    def _read(self, key: tuple) -> np.ndarray:
        # Into an array numpy allocates (on huge pages, where the kernel offers them): faster
        # to fill than one TensorStore allocates for itself.
        region = self.store.oindex[key]
        voxels = np.empty(region.shape, self.dtype)
        tensorstore.array(voxels, copy=False, write=True).write(region).result()
        return voxels


def open_volume(reference: str | os.PathLike, root: Path | None = None) -> xr.DataArray:
    """A volume by its `dataset-id/object-id` reference, or a store by path."""
    path, name = locate(reference, "volume", root)
    try:
        attributes = json.loads((path / "zarr.json").read_text())["attributes"]
        geometry, modality, units = read_geometry(attributes)
        voxels = TensorStoreArray(path / "0")
    except (OSError, KeyError, ValueError) as error:
        raise CatalogError(f"{path}: not a readable volume store ({error})") from None
    depth, height, width = voxels.shape
    sz, sy, sx = geometry.spacing
    volume = xr.DataArray(
        xr.Variable(("z", "y", "x"), indexing.LazilyIndexedArray(voxels)),
        coords={
            "z": ("z", np.arange(depth) * sz, {"units": "mm"}),
            "y": ("y", np.arange(height) * sy, {"units": "mm"}),
            "x": ("x", np.arange(width) * sx, {"units": "mm"}),
        },
        name=name,
        attrs={
            "modality": modality,
            "units": units,
            "affine_lps": geometry.affine("LPS").tolist(),
            "affine_ras": geometry.affine("RAS").tolist(),
            "spacing_mm": list(geometry.spacing),
        },
    )
    volume.encoding["preferred_chunks"] = dict(zip(volume.dims, voxels.shard, strict=True))
    return volume


@xr.register_dataarray_accessor("volume")
class VolumeAccessor:
    """What Enclave adds to a volume DataArray."""

    def __init__(self, array: xr.DataArray):
        self._array = array

    def affine(self, convention: str = "RAS") -> np.ndarray:
        if convention not in ("LPS", "RAS"):
            raise ValueError(f"convention {convention!r}: use 'LPS' or 'RAS'")
        return np.array(self._array.attrs[f"affine_{convention.lower()}"])

    def to_nifti(self, path: str | os.PathLike) -> Path:
        """Write a NIfTI-1 file (x, y, z voxel order, RAS affine, as NIfTI expects)."""
        import nibabel

        voxels = np.asarray(self._array.transpose("x", "y", "z").values)
        image = nibabel.Nifti1Image(voxels, self.affine("RAS"))
        image.header.set_xyzt_units("mm")
        nibabel.save(image, path)
        return Path(path)

    def to_napari(self) -> tuple:
        """A napari layer data tuple: the volume at its voxel spacing, in millimetres, read
        shard by shard as napari asks for slices."""
        chunks = self._array.encoding.get("preferred_chunks", {})
        return (
            self._array.chunk({dim: chunks.get(dim, "auto") for dim in self._array.dims}).data,
            {
                "name": self._array.name,
                "scale": tuple(self._array.attrs["spacing_mm"]),
                "units": ("mm", "mm", "mm"),
                "axis_labels": ("z", "y", "x"),
                "colormap": "gray",
            },
            "image",
        )
