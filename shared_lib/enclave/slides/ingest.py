"""`enclave dataset ingest slides`: source slides into a dataset as OME-Zarr stores.

A slide's label and macro images are dropped, so nothing in it names its person: the manifest
does (its file name → patient id, and attributes such as stain, specimen and body site), and a
slide the manifest does not name is refused. Each slide is converted into a staging folder and
registered only once complete; a slide that cannot be read or is refused is reported by name
and the others go on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path

from tqdm import tqdm

from ..catalog import CatalogError, object_id_for
from ..persons import ManifestEntry, SourceManifest
from ..pseudonyms import Pseudonymizer
from ..registration import FAILED, DatasetWriter, Outcome, file_sha256
from .convert import SlideConverter
from .source import SlideError, open_source

STORE_SUFFIX = ".ome.zarr"
TOOLS = ("enclave", "tiffslide", "tifffile", "imagecodecs", "zarr", "numcodecs")


def tool_versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in TOOLS}


def ingest_slide(
    writer: DatasetWriter,
    path: Path,
    named: ManifestEntry,
    key: bytes,
    workers: int,
    show_progress: bool,
) -> str:
    """Convert and register one slide of the person the manifest `named`; its object id.
    Raises SlideError or CatalogError."""
    object_id = object_id_for(path.name.split(".")[0])
    if writer.has(object_id):
        raise CatalogError(f"{path}: dataset {writer.id!r} already has an object {object_id!r}")
    source = open_source(path)
    try:
        with writer.staging(object_id) as staging:
            converter = SlideConverter(source, staging, workers)
            with tqdm(
                total=converter.total_pixels(),
                unit="px",
                unit_scale=True,
                desc=object_id,
                disable=not show_progress,
                leave=False,
            ) as bar:
                try:
                    pixels = converter.run(object_id, bar.update)
                except Exception as error:  # a damaged tile deep in the file, a full disk...
                    raise SlideError(
                        f"{path}: conversion failed ({type(error).__name__}: {error})"
                    ) from None
            entry = {
                "kind": "slide",
                "format": converter.format,
                "pixels": pixels,
                "metadata": source.kept_metadata(),
                "attributes": named.attributes,
                "source": {
                    "file": path.name,
                    "bytes": path.stat().st_size,
                    "checksum": file_sha256(path),
                },
                "deidentification": {
                    "images_dropped": source.dropped_images(),
                    "metadata_dropped": source.dropped_metadata(),
                },
                "tools": tool_versions(),
            }
            person = Pseudonymizer(key).patient(named.patient_id)
            writer.register(object_id, staging, object_id + STORE_SUFFIX, entry, [person])
    finally:
        source.close()
    return object_id


def ingest_slides(
    sources: Iterable[Path],
    dataset_id: str,
    data_root: Path,
    key: bytes,
    manifest: SourceManifest | None = None,
    workers: int = 2,
    show_progress: bool = True,
    report: Callable[[str], object] = print,
) -> list[Outcome]:
    """Ingest every source the `manifest` names, its person the pseudonym (under `key`) of
    the patient id it gives; reporting each; one outcome per source."""
    writer = DatasetWriter(data_root, dataset_id, kind="slides")
    outcomes = []
    for path in sources:
        try:
            if manifest is None:
                raise CatalogError(
                    f"{path}: no manifest names its person (--manifest FILE.csv with "
                    "source,patient_id)"
                )
            named = manifest.require(str(path), Path(path).name, str(path))
            object_id = ingest_slide(writer, Path(path), named, key, workers, show_progress)
        except (SlideError, CatalogError, OSError) as error:
            report(f"{FAILED}{error}")
            outcomes.append(Outcome(Path(path), error=str(error)))
        else:
            report(f"ok      {path} → {dataset_id}/{object_id}")
            outcomes.append(Outcome(Path(path), object_id=object_id))
    failed = sum(1 for o in outcomes if o.error)
    report(f"{len(outcomes) - failed} slide(s) ingested into {dataset_id}, {failed} failed")
    return outcomes
