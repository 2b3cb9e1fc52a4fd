"""The real sample slides in ../shared/data/slides, and datasets ingested from them."""

from __future__ import annotations

from pathlib import Path

import pytest

SLIDES = Path(__file__).resolve().parents[2] / "shared" / "data" / "slides"
GOOD = ("cmu-1-small-region.svs", "boxes.tiff", "small.svs")
DAMAGED = ("unreadable.svs", "unopenable.tiff", "broken.svs")


def slide_path(name: str) -> Path:
    path = SLIDES / name
    if not path.is_file():
        pytest.skip(f"sample slide {path} is absent (../shared/data is not beside the checkout)")
    return path


SLIDE_PATIENT = "P-SLIDES"  # the patient id the tests' manifests give every slide
KEY = b"slide-tests-key-" * 2


def slide_manifest(folder: Path, sources) -> Path:
    """A manifest in `folder` naming every source, by file name, as one patient's slide."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "slides-manifest.csv"
    rows = "".join(f"{Path(s).name},{SLIDE_PATIENT},H&E\n" for s in sources)
    manifest.write_text("source,patient_id,stain\n" + rows)
    return manifest


def ingest_named_slides(sources, dataset_id: str, root: Path, **options):
    """`ingest_slides` with a manifest (beside `root`) naming every source as one patient's."""
    from enclave.persons import SourceManifest
    from enclave.slides.ingest import ingest_slides

    manifest = SourceManifest(
        slide_manifest(Path(root).parent / f"manifest-{Path(root).name}", sources)
    )
    return ingest_slides(sources, dataset_id, root, KEY, manifest, **options)
