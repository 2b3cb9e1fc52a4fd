"""The one-pass converter of text VCFs (`enclave.genotypes.direct`): on files of every GT and
number form a VCF allows, split over two files and several chunks, each call equals what
cyvcf2 (htslib) reads and the store equals bio2zarr's array by array; files it cannot read
exactly are converted by bio2zarr."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from cyvcf2 import VCF

from enclave.genotypes import direct
from enclave.genotypes.ingest import DIRECT, ingest_genotypes

KEY = b"d" * 32
SAMPLES = 40
VARIANTS = 12_500  # two chunks of 10,000 variants, the second cut short
FORMATS = ["GT:DP:XF", "GT:DP:XF", "GT:DP", "GT", "DP:XF", "GT:XF:DP", "XF:DP"]
GENOTYPES = ["0/0", "0|1", "1/1", "./.", ".|.", ".", "0", "1", "2/1", "0|.", "./1", "1|2", "2"]
DEPTHS = ["0", "7", "31", "255", "70000", "-3", "+4", "."]
FLOATS = ["0.5", "1e-3", "-2.25", ".", "3", "1.0E+2", ".125", "12345.678", "-0", "7.", "2.5e+10"]
FLOAT_MISSING_BITS = 0x7F800001
HEADER = """##fileformat=VCFv4.3
##contig=<ID=1,length=100000000>
##contig=<ID=2,length=100000000>
##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency">
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">
##FORMAT=<ID=XF,Number=1,Type=Float,Description="A float">
##FORMAT=<ID=UN,Number=1,Type=Integer,Description="Declared, never used">
"""


def _record(rng, contig: str, position: int, samples: int) -> str:
    keys = FORMATS[rng.integers(len(FORMATS))]
    calls = []
    for _ in range(samples):
        values = {
            "GT": GENOTYPES[rng.integers(len(GENOTYPES))],
            "DP": DEPTHS[rng.integers(len(DEPTHS))],
            "XF": FLOATS[rng.integers(len(FLOATS))],
        }
        parts = [values[key] for key in keys.split(":")]
        cut = rng.integers(1, len(parts) + 1) if rng.random() < 0.2 else len(parts)
        calls.append(":".join(parts[:cut]))
    site = f"{contig}\t{position}\trs{position}\tA\tG,T\t{position % 90}\tPASS\tAF=0.1,0.2"
    return "\t".join([site, keys, *calls])


def write_vcfs(folder: Path) -> list[Path]:
    """Two bgzipped VCFs (contigs 1 and 2) of every GT and number form, one unindexed."""
    import pysam

    rng = np.random.default_rng(7)
    column = "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT"])
    names = "\t".join(f"person-{n}" for n in range(SAMPLES))
    paths = []
    for contig, count in (("1", 7_100), ("2", VARIANTS - 7_100)):
        lines = [_record(rng, contig, 1000 + 10 * i, SAMPLES) for i in range(count)]
        text = folder / f"chr{contig}.vcf"
        text.write_text(HEADER + column + "\t" + names + "\n" + "\n".join(lines) + "\n")
        pysam.tabix_compress(str(text), str(text) + ".gz")
        paths.append(Path(str(text) + ".gz"))
    pysam.tabix_index(str(paths[0]), preset="vcf", csi=True)
    return paths


def expected_calls(paths: list[Path], ploidy: int) -> dict[str, np.ndarray]:
    """Each call array as htslib reads the files, in bio2zarr's conventions."""
    gt, phased, depth, floats = [], [], [], []
    for path in paths:
        for record in VCF(str(path)):
            if "GT" in record.FORMAT:
                array = record.genotype.array()
                alleles = np.full((SAMPLES, ploidy), -2, np.int32)
                alleles[:, : array.shape[1] - 1] = array[:, :-1]
                gt.append(alleles)
                phased.append(array[:, -1].astype(bool))
            else:
                gt.append(np.full((SAMPLES, ploidy), -1))
                phased.append(np.zeros(SAMPLES, bool))
            dp = record.format("DP") if "DP" in record.FORMAT else None
            depth.append(
                np.full(SAMPLES, -1)
                if dp is None
                else np.where(dp[:, 0] < -(2**31) + 8, -1, dp[:, 0])
            )
            xf = record.format("XF") if "XF" in record.FORMAT else None
            values = np.full(SAMPLES, np.nan, np.float32) if xf is None else xf[:, 0]
            floats.append(
                np.where(
                    np.isnan(values),
                    np.array(FLOAT_MISSING_BITS, np.int32).view(np.float32),
                    values,
                )
            )
    return {
        "call_genotype": np.array(gt),
        "call_genotype_mask": np.array(gt) < 0,
        "call_genotype_phased": np.array(phased),
        "call_DP": np.array(depth),
        "call_XF": np.array(floats, np.float32),
    }


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("direct")
    paths = write_vcfs(folder)
    root = folder / "data"
    (outcome,) = ingest_genotypes(paths, "ds", root, KEY, "calls", show_progress=False)
    assert outcome.error is None, outcome.error
    return paths, root, folder


