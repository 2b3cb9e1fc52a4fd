"""The sites writer (`enclave.genotypes.sites`): on sites of every INFO kind it parses, and on
the sample files' sites, the store equals bio2zarr's, array by array, bit for bit, with the
same attributes, chunks and codecs; sites it cannot read as htslib does raise `Unparsed`."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import numpy as np
import pysam
import pytest
import zarr
from bio2zarr import vcf

from enclave.genotypes import sites

GENOTYPES = Path(__file__).resolve().parents[2] / "shared" / "data" / "genotypes"
SETTINGS = {"variants_chunk_size": 7, "samples_chunk_size": 1000}  # several partitions
HEADER = """##fileformat=VCFv4.3
##source=test
##contig=<ID=1,length=1000000>
##contig=<ID=2>
##FILTER=<ID=q10,Description="Quality below 10">
##FILTER=<ID=s50,Description="Less than 50% of samples">
##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">
##INFO=<ID=AC,Number=A,Type=Integer,Description="Allele count">
##INFO=<ID=AD,Number=R,Type=Integer,Description="Allele depths">
##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency">
##INFO=<ID=PR,Number=2,Type=Float,Description="A pair">
##INFO=<ID=LS,Number=.,Type=Integer,Description="A list">
##INFO=<ID=BIG,Number=1,Type=Integer,Description="Wider than int8">
##INFO=<ID=DB,Number=0,Type=Flag,Description="dbSNP">
##INFO=<ID=AA,Number=1,Type=String,Description="Ancestral allele">
##INFO=<ID=Q,Number=1,Type=Float,Description="A float">
"""
COLUMNS = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


def _info(rng: random.Random, alts: list[str]) -> str:
    def some(choices, count):
        return ",".join(rng.choice(choices) for _ in range(count))

    items = {
        "DP": rng.choice([".", str(rng.randint(0, 300))]),
        "AC": some([".", "0", "7", "99"], len(alts)) if alts else None,
        "AD": some(["0", "12", "."], len(alts) + 1),
        "AF": some([".", "0.5", "0.333333", "1e-5"], len(alts)) if alts else None,
        "PR": some([".", "1.5", "-2"], rng.randint(1, 2)),
        "LS": some(["-5", "0", "3", "."], rng.randint(1, 4)),
        "BIG": str(rng.randint(-40_000, 40_000)),
        "DB": "",
        "AA": rng.choice(["A", "C", ".", "gt"]),
        "Q": rng.choice([".", "3.14159265", "-0.0", "1e38", "2.5E-3"]),
    }
    chosen = [(k, v) for k, v in items.items() if v is not None and rng.random() < 0.5]
    rng.shuffle(chosen)
    return ";".join(k if k == "DB" else f"{k}={v}" for k, v in chosen) or "."


def write_sites(path: Path, lines: list[str], extra: list[str] = ()) -> tuple[Path, Path]:
    """A sites-only VCF (`extra` header lines added) as text and as its bgzipped copy with a
    .csi index."""
    header = HEADER + "".join(line + "\n" for line in extra)
    path.write_text(header + COLUMNS + "".join(line + "\n" for line in lines))
    pysam.tabix_index(str(path), preset="vcf", csi=True, force=True, keep_original=True)
    return path, Path(f"{path}.gz")


def every_kind(count_per_contig: int = 60) -> list[str]:
    rng = random.Random(3)
    lines = []
    for contig in ("1", "2"):
        position = 0
        for n in range(count_per_contig):
            position += rng.randint(1, 500)
            alts = rng.sample(["C", "G", "T", "AA", "CCC"], rng.choice([0, 1, 1, 2, 3]))
            site = [
                contig,
                str(position),
                rng.choice([".", f"rs{n}", f"rs{n};id{n}"]),
                rng.choice(["A", "C", "GT", "TTTA"]),
                ",".join(alts) or ".",
                rng.choice([".", "30", "0.1", "1e3", "57.123456"]),
                rng.choice([".", "PASS", "q10", "q10;s50"]),
                _info(rng, alts),
            ]
            lines.append("\t".join(site))
    return lines


def sites_of(source: Path, folder: Path) -> tuple[Path, Path]:
    """A VCF's sites alone: its first eight columns, its FORMAT lines dropped."""
    text = folder / "sites.vcf"
    with gzip.open(source, "rt") as lines, text.open("w") as out:
        for line in lines:
            if not line.startswith("##FORMAT"):
                out.write("\t".join(line.rstrip("\n").split("\t")[:8]) + "\n")
    pysam.tabix_index(str(text), preset="vcf", csi=True, force=True, keep_original=True)
    return text, Path(f"{text}.gz")


