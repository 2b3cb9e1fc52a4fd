"""Loading a DICOM series into memory, in slices per second: Enclave (`find_slices`,
`group_series`, `read_volume`) against SimpleITK's ImageSeriesReader and a naive pydicom
loop (read every file, sort by InstanceNumber, stack, rescale), on the same files; then
`open_volume` on the converted store against both.

The series is a synthetic CT written by the benchmark (uncompressed, 12 bits stored in 16,
rescale slope 1 and intercept -1024, like most CT): 512 x 512 pixels per slice.

    .venv/bin/python bench/volume_loading.py [--slices 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from measure import in_child, main_or_child, report

SIZE = 512


def write_series(folder: Path, slices: int) -> None:
    """A CT series of `slices` files, shuffled names, 0.7 mm pixels, 1.25 mm apart."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(3)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    order = rng.permutation(slices)
    body = np.clip(rng.normal(1064, 40, (SIZE, SIZE)), 0, 4095).astype(np.uint16)
    for index in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        dataset = pydicom.Dataset()
        dataset.file_meta = meta
        dataset.SOPClassUID, dataset.SOPInstanceUID = (
            CTImageStorage,
            meta.MediaStorageSOPInstanceUID,
        )
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study, series
        dataset.FrameOfReferenceUID = frame
        dataset.Modality, dataset.SeriesNumber, dataset.InstanceNumber = "CT", 1, index + 1
        dataset.PatientName, dataset.PatientID = "Synthetic^Patient", "SYN-1"
        dataset.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        dataset.ImagePositionPatient = [-180.0, -180.0, -400.0 + 1.25 * index]
        dataset.PixelSpacing = [0.7, 0.7]
        dataset.SliceThickness = 1.25
        dataset.Rows = dataset.Columns = SIZE
        dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
        dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 12, 11
        dataset.PixelRepresentation = 0
        dataset.RescaleSlope, dataset.RescaleIntercept = 1, -1024
        dataset.PixelData = np.roll(body, index, axis=0).tobytes()
        dataset.save_as(folder / f"IM{order[index]:05d}.dcm", enforce_file_format=True)


def load_enclave(folder: Path) -> np.ndarray:
    from enclave.volumes.series import group_series, read_volume
    from enclave.volumes.slices import find_slices

    slices, _ = find_slices(folder)
    (series,) = group_series(slices)
    return read_volume(series)[0]


def load_simpleitk(folder: Path) -> np.ndarray:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return sitk.GetArrayFromImage(reader.Execute())


def load_pydicom(folder: Path) -> np.ndarray:
    import pydicom

    datasets = [pydicom.dcmread(path) for path in sorted(folder.iterdir())]
    datasets.sort(key=lambda d: int(d.InstanceNumber))
    return np.stack(
        [d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in datasets]
    )


def load_store(store: Path) -> np.ndarray:
    import enclave

    return enclave.open_volume(store).values


LOADERS = {
    "enclave": load_enclave,
    "simpleitk": load_simpleitk,
    "pydicom": load_pydicom,
    "store": load_store,
}


def child(loader: str, path: str) -> None:
    import pydicom
    import SimpleITK  # noqa: F401
    import xarray
    from pydicom.data import get_testdata_file

    import enclave.volumes.volume  # noqa: F401

    # Imports are not measured: nor pydicom's first decode (it finds its pixel handlers), nor
    # xarray's first DataArray (it imports its array backends then).
    pydicom.dcmread(get_testdata_file("CT_small.dcm")).pixel_array  # noqa: B018
    xarray.DataArray(np.zeros(1), coords={"x": [0.0]}, dims="x")
    began = time.perf_counter()
    volume = LOADERS[loader](Path(path))
    seconds = time.perf_counter() - began
    # Worker processes (Enclave reads headers in forked ones) are reported apart.
    workers_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    report({"seconds": seconds, "checksum": float(volume.sum()), "workers_peak": workers_peak})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from enclave.volumes.series import group_series, read_volume
    from enclave.volumes.slices import find_slices
    from enclave.volumes.store import write_volume

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "series"
        folder.mkdir()
        write_series(folder, args.slices)
        slices, _ = find_slices(folder)
        (series,) = group_series(slices)
        voxels, geometry = read_volume(series)
        store = Path(scratch) / "volume.ome.zarr"
        write_volume(store, "volume", voxels, geometry, "CT", "HU")
        os.sync()  # no write-back of the new files during the measurements
        size = args.slices * SIZE * SIZE * 2 / 2**20
        print(f"Series: {args.slices} slices of {SIZE} x {SIZE} int16 ({size:.0f} MiB of pixels)")
        print(f"Best of {args.rounds} rounds, the loaders taking turns, each in a fresh process")
        seconds: dict[str, list[float]] = {loader: [] for loader in LOADERS}
        peaks: dict[str, tuple[int, int]] = {}
        sums = set()
        for _ in range(args.rounds):
            for loader in LOADERS:
                target = store if loader == "store" else folder
                result, peak = in_child(__file__, loader, str(target))
                seconds[loader].append(result["seconds"])
                sums.add(result["checksum"])
                peaks[loader] = max(peaks.get(loader, (0, 0)), (peak, result["workers_peak"]))
        assert len(sums) == 1, f"the loaders disagree: {sums}"
        print(f"\n{'loader':<10} {'seconds':>8} {'slices/s':>9} {'peak RSS':>9} {'workers':>8}")
        rates = {}
        for loader, times in seconds.items():
            rates[loader] = args.slices / min(times)
            peak, workers = peaks[loader]
            print(
                f"{loader:<10} {min(times):>8.2f} {rates[loader]:>9.0f} "
                f"{peak / 2**20:>5.0f} MiB {workers / 2**20:>4.0f} MiB"
            )
        print(
            f"\nEnclave / SimpleITK {rates['enclave'] / rates['simpleitk']:.2f}x, "
            f"Enclave / pydicom {rates['enclave'] / rates['pydicom']:.2f}x; "
            f"store / SimpleITK {rates['store'] / rates['simpleitk']:.2f}x, "
            f"store / pydicom {rates['store'] / rates['pydicom']:.2f}x, "
            f"store / Enclave from files {rates['store'] / rates['enclave']:.2f}x"
        )


if __name__ == "__main__":
    main_or_child(main, child)