def test_every_call_equals_what_htslib_reads(converted):
    paths, root, _ = converted
    assert _manifest(root, "calls")["converted_by"] == DIRECT
    store = zarr.open_group(root / "ds" / "calls.vcz", mode="r")
    assert store["call_genotype"].shape == (VARIANTS, SAMPLES, 2)
    assert store["call_genotype"].chunks == (10_000, 1_000, 2)
    for name, expected in expected_calls(paths, 2).items():
        stored = store[name][...]
        if stored.dtype.kind == "f":
            np.testing.assert_array_equal(stored.view(np.int32), expected.view(np.int32), name)
        else:
            np.testing.assert_array_equal(stored, expected, name)
    assert (store["call_UN"][...] == -1).all()


def test_the_store_equals_bio2zarrs(converted, monkeypatch):
    paths, root, folder = converted

    def declined(*args, **kwargs):
        raise direct.Declined("compared")

    monkeypatch.setattr(direct, "convert", declined)
    other = folder / "bio2zarr"
    (outcome,) = ingest_genotypes(paths, "ds", other, KEY, "calls", show_progress=False)
    assert outcome.error is None, outcome.error
    assert _manifest(other, "calls")["converted_by"] == "bio2zarr"
    ours = zarr.open_group(root / "ds" / "calls.vcz", mode="r")
    theirs = zarr.open_group(other / "ds" / "calls.vcz", mode="r")
    assert sorted(ours.array_keys()) == sorted(theirs.array_keys())
    for name in theirs.array_keys():
        mine, reference = ours[name][...], theirs[name][...]
        assert (mine.shape, mine.dtype) == (reference.shape, reference.dtype), name
        if reference.dtype.kind == "f":
            np.testing.assert_array_equal(
                mine.view(np.int32), reference.astype(np.float32).view(np.int32), name
            )
        else:
            np.testing.assert_array_equal(mine, reference, name)
    assert dict(ours.attrs) == dict(theirs.attrs)


def test_an_integer_field_is_widened_when_later_chunks_need_it(tmp_path):
    """Depths that fit int8 in the first chunk and need int16 in the third: the array is int16
    as bio2zarr makes it, and every depth is kept."""
    import pysam

    rows, depths = [], []
    for variant in range(25_000):
        depth = [variant % 100, 7] if variant < 20_000 else [300 + variant % 7, -5]
        depths.append(depth)
        calls = "\t".join(f"0/1:{value}" for value in depth)
        rows.append(f"1\t{variant + 1}\t.\tA\tG\t.\t.\t.\tGT:DP\t{calls}")
    header = HEADER + "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ta\tb\n"
    text = tmp_path / "deep.vcf"
    text.write_text(header + "\n".join(rows) + "\n")
    pysam.tabix_compress(str(text), str(text) + ".gz")
    source = Path(str(text) + ".gz")
    (outcome,) = ingest_genotypes([source], "ds", tmp_path / "data", KEY, show_progress=False)
    assert outcome.error is None, outcome.error
    assert _manifest(tmp_path / "data", "deep")["converted_by"] == DIRECT
    stored = zarr.open_group(tmp_path / "data" / "ds" / "deep.vcz", mode="r")["call_DP"]
    assert stored.dtype == np.int16
    np.testing.assert_array_equal(stored[...], np.array(depths))
    assert not list(tmp_path.glob("data/**/wide.vcz")), "the int32 twins are staging only"


