"""`enclave dataset ingest dicom`: a folder of DICOM files into a dataset of de-identified
volumes.

Series are found and checked (`series`); each regular one becomes an OME-Zarr volume and its
de-identified headers as DICOM JSON, registered only once complete. A series that cannot be a
regular volume is reported by name with the reason and skipped; instances that are or may be
marked with burned-in annotation are moved aside (quarantined), never ingested.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pydicom
from tqdm import tqdm

from ..catalog import CatalogError, check_id
from ..registration import FAILED, DatasetWriter, Outcome
from .deid import PROFILE_EDITION, Deidentifier
from .series import Series, SeriesError, group_series, read_volume
from .slices import find_slices
from .store import write_volume

STORE_SUFFIX = ".ome.zarr"
HEADERS = "headers.json"
QUARANTINE = ".quarantine"
TOOLS = ("enclave", "pydicom", "pylibjpeg", "dicom-anonymizer", "zarr")


def dicom_folder(source: Path) -> Path:
    """The folder to search: `source` itself, or the folder of a DICOMDIR file."""
    if source.is_dir():
        return source
    if source.is_file() and source.name.upper() == "DICOMDIR":
        return source.parent
    problem = "is neither a folder nor a DICOMDIR" if source.exists() else "does not exist"
    raise CatalogError(f"{source}: {problem}")


def series_object_id(series: Series) -> str:
    """'<number>-<description>', lower-cased, other characters replaced by '-'."""
    label = f"{series.number if series.number is not None else 'x'}-{series.description}"
    slug = re.sub(r"[^a-z0-9_]+", "-", label.lower()).strip("-_")[:63]
    return check_id(slug or "series", "series id")


def _no_bulk(_element) -> str:
    """Large binary elements are not copied into the JSON headers."""
    return ""


def quarantine(paths: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for path in paths:
        shutil.copy2(path, folder / f"{secrets.token_hex(6)}-{path.name}")


def ingest_series(writer: DatasetWriter, series: Series, deidentifier: Deidentifier) -> str:
    """Write and register one series; its object id. Raises SeriesError or CatalogError."""
    object_id = series_object_id(series)
    if writer.has(object_id):
        raise CatalogError(f"{series.name}: dataset {writer.id!r} already has {object_id!r}")
    voxels, geometry = read_volume(series)
    headers, removed = [], set()
    for path in series.paths:
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        report = deidentifier.apply(dataset)
        removed |= report.removed | report.emptied | report.replaced
        headers.append(
            dataset.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=_no_bulk)
        )
    with writer.staging(object_id) as staging:
        pixels = write_volume(staging, object_id, voxels, geometry, series.modality, series.units)
        (staging / HEADERS).write_text(json.dumps(headers))
        entry = {
            "kind": "volume",
            "format": "ome-zarr-0.5",
            "pixels": pixels,
            "slices": len(series.slices),
            "deidentification": {
                "profile": f"DICOM PS3.15 Annex E, Basic Profile ({PROFILE_EDITION})",
                "attributes_removed_or_replaced": sorted(removed),
                "private_elements": "removed",
                "uids": "remapped (keyed HMAC)",
                "dates_shifted": deidentifier.shift_dates,
            },
            "tools": {name: metadata.version(name) for name in TOOLS},
        }
        writer.register(object_id, staging, object_id + STORE_SUFFIX, entry)
    return object_id


def ingest_dicom(
    source: Path,
    dataset_id: str,
    data_root: Path,
    key: bytes,
    shift_dates: bool = False,
    show_progress: bool = True,
    report: Callable[[str], object] = print,
) -> list[Outcome]:
    """Ingest every series under `source` (a folder, or a DICOMDIR's folder); raises
    CatalogError when there is nothing to ingest or a file cannot be read."""
    folder = dicom_folder(source)
    try:
        slices, skipped = find_slices(folder)
    except OSError as error:
        raise CatalogError(f"{error.filename}: cannot be read ({error.strerror})") from None
    for path in skipped:
        report(f"skipped {path}: not a readable DICOM image")
    if not slices:
        raise CatalogError(f"{folder}: holds no DICOM image")
    writer = DatasetWriter(data_root, dataset_id, kind="volumes")
    deidentifier = Deidentifier(key, shift_dates)
    outcomes = []
    for series in tqdm(group_series(slices), desc="series", disable=not show_progress):
        flagged = list(dict.fromkeys(s.path for s in series.slices if s.burned_in))
        if flagged:
            quarantine(flagged, data_root / QUARANTINE / dataset_id)
            error = (
                f"{series.name}: {len(flagged)} instance(s) may show burned-in annotation "
                "(quarantined, not ingested)"
            )
            report(f"{FAILED}{error}")
            outcomes.append(Outcome(series.name, error=error))
            continue
        try:
            object_id = ingest_series(writer, series, deidentifier)
        except (SeriesError, CatalogError, OSError, ValueError) as error:
            report(f"{FAILED}{error}")
            outcomes.append(Outcome(series.name, error=str(error)))
        else:
            report(f"ok      {series.name} → {dataset_id}/{object_id}")
            outcomes.append(Outcome(series.name, object_id=object_id))
    failed = sum(1 for o in outcomes if o.error)
    report(f"{len(outcomes) - failed} series ingested into {dataset_id}, {failed} refused")
    return outcomes
