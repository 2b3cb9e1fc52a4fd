"""`enclave dataset ingest dicom`: a folder of DICOM files into a dataset of de-identified
volumes.

Series are found and checked (`series`); each regular one becomes an OME-Zarr volume and its
de-identified headers as DICOM JSON, registered only once complete. A series that cannot be a
regular volume is reported by name with the reason and skipped; instances that are or may be
marked with burned-in annotation are moved aside (quarantined), never ingested.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

import pydicom
from tqdm import tqdm

from ..catalog import CatalogError, check_id
from ..persons import SourceManifest
from ..registration import FAILED, DatasetWriter, Outcome
from .deid import PROFILE_EDITION, Deidentifier
from .descriptors import IdentifyingValues
from .series import Series, SeriesError, group_series, read_volume
from .slices import Unreadable, find_slices
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


def series_object_id(number: int | None, description: str) -> str:
    """'<number>-<description>', lower-cased, other characters replaced by '-'."""
    label = f"{number if number is not None else 'x'}-{description}"
    slug = re.sub(r"[^a-z0-9_]+", "-", label.lower()).strip("-_")[:56]
    return check_id(slug or "series", "series id")


@dataclass(frozen=True)
class Naming:
    """How a series is named in the dataset: its object id and, for `dataset.json`, its label
    and its files, each without what identifies the patient."""

    object_id: str
    label: str
    files: tuple[str, ...]


def series_naming(
    all_series: list[Series], source: Path
) -> tuple[dict[str, Naming], IdentifyingValues]:
    """Each series' naming, by SeriesInstanceUID, and every patient's identifying values
    (to keep out of what `dataset.json` says of the run). The object id is readable, with a
    short stable suffix (from its study, or itself within one study) where two would share
    one."""
    found, patterns = {}, []
    for series in all_series:
        header = pydicom.dcmread(series.paths[0], stop_before_pixels=True)
        identifying = IdentifyingValues.of(header)
        patterns += identifying.patterns
        description = identifying.cut(series.description)
        number = f"series {series.number}" if series.number is not None else "series"
        found[series.uid] = Naming(
            object_id=series_object_id(series.number, description),
            label=f"{number} '{description}'" if description else number,
            files=tuple(identifying.cut(p.relative_to(source).as_posix()) for p in series.paths),
        )
    by_id: dict[str, list[Series]] = {}
    for series in all_series:
        by_id.setdefault(found[series.uid].object_id, []).append(series)
    for object_id, sharing in by_id.items():
        if len(sharing) == 1:
            continue
        studies = {s.study_uid for s in sharing}
        for series in sharing:
            by = series.study_uid if len(studies) == len(sharing) else series.uid
            suffix = hashlib.sha256(by.encode()).hexdigest()[:6]
            found[series.uid] = replace(found[series.uid], object_id=f"{object_id}-{suffix}")
    return found, IdentifyingValues(tuple(dict.fromkeys(patterns)))


def _no_bulk(_element) -> str:
    """Large binary elements are not copied into the JSON headers."""
    return ""


def quarantine(paths: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for path in paths:
        shutil.copy2(path, folder / f"{secrets.token_hex(6)}-{path.name}")


def ingest_series(
    writer: DatasetWriter, series: Series, naming: Naming, deidentifier: Deidentifier
) -> str:
    """Write and register one series as named. Raises SeriesError or CatalogError."""
    object_id = naming.object_id
    if writer.has(object_id):
        raise CatalogError(f"{series.name}: dataset {writer.id!r} already has {object_id!r}")
    voxels, geometry = read_volume(series)
    headers, removed, cleaned, persons = [], set(), set(), set()
    for path in series.paths:
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        try:
            report = deidentifier.apply(dataset)
        except CatalogError as error:
            raise SeriesError(f"{series.name}: {error}") from None
        persons.add(str(dataset.PatientID))
        removed |= report.removed | report.emptied | report.replaced
        cleaned |= report.cleaned
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
            "source_files": list(naming.files),
            "deidentification": {
                "profile": f"DICOM PS3.15 Annex E, Basic Profile ({PROFILE_EDITION})",
                "attributes_removed_or_replaced": sorted(removed),
                "text_cleaned_of_identifying_values": sorted(cleaned),
                "private_elements": "removed",
                "uids": "remapped (keyed HMAC)",
                "dates_shifted": deidentifier.shift_dates,
            },
            "tools": {name: metadata.version(name) for name in TOOLS},
        }
        writer.register(object_id, staging, object_id + STORE_SUFFIX, entry, persons)
    return object_id


def ingest_dicom(
    source: Path,
    dataset_id: str,
    data_root: Path,
    key: bytes,
    shift_dates: bool = False,
    show_progress: bool = True,
    report: Callable[[str], object] = print,
    manifest: SourceManifest | None = None,
) -> list[Outcome]:
    """Ingest every series under `source` (a folder, or a DICOMDIR's folder); a `manifest`
    gives each PatientID's patient id (a series whose PatientID it lacks is refused). Every
    file is accounted for: in a series ingested, in one refused, or skipped, each with its
    reason (in the report and in `dataset.json`). A damaged DICOM file refuses its series
    (or, when what can be read of it does not name one, every series in its folder): a series
    is never registered short of a slice. Raises CatalogError when there is nothing to ingest."""
    folder = dicom_folder(source)
    try:
        slices, unreadable = find_slices(folder)
    except OSError as error:
        raise CatalogError(f"{error.filename}: cannot be read ({error.strerror})") from None
    all_series = group_series(slices)
    if not all_series:
        found = "; ".join(f"{u.path.relative_to(folder)}: {u.reason}" for u in unreadable[:3])
        more = f"; and {len(unreadable) - 3} more" if len(unreadable) > 3 else ""
        raise CatalogError(
            f"{folder}: holds no DICOM image" + (f" ({found}{more})" if found else "")
        )
    damaged = _damaged_by_series(all_series, [u for u in unreadable if u.damaged_dicom])
    naming, everyone = series_naming(all_series, folder)

    def recorded(text: str) -> str:
        """Text for `dataset.json`: paths relative to the source, no identifying value."""
        return everyone.cut(text.replace(f"{folder}/", ""))

    outcomes = []
    run = {"ingested": {}, "refused": {}, "skipped": {}}
    for item in unreadable:
        if item.damaged_dicom and any(item in found for found in damaged.values()):
            continue  # reported with the series it refuses
        kind = "refused" if item.damaged_dicom else "skipped"
        report(f"{FAILED}{item.path}: {kind}, {item.reason}")
        run[kind][recorded(str(item.path))] = item.reason
        outcomes.append(Outcome(item.path, error=f"{item.path}: {item.reason}"))
    writer = DatasetWriter(data_root, dataset_id, kind="volumes")
    deidentifier = Deidentifier(key, shift_dates, manifest)
    for series in tqdm(all_series, desc="series", disable=not show_progress):
        error = _refusal(series, damaged.get(series.uid, []), data_root / QUARANTINE / dataset_id)
        if error is None:
            try:
                object_id = ingest_series(writer, series, naming[series.uid], deidentifier)
            except (SeriesError, CatalogError, OSError, ValueError) as failure:
                error = str(failure)
        if error is not None:
            report(f"{FAILED}{error}")
            named = naming[series.uid]
            run["refused"][named.object_id] = recorded(error.replace(series.name, named.label))
            outcomes.append(Outcome(series.name, error=error))
            continue
        report(f"ok      {series.name} → {dataset_id}/{object_id}")
        run["ingested"][object_id] = len(series.paths)
        outcomes.append(Outcome(series.name, object_id=object_id))
    writer.record_run(run)
    failed = sum(1 for o in outcomes if o.error)
    report(
        f"{len(run['ingested'])} series ingested into {dataset_id}; {len(run['refused'])} "
        f"refused and {len(run['skipped'])} file(s) skipped"
        + (": the dataset was not created" if not run["ingested"] and failed else "")
    )
    return outcomes


def _damaged_by_series(all_series: list[Series], damaged: list[Unreadable]) -> dict:
    """The damaged files each series must answer for: those whose readable start names it,
    else those in a folder that holds its slices."""
    found: dict[str, list[Unreadable]] = {}
    for item in damaged:
        owners = [s for s in all_series if item.series_uid and s.uid == item.series_uid]
        if not owners:
            owners = [s for s in all_series if any(p.parent == item.path.parent for p in s.paths)]
        for series in owners:
            found.setdefault(series.uid, []).append(item)
    return found


def _refusal(series: Series, damaged: list[Unreadable], quarantine_folder: Path) -> str | None:
    """Why a series is refused before it is read, or None."""
    if damaged:
        named = "; ".join(f"{item.path} is {item.reason}" for item in damaged)
        return f"{series.name}: not ingested, since it would lack a slice: {named}"
    flagged = list(dict.fromkeys(s.path for s in series.slices if s.burned_in))
    if flagged:
        quarantine(flagged, quarantine_folder)
        return (
            f"{series.name}: {len(flagged)} instance(s) may show burned-in annotation "
            "(quarantined, not ingested)"
        )
    return None