def test_a_workers_next_chunk_keeps_nothing_of_its_last(tmp_path):
    """One worker parses both chunks into the same buffers: the second chunk's lines lack DP
    (read by the parser's loop for usual calls), and none of the first chunk's values shows
    through."""
    import pysam

    first = [f"1\t{v + 1}\t.\tA\tG\t.\t.\t.\tGT:DP\t1|1:{v % 90}\t0/1:3" for v in range(10_000)]
    second = [f"1\t{v + 10_001}\t.\tA\tG\t.\t.\t.\tGT:UN\t0/0:5\t./.:6" for v in range(10_000)]
    header = HEADER + "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ta\tb\n"
    text = tmp_path / "two.vcf"
    text.write_text(header + "\n".join(first + second) + "\n")
    pysam.tabix_compress(str(text), str(text) + ".gz")
    source = Path(str(text) + ".gz")
    root = tmp_path / "data"
    (outcome,) = ingest_genotypes([source], "ds", root, KEY, show_progress=False, workers=1)
    assert outcome.error is None, outcome.error
    assert _manifest(root, "two")["converted_by"] == DIRECT
    store = zarr.open_group(root / "ds" / "two.vcz", mode="r")
    assert (store["call_DP"][10_000:] == -1).all()
    assert (store["call_UN"][10_000:] == [5, 6]).all()
    assert (store["call_genotype"][10_000:] == [[0, 0], [-1, -1]]).all()
    assert not store["call_genotype_phased"][10_000:].any()
    np.testing.assert_array_equal(store["call_DP"][:10_000, 0], np.arange(10_000) % 90)
    assert (store["call_UN"][:10_000] == -1).all()


@pytest.mark.parametrize(
    "line, why",
    [
        ("1\t5\t.\tA\tG\t.\t.\t.\tGT:DP\t0/1/1:3\t0/0:1", "more alleles"),
        ("1\t5\t.\tA\tG\t.\t.\t.\tGT:DP\t0/1:3,4\t0/0:1", "not one plain number"),
        ("1\t5\t.\tA\tG\t.\t.\t.\tGT:QQ\t0/1:3\t0/0:1", "does not declare"),
        ("1\t5\t.\tA\tG\t.\t.\t.\tGT:XF\t0/1:0.1234567890123456\t0/0:1", "not one plain"),
    ],
)
def test_what_the_parser_cannot_read_exactly_goes_to_bio2zarr(tmp_path, line, why):
    header = HEADER + "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ta\tb\n"
    source = tmp_path / "odd.vcf"
    source.write_text(header + "1\t1\t.\tA\tG\t.\t.\t.\tGT\t0/1\t1/1\n" + line + "\n")
    (outcome,) = ingest_genotypes([source], "ds", tmp_path / "data", KEY, show_progress=False)
    assert outcome.error is None, outcome.error
    assert _manifest(tmp_path / "data", "odd")["converted_by"] == "bio2zarr", why


def _manifest(root: Path, object_id: str) -> dict:
    return json.loads((root / "ds" / "dataset.json").read_text())["objects"][object_id]


def _huge_pages_enabled() -> bool:
    lines = Path("/proc/self/status").read_text().splitlines()
    return next(line for line in lines if line.startswith("THP_enabled")).endswith("1")


def test_the_workers_run_without_huge_pages():
    """A conversion's worker has its memory in small pages (by the kernel's own account of
    the process); the process that started it keeps its own as it was."""
    with direct.worker_pool(1) as pool:
        assert pool.submit(_huge_pages_enabled).result() is False
    assert _huge_pages_enabled()
