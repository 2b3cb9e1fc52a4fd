"""`enclave dataset ingest slides|dicom|matrix|omop|genotypes` as a user runs it: with only
its required arguments a good source goes in; a bad input ends in one line on stderr that
names it, a non-zero exit and nothing registered, never in a traceback."""

from __future__ import annotations

import ctypes
import gzip
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import pytest
import scanpy
from test_matrices_ingest import _counts, _write_matrix_market
from test_volumes_ingest import DICOMDIR_TESTS

from slide_data import slide_manifest, slide_path

ENCLAVE = [sys.executable, "-m", "enclave_hub.cli", "dataset", "ingest"]
CT_SERIES = DICOMDIR_TESTS / "98892001" / "CT5N"
PBMC = Path(scanpy.__file__).parent / "datasets" / "10x_pbmc68k_reduced.h5ad"
SYNTHEA = Path(__file__).resolve().parents[2] / "shared/data/omop/synthea27nj-5.4-parquet"
GENOTYPES = Path(__file__).resolve().parents[2] / "shared/data/genotypes"
PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2


@pytest.fixture
def site(tmp_path) -> Path:
    """A folder with a state directory whose site configuration keeps the data root beside."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "enclave.yaml").write_text(f"state_dir: {state}\ndata_root: {tmp_path / 'data'}\n")
    return tmp_path


def _obey_file_modes() -> None:
    """In the command's process: root too is refused unreadable files (no CAP_DAC_OVERRIDE or
    CAP_DAC_READ_SEARCH after exec); for anyone else this changes nothing."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)


def _enclave(site: Path, *arguments: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*ENCLAVE, *map(str, arguments)],
        env={**os.environ, "ENCLAVE_STATE_DIR": str(site / "state")},
        capture_output=True,
        text=True,
        preexec_fn=_obey_file_modes,
    )


def _objects(site: Path, dataset_id: str) -> dict:
    manifest = site / "data" / dataset_id / "dataset.json"
    return json.loads(manifest.read_text())["objects"] if manifest.exists() else {}


def _unreadable(path: Path) -> Path:
    path.chmod(0)
    return path


@pytest.mark.parametrize(
    ("verb", "source", "object_id"),
    [
        ("slides", lambda: slide_path("small.svs"), "small"),
        ("dicom", lambda: CT_SERIES, "5-smartscore-gated-0-5-sec"),
        ("matrix", lambda: PBMC, "10x_pbmc68k_reduced"),
        ("omop", lambda: _sample(SYNTHEA), "synthea27nj-5-4-parquet"),
        ("genotypes", lambda: _sample(GENOTYPES / "sample.vcf.gz"), "sample"),
    ],
    ids=["slides", "dicom", "matrix", "omop", "genotypes"],
)
def test_only_the_required_arguments_ingest_a_good_source(site, verb, source, object_id):
    """Slides need their manifest too: nothing in a slide names its person."""
    path = source()
    named = ["--manifest", slide_manifest(site, [path])] if verb == "slides" else []
    done = _enclave(site, verb, path, "--dataset", "ds-good", *named)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert list(_objects(site, "ds-good")) == [object_id]


