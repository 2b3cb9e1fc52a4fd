"""`enclave.open_volume`: a volume as an xarray DataArray (z, y, x) in millimetres; a 4D one
(t, z, y, x) with time in seconds for functional MRI, or (volume, z, y, x) for diffusion, with
each volume's b-value and gradient direction as coordinates.

The DataArray is lazy, as xarray's own backends make it: indexing it reads only the chunks
it needs, and `.values` reads the whole volume in one TensorStore call, decoding shards in
parallel, with no task graph in between. `.chunk()` turns it into dask for a cluster. Its
attributes carry the modality, the unit of its values (HU for CT) and the voxel-to-patient
affine in both conventions (`affine_lps` as DICOM states it, `affine_ras` as NIfTI does). The
`volume` accessor adds what a DataArray lacks: `v.volume.to_nifti(path)`,
`v.volume.to_napari()` (and so `enclave.view(v)`); a diffusion volume's `to_nifti` writes the
`.bval` and `.bvec` files beside the NIfTI file.
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
from ..tensorstores import open_zarr
from .store import read_geometry
from .volume_axis import DIFFUSION, TIME, VolumeAxis


class TensorStoreArray(BackendArray):
    """A zarr array read through TensorStore, as xarray's lazy indexing wants it."""

    def __init__(self, path: Path):
        self.store = open_zarr(path)
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
    depth, height, width = voxels.shape[-3:]
    sz, sy, sx = geometry.spacing
    coords = {
        "z": ("z", np.arange(depth) * sz, {"units": "mm"}),
        "y": ("y", np.arange(height) * sy, {"units": "mm"}),
        "x": ("x", np.arange(width) * sx, {"units": "mm"}),
    }
    attrs = {
        "modality": modality,
        "units": units,
        "affine_lps": geometry.affine("LPS").tolist(),
        "affine_ras": geometry.affine("RAS").tolist(),
        "spacing_mm": list(geometry.spacing),
    }
    axis = geometry.axis
    if axis is not None:
        coords.update(_leading_coordinates(axis))
        if axis.repetition_time_ms is not None:
            attrs["repetition_time_ms"] = axis.repetition_time_ms
    dims = (() if axis is None else (axis.name,)) + ("z", "y", "x")
    volume = xr.DataArray(
        xr.Variable(dims, indexing.LazilyIndexedArray(voxels)),
        coords=coords,
        name=name,
        attrs=attrs,
    )
    volume.encoding["preferred_chunks"] = dict(zip(volume.dims, voxels.shard, strict=True))
    return volume


def _leading_coordinates(axis: VolumeAxis) -> dict:
    """Time in seconds along a time series; along a diffusion one, each volume's b-value and
    gradient direction (its components along the volume's x, y and z axes)."""
    if axis.name == TIME:
        return {TIME: (TIME, np.arange(axis.count) * axis.step_seconds, {"units": "s"})}
    gradients = np.array(axis.gradients, dtype=float).reshape(-1, 3)
    return {
        DIFFUSION: (DIFFUSION, np.arange(axis.count)),
        "b_value": (DIFFUSION, np.array(axis.b_values), {"units": "s/mm2"}),
        **{f"gradient_{d}": (DIFFUSION, gradients[:, k]) for k, d in enumerate("xyz")},
    }


def _diffusion_axis(array: xr.DataArray) -> VolumeAxis:
    """The diffusion encoding of the volumes a DataArray holds (after any selection)."""
    gradients = np.stack([array[f"gradient_{d}"].values for d in "xyz"], axis=-1)
    return VolumeAxis(
        DIFFUSION,
        array.sizes[DIFFUSION],
        array.attrs.get("repetition_time_ms"),
        tuple(float(b) for b in array["b_value"].values),
        tuple(tuple(float(v) for v in g) for g in gradients),
    )


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
        """Write a NIfTI-1 file (x, y, z voxel order, RAS affine, as NIfTI expects); a 4D
        volume's volumes are its fourth axis, one repetition time apart for a time series,
        and a diffusion volume's b-values and gradients go beside it (`NAME.bval`,
        `NAME.bvec`)."""
        import nibabel

        path = Path(path)
        lead = [d for d in self._array.dims if d not in ("z", "y", "x")]
        voxels = np.asarray(self._array.transpose("x", "y", "z", *lead).values)
        image = nibabel.Nifti1Image(voxels, self.affine("RAS"))
        image.header.set_xyzt_units("mm", "sec" if lead == [TIME] else "unknown")
        repetition = self._array.attrs.get("repetition_time_ms")
        if lead and repetition:
            image.header["pixdim"][4] = repetition / 1000
        nibabel.save(image, path)
        if lead == [DIFFUSION]:
            axis = _diffusion_axis(self._array)
            stem = path.parent / path.name.removesuffix(".gz").removesuffix(".nii")
            stem.with_name(stem.name + ".bval").write_text(axis.bval_text())
            stem.with_name(stem.name + ".bvec").write_text(axis.bvec_text())
        return path

    def to_napari(self) -> tuple:
        """A napari layer data tuple: the volume at its voxel spacing, in millimetres, read
        shard by shard as napari asks for slices."""
        chunks = self._array.encoding.get("preferred_chunks", {})
        lead = self._array.dims[:-3]
        step = self._array.attrs.get("repetition_time_ms", 1000) / 1000 if lead == (TIME,) else 1
        return (
            self._array.chunk({dim: chunks.get(dim, "auto") for dim in self._array.dims}).data,
            {
                "name": self._array.name,
                "scale": (step,) * len(lead) + tuple(self._array.attrs["spacing_mm"]),
                "units": ("s" if lead == (TIME,) else "",) * len(lead) + ("mm", "mm", "mm"),
                "axis_labels": self._array.dims,
                "colormap": "gray",
            },
            "image",
        )