def bio2zarrs(indexed: Path, folder: Path) -> zarr.Group:
    chunks = SETTINGS["variants_chunk_size"], SETTINGS["samples_chunk_size"]
    vcf.explode(folder / "icf", [indexed], worker_processes=0, show_progress=False)
    vcf.encode(
        folder / "icf",
        folder / "b.vcz",
        variants_chunk_size=chunks[0],
        samples_chunk_size=chunks[1],
        worker_processes=0,
    )
    return zarr.open_group(folder / "b.vcz", mode="r")


def assert_equal_stores(ours: zarr.Group, theirs: zarr.Group) -> None:
    assert dict(ours.attrs) == dict(theirs.attrs)
    assert sorted(ours.array_keys()) == sorted(theirs.array_keys())
    for name in theirs.array_keys():
        mine, reference = ours[name], theirs[name]
        layout = (mine.dtype, mine.shape, mine.chunks, mine.compressors, mine.filters)
        assert layout == (
            reference.dtype,
            reference.shape,
            reference.chunks,
            reference.compressors,
            reference.filters,
        ), name
        assert dict(mine.attrs) == dict(reference.attrs), name
        values, expected = mine[...], reference[...]
        if expected.dtype.kind == "f":  # missing and fill values are NaNs told apart by bits
            values, expected = values.view(np.int32), expected.view(np.int32)
        np.testing.assert_array_equal(values, expected, name)


def test_sites_of_every_kind_equal_bio2zarrs(tmp_path):
    text, indexed = write_sites(tmp_path / "sites.vcf", every_kind())
    sites.encode_sites(text, indexed, tmp_path / "ours.vcz", SETTINGS)
    ours = zarr.open_group(tmp_path / "ours.vcz", mode="r")
    assert ours["variant_AC"].shape == (120, 3) and ours["variant_DB"].dtype == bool
    assert_equal_stores(ours, bio2zarrs(indexed, tmp_path))


@pytest.mark.parametrize(
    "name", ["sample.vcf.gz", "1kg_2020_chrM.vcf.gz", "sample_no_genotypes.vcf.gz"]
)
def test_the_sample_files_sites_equal_bio2zarrs(tmp_path, name):
    text, indexed = sites_of(GENOTYPES / name, tmp_path)
    sites.encode_sites(text, indexed, tmp_path / "ours.vcz", SETTINGS)
    assert_equal_stores(
        zarr.open_group(tmp_path / "ours.vcz", mode="r"), bio2zarrs(indexed, tmp_path)
    )


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("1\t10\t.\tA\tG\t.\t.\tXX=1", "undeclared"),
        ("1\t10\t.\tA\t<DEL>\t.\t.\t.", "symbolic"),
        ("1\t10\t.\tA\tG\t.\t.\tEND=40", "length"),
        ("1\t10\t.\tA\tG\t.\tLowQual\t.", "filter LowQual"),
        ("1\t10\t.\tA\tG\t.\t.\tTAGS=a,b", "TAGS holds a list"),
        ("1\t10\t.\tA\tG\t.\t.\tDP=1.5", "not an integer"),
        ("1\t10\t.\tA\tG\t.\t.\tDB=1", "Flag DB has a value"),
        ("1\t10\t.\tA\tG\tnan\t.\t.", "NaN"),
    ],
)
def test_what_htslib_would_read_otherwise_is_unparsed(tmp_path, line, why):
    extra = [
        '##INFO=<ID=END,Number=1,Type=Integer,Description="End">',
        '##INFO=<ID=TAGS,Number=1,Type=String,Description="One string">',
    ]
    text, indexed = write_sites(tmp_path / "sites.vcf", [line], extra)
    with pytest.raises(sites.Unparsed, match=why):
        sites.encode_sites(text, indexed, tmp_path / "ours.vcz", SETTINGS)
    assert not (tmp_path / "ours.vcz").exists()


def test_a_number_g_field_is_unparsed(tmp_path):
    extra = ['##INFO=<ID=GL,Number=G,Type=Float,Description="Per genotype">']
    text, indexed = write_sites(tmp_path / "sites.vcf", ["1\t10\t.\tA\tG\t.\t.\t."], extra)
    with pytest.raises(sites.Unparsed, match="Number=G"):
        sites.encode_sites(text, indexed, tmp_path / "ours.vcz", SETTINGS)