def _sample(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared sample data sits beside the checkout")
    return path


def _assert_each_refused(site: Path, verb: str, cases: dict[str, tuple[list, str]]) -> None:
    """Run every case at once: (its arguments after the verb, what its one line on stderr
    says). A case ingests into the dataset named after it unless it names its own."""

    def run(name: str, arguments: list) -> subprocess.CompletedProcess:
        dataset = [] if "--dataset" in arguments else ["--dataset", name]
        return _enclave(site, verb, *arguments, *dataset)

    with ThreadPoolExecutor(len(cases)) as pool:
        runs = {name: pool.submit(run, name, arguments) for name, (arguments, _) in cases.items()}
    for name, (_, says) in cases.items():
        done = runs[name].result()
        assert done.returncode != 0, f"{name}: {done.stdout}"
        assert "Traceback" not in done.stderr, f"{name}: {done.stderr}"
        assert len(done.stderr.splitlines()) == 1, f"{name}: {done.stderr}"
        assert done.stderr.startswith(("enclave: ", "FAILED  ")), f"{name}: {done.stderr}"
        assert says in done.stderr, f"{name}: {done.stderr}"
        assert not _objects(site, name), f"{name}: something was registered"


def _common_cases(site: Path, good: Path) -> dict[str, tuple[list, str]]:
    """A bad dataset id and a data root that cannot be created, for a good source."""
    (site / "a-file").write_text("")
    return {
        "bad-id": ([good, "--dataset", "Bad/Id"], "dataset 'Bad/Id' is not valid"),
        "no-data-root": (
            [good, "--data-root", site / "a-file" / "data"],
            f"{site / 'a-file' / 'data'}: cannot be created (Not a directory)",
        ),
    }


def test_bad_slides_are_named_and_nothing_is_registered(site):
    folder = site / "folder"
    folder.mkdir()
    notes = site / "notes.txt"
    notes.write_text("not a slide")
    truncated = site / "truncated.svs"
    truncated.write_bytes(slide_path("cmu-1-small-region.svs").read_bytes()[:1500])
    locked = _unreadable(Path(shutil.copy(slide_path("small.svs"), site / "locked.svs")))
    damaged = slide_path("unreadable.svs")
    every = [
        site / "missing.svs",
        folder,
        notes,
        truncated,
        damaged,
        locked,
        slide_path("small.svs"),
    ]
    named = ["--manifest", slide_manifest(site, every)]
    cases = {
        "missing": ([site / "missing.svs"], f"{site}/missing.svs: cannot be read (No such file"),
        "folder": ([folder], f"{folder}: cannot be read (Is a directory)"),
        "text": ([notes], f"{notes}: cannot be opened as a slide (TiffFileError: not a TIFF"),
        "truncated": ([truncated], f"{truncated}: holds no image: it is cut short or damaged"),
        "damaged": ([damaged], f"{damaged}: its pixels cannot be decoded"),
        "locked": ([locked], f"{locked}: cannot be read (Permission denied)"),
        **_common_cases(site, slide_path("small.svs")),
    }
    cases = {name: ([*arguments, *named], says) for name, (arguments, says) in cases.items()}
    cases["unnamed"] = ([slide_path("boxes.tiff"), *named], "the manifest")
    _assert_each_refused(site, "slides", cases)


def test_bad_dicom_folders_are_named_and_nothing_is_registered(site):
    empty, no_dicom = site / "empty", site / "no-dicom"
    empty.mkdir()
    no_dicom.mkdir()
    (no_dicom / "notes.txt").write_text("not DICOM")
    truncated = shutil.copytree(CT_SERIES, site / "truncated")
    (truncated / "2062").write_bytes((CT_SERIES / "2062").read_bytes()[:3600])
    locked = shutil.copytree(CT_SERIES, site / "locked")
    _unreadable(locked / "2062")
    cases = {
        "missing": ([site / "missing"], f"{site}/missing: does not exist"),
        "a-file": ([CT_SERIES / "2062"], f"{CT_SERIES}/2062: is neither a folder nor a DICOMDIR"),
        "empty": ([empty], f"{empty}: holds no DICOM image"),
        "no-dicom": ([no_dicom], f"{no_dicom}: holds no DICOM image"),
        "truncated": ([truncated], f"{truncated}/2062: its pixel data is truncated"),
        "locked": ([locked], f"{locked}/2062: cannot be read (Permission denied)"),
        **_common_cases(site, CT_SERIES),
    }
    _assert_each_refused(site, "dicom", cases)


def test_bad_matrices_are_named_and_nothing_is_registered(site):
    empty = site / "empty"
    empty.mkdir()
    notes = site / "notes.txt"
    notes.write_text("not a matrix")
    truncated = site / "truncated.h5ad"
    truncated.write_bytes(PBMC.read_bytes()[:20000])
    random = site / "random.h5ad"
    random.write_bytes(os.urandom(5000))
    hollow = site / "hollow.h5ad"
    with h5py.File(hollow, "w") as handle:
        handle.attrs["encoding-type"] = "anndata"
    damaged = site / "sample3"
    _write_matrix_market(damaged, _counts(), shuffle=False)
    content = bytearray((damaged / "matrix.mtx.gz").read_bytes())
    middle = len(content) // 2
    content[middle : middle + 64] = bytes(64)
    (damaged / "matrix.mtx.gz").write_bytes(content)
    locked = _unreadable(Path(shutil.copy(PBMC, site / "locked.h5ad")))
    cases = {
        "missing": ([site / "missing.h5ad"], f"{site}/missing.h5ad: no such file or folder"),
        "empty": ([empty], f"{empty}: no matrix.mtx[.gz] in this Matrix Market folder"),
        "text": ([notes], f"{notes}: not a .h5ad, a 10x .h5 file or a Matrix Market folder"),
        "truncated": ([truncated], f"{truncated}: not a readable HDF5 file"),
        "random": ([random], f"{random}: not a readable HDF5 file"),
        "hollow": ([hollow], f"{hollow}: not a readable AnnData file"),
        "damaged": ([damaged], f"{damaged}/matrix.mtx.gz: not a readable Matrix Market file"),
        "locked": ([locked], f"{locked}: cannot be read (Permission denied)"),
        "no-column": ([PBMC, "--pseudonymise", "donor"], f"{PBMC}: no obs column 'donor'"),
        **_common_cases(site, PBMC),
    }
    _assert_each_refused(site, "matrix", cases)


def test_bad_omop_sources_are_named_and_nothing_is_registered(site):
    good = _sample(SYNTHEA)
    empty, stray, twice = site / "empty", site / "stray", site / "twice"
    for folder in (empty, stray, twice):
        folder.mkdir()
    for folder in (stray, twice):
        shutil.copy(good / "person.parquet", folder)
    (stray / "patients.csv").write_text("id\n1\n")
    (twice / "PERSON.csv").write_text("person_id\n1\n")
    locked = site / "locked"
    shutil.copytree(good, locked)
    _unreadable(locked / "death.parquet")
    cases = {
        "missing": ([site / "missing"], f"{site}/missing: not a folder of OMOP CDM tables"),
        "empty": ([empty], f"{empty}: has no person table"),
        "stray": ([stray], f"{stray}/patients.csv: not a CDM 5.4 table"),
        "twice": ([twice], f"{twice}/person.parquet: a second file of table person"),
        "locked": ([locked], f"{locked}/death.parquet: cannot be read"),
        "bad-limit": ([good, "--memory-limit", "lots"], "memory limit 'lots': not a size"),
        **_common_cases(site, good),
    }
    _assert_each_refused(site, "omop", cases)


def test_bad_genotype_sources_are_named_and_nothing_is_registered(site):
    good = _sample(GENOTYPES / "sample.vcf.gz")
    text = gzip.decompress(good.read_bytes())
    (site / "notes.txt").write_text("not genotypes\n")
    (site / "gzip.vcf.gz").write_bytes(gzip.compress(text))
    (site / "cut.vcf.gz").write_bytes(good.read_bytes()[:-100])
    (site / "other.vcf").write_bytes(text.replace(b"NA00002", b"NA00007"))
    (site / "lone.bed").write_bytes(b"\x6c\x1b\x01")
    shutil.copy(good, site / "locked.vcf.gz")
    _unreadable(site / "locked.vcf.gz")
    cases = {
        "missing": ([site / "missing.vcf.gz"], f"{site}/missing.vcf.gz: no such file"),
        "text": ([site / "notes.txt"], f"{site}/notes.txt: not a VCF, BCF or PLINK file"),
        "gzip": ([site / "gzip.vcf.gz"], f"{site}/gzip.vcf.gz: gzip-compressed but not with bgzip"),
        "cut": ([site / "cut.vcf.gz"], f"{site}/cut.vcf.gz: truncated"),
        "differ": ([good, site / "other.vcf"], f"{site}/other.vcf: samples differ from sample."),
        "lone": (
            [site / "lone.bed"],
            f"{site}/lone: the PLINK fileset lacks lone.bim and lone.fam",
        ),
        "locked": ([site / "locked.vcf.gz"], f"{site}/locked.vcf.gz: cannot be read"),
        "bad-limit": ([good, "--memory-limit", "lots"], "memory limit 'lots': not a size"),
        **_common_cases(site, good),
    }
    _assert_each_refused(site, "genotypes", cases)
