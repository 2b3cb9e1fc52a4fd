"""Genotype ingest: VCF, BCF and PLINK sources to VCF Zarr, checked value by value against
cyvcf2 (htslib) reading the source; de-identification; refused sources."""

from __future__ import annotations

import gzip
import json
import math
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
from cyvcf2 import VCF

from enclave.catalog import CatalogError, dataset
from enclave.genotypes.ingest import ingest_genotypes
from enclave.genotypes.reading import open_genotypes
from enclave.omop.ingest import ingest_omop
from enclave.pseudonyms import Pseudonymizer

SOURCES = Path(__file__).resolve().parents[2] / "shared" / "data" / "genotypes"
KEY = b"k" * 32
# (object id, source files) of each acceptance source
OBJECTS = {
    "vcf": ["sample.vcf.gz"],
    "bcf": ["sample.bcf"],
    "chrm": ["1kg_2020_chrM.vcf.gz"],
    "sites": ["sample_no_genotypes.vcf.gz"],
    "plink": ["plink/example.bed"],
    "plink-vcf": ["plink/example.vcf"],
}
INT_MISSING, INT_FILL = -1, -2
VCF_INT_MISSING, VCF_INT_END = -(2**31), -(2**31) + 1
FLOAT_END_BITS = 0x7F800002  # past a field's values: htslib's vector end, bio2zarr's fill


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("genotypes")
    for object_id, files in OBJECTS.items():
        outcomes = ingest_genotypes(
            [SOURCES / f for f in files], "ds-g", root, KEY, object_id, show_progress=False
        )
        assert [o.error for o in outcomes] == [None], object_id
    return root


def _stored(values: np.ndarray) -> list:
    """A stored field's values for one variant (or one call) as a list, fill dropped and
    missing as None."""
    values = np.atleast_1d(values)
    if values.dtype.kind == "f":
        return _floats(values)
    if values.dtype.kind in "iu":
        return [None if v == INT_MISSING else int(v) for v in values if v != INT_FILL]
    if values.dtype.kind == "b":
        return [bool(v) for v in values]
    return [None if v == "." else str(v) for v in values if v != ""]


def _source_info(value, vcf_type: str) -> list:
    """cyvcf2's INFO value as the same kind of list."""
    if vcf_type == "Flag":
        return [value is not None]
    if value is None:
        return []
    items = list(value) if isinstance(value, tuple) else [value]
    if vcf_type == "String":
        items = [p for item in items for p in str(item).split(",")]
        return [None if v == "." else v for v in items]
    cast = float if vcf_type == "Float" else int
    return [None if v is None else cast(v) for v in items]


def _source_format(values, vcf_type: str) -> list:
    """cyvcf2's FORMAT values for one sample as the same kind of list."""
    if vcf_type == "String":
        text = values if isinstance(values, str) else str(values)
        return [None if v == "." else v for v in text.split(",")]
    if vcf_type == "Float":
        return _floats(values)
    return [None if v == VCF_INT_MISSING else int(v) for v in values if v != VCF_INT_END]


def _floats(values) -> list:
    """Floats as a list, the vector's end dropped and missing as None (htslib and bio2zarr
    mark both with the same NaN bit patterns)."""
    values = np.asarray(values, np.float32)
    ends = values.view(np.int32) == FLOAT_END_BITS
    return [None if math.isnan(v) else float(v) for v in values[~ends]]


def _close(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        x == y or (x is not None and y is not None and math.isclose(x, y, rel_tol=1e-6))
        for x, y in zip(a, b, strict=True)
    )


def _assert_equal_to_source(store, source: Path):
    reader = VCF(str(source))
    pseudonyms = Pseudonymizer(KEY)
    assert list(store["sample_id"].values) == [pseudonyms.patient(s) for s in reader.samples]
    contigs = [str(c) for c in store["contig_id"].values]
    fields = {h["ID"]: (h["HeaderType"], h["Type"]) for h in reader.header_iter()
              if h["HeaderType"] in ("INFO", "FORMAT")}  # fmt: skip
    loaded = {
        name: store[name].values
        for name in store.data_vars
        if name.startswith(("variant_", "call_"))
    }
    count = 0
    for i, record in enumerate(reader):
        count += 1
        where = f"{source.name} record {i + 1}"
        assert contigs[loaded["variant_contig"][i]] == record.CHROM, where
        assert loaded["variant_position"][i] == record.POS, where
        assert _stored(loaded["variant_allele"][i]) == [record.REF, *record.ALT], where
        assert (None if loaded["variant_id_mask"][i] else loaded["variant_id"][i]) == record.ID, (
            where
        )
        for field, (header, vcf_type) in fields.items():
            if field == "GT":
                continue
            name = ("variant_" if header == "INFO" else "call_") + field
            if header == "INFO":
                expected = _source_info(record.INFO.get(field), vcf_type)
                got = _stored(loaded[name][i])
                if vcf_type != "Flag" and all(v is None for v in got):
                    got = [] if not expected else got
                assert _close(got, expected), f"{where} INFO {field}: {got} != {expected}"
            else:
                values = record.format(field)
                for s in range(len(reader.samples)):
                    got = _stored(loaded[name][i, s])
                    expected = _source_format(values[s], vcf_type) if values is not None else []
                    if not expected:
                        assert all(v is None for v in got), f"{where} FORMAT {field} sample {s}"
                    else:
                        assert _close(got, expected), f"{where} {field}[{s}]: {got} != {expected}"
        if reader.samples:
            for s, call in enumerate(record.genotypes):
                *alleles, phased = call
                got = [int(a) for a in loaded["call_genotype"][i, s] if a != INT_FILL]
                assert got == alleles, f"{where} GT sample {s}: {got} != {alleles}"
                assert bool(loaded["call_genotype_mask"][i, s, 0]) == (alleles[0] < 0), where
                if len(alleles) > 1:
                    assert bool(loaded["call_genotype_phased"][i, s]) == bool(phased), where
    assert count == store.sizes["variants"]


@pytest.mark.parametrize(
    "object_id, source",
    [
        ("vcf", "sample.vcf.gz"),
        ("bcf", "sample.bcf"),
        ("chrm", "1kg_2020_chrM.vcf.gz"),
        ("sites", "sample_no_genotypes.vcf.gz"),
        ("plink-vcf", "plink/example.vcf"),
    ],
)
def test_every_value_equals_the_source(root, object_id, source):
    _assert_equal_to_source(open_genotypes(f"ds-g/{object_id}", root), SOURCES / source)


def test_the_plink_fileset_equals_its_vcf_twin(root):
    plink, vcf = (open_genotypes(f"ds-g/{o}", root) for o in ("plink", "plink-vcf"))
    for name in (
        "sample_id",
        "variant_position",
        "variant_contig",
        "call_genotype",
        "call_genotype_mask",
    ):
        np.testing.assert_array_equal(plink[name].values, vcf[name].values, err_msg=name)
    assert [list(map(str, a)) for a in plink["variant_allele"].values] == [
        list(map(str, a)) for a in vcf["variant_allele"].values
    ]


PLANTED_HEADER = """##fileformat=VCFv4.2
##fileDate=20240220
##reference=GRCh38
##source=/home/alice.smith/pipelines/call_variants.sh --host db7.hospital.example
##GATKCommandLine=<ID=HaplotypeCaller,CommandLine="HaplotypeCaller -I /data/{a}.bam",Date="x">
##bcftools_viewCommand=view -s {a},{b} cohort.vcf.gz; Date=Tue Feb 20 11:24:09 2024
##SAMPLE=<ID={a},Individual="Alice Smith",Description="tumour">
##PEDIGREE=<Child={b},Mother={a}>
##contig=<ID=20,length=64444167>
##INFO=<ID=DP,Number=1,Type=Integer,Description="Total Depth">
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read Depth">
#CHROM	POS	ID	REF	ALT	QUAL	FILTER	INFO	FORMAT	{a}	{b}
20	14370	rs6054257	G	A	29	PASS	DP=14	GT:DP	0|1:7	1/1:.
20	17330	.	T	A,C	3	PASS	.	GT:DP	./.:3	0/2:5
"""
DROPPED = ("/home/alice", "hospital.example", "HaplotypeCaller", "bcftools_viewCommand -s",
           "Alice Smith", "tumour", "Child=")  # fmt: skip


def _planted_vcf(folder: Path, samples: tuple[str, str]) -> Path:
    path = folder / "planted.vcf"
    path.write_text(PLANTED_HEADER.format(a=samples[0], b=samples[1]))
    return path


def _every_text_in(store: Path) -> str:
    """Every file's bytes as text, and every decoded string array's values."""
    import zarr

    texts = [p.read_bytes().decode("latin-1") for p in store.rglob("*") if p.is_file()]
    group = zarr.open_group(store, mode="r")
    for _, array in group.arrays():
        if array.dtype.kind in "OUST":
            texts += [str(v) for v in np.asarray(array[...]).ravel()]
    return "\n".join(texts)


def test_no_source_name_or_dropped_line_reaches_any_output_file(tmp_path):
    import pydicom
    from pydicom.data import get_testdata_file

    from enclave.volumes.ingest import ingest_dicom

    ct = Path(get_testdata_file("CT_small.dcm")).parent / "dicomdirtests" / "98892001" / "CT5N"
    patient = str(pydicom.dcmread(next(ct.iterdir())).PatientID)
    source = _planted_vcf(tmp_path, (patient, "HX-40917"))
    root = tmp_path / "data"
    ingest_genotypes([source], "genomes", root, KEY, show_progress=False)
    store = root / "genomes" / "planted.vcz"
    text = _every_text_in(store) + (root / "genomes" / "dataset.json").read_text()
    for name in (patient, "HX-40917", *DROPPED):
        assert name not in text, name
    genotypes = open_genotypes(store)
    assert genotypes.attrs["vcf_meta_information"] == [
        ["fileformat", "VCFv4.2"], ["fileDate", "20240220"], ["reference", "GRCh38"]
    ]  # fmt: skip
    manifest = dataset("genomes", root).manifest["objects"]["planted"]
    assert manifest["deidentification"]["header_lines_dropped"] == {
        "GATKCommandLine": 1, "PEDIGREE": 1, "SAMPLE": 1, "bcftools_viewCommand": 1, "source": 1
    }  # fmt: skip
    # The same person's pseudonym from DICOM and from OMOP under the same key.
    ingest_dicom(ct, "images", root, KEY, show_progress=False)
    (headers,) = (root / "images").glob("*/headers.json")
    dicom_id = json.loads(headers.read_text())[0]["00100020"]["Value"][0]
    records = tmp_path / "emr"
    records.mkdir()
    (records / "person.csv").write_text(
        "person_id,gender_concept_id,year_of_birth,race_concept_id,ethnicity_concept_id,"
        f"person_source_value\n1,8507,1950,0,0,{patient}\n"
    )
    assert not ingest_omop(records, "emr", root, KEY, show_progress=False)[0].error
    omop_id = (
        duckdb.connect()
        .execute(f"SELECT person_source_value FROM '{root}/emr/emr.omop/person.parquet'")
        .fetchone()[0]
    )
    assert genotypes["sample_id"].values[0] == dicom_id == omop_id


def _refusal(tmp_path: Path, sources: list[Path]) -> str:
    root = tmp_path / "refused"
    lines = []
    (outcome,) = ingest_genotypes(
        sources, "ds", root, KEY, show_progress=False, report=lines.append
    )
    assert outcome.error and outcome.object_id is None
    assert not (root / "ds").exists(), "nothing is registered"
    assert all(line.startswith("FAILED") for line in lines)
    return outcome.error


def test_a_truncated_bgzip_file_is_refused_by_name(tmp_path):
    truncated = tmp_path / "calls.vcf.gz"
    truncated.write_bytes((SOURCES / "sample.vcf.gz").read_bytes()[:-200])
    error = _refusal(tmp_path, [truncated])
    assert error == f"{truncated}: truncated (its bgzip end-of-file block is missing)"


def test_files_of_one_object_whose_samples_differ_are_refused_by_name(tmp_path):
    other = tmp_path / "chr21.vcf"
    other.write_text(gzip.decompress((SOURCES / "sample.vcf.gz").read_bytes()).decode()
                     .replace("NA00003", "NA00009"))  # fmt: skip
    error = _refusal(tmp_path, [SOURCES / "sample.vcf.gz", other])
    assert error.startswith(f"{other}: samples differ from sample.vcf.gz's")
    assert "NA0000" not in error, "the message names no sample"


def test_a_bed_without_its_fam_is_refused_by_name(tmp_path):
    for suffix in (".bed", ".bim"):
        shutil.copy(SOURCES / "plink" / f"example{suffix}", tmp_path / f"example{suffix}")
    error = _refusal(tmp_path, [tmp_path / "example.bed"])
    assert error.startswith(f"{tmp_path / 'example'}: the PLINK fileset lacks example.fam")


def test_regions_read_only_the_chunks_they_need(tmp_path):
    """A region is cut exactly, and the arrays of a one-chunk region are one chunk each."""
    source = tmp_path / "many.vcf"
    lines = PLANTED_HEADER.format(a="s1", b="s2").splitlines()[:-2]
    rows = [
        f"20\t{p}\t.\tA\tG\t.\tPASS\t.\tGT:DP\t0|1:{p % 50}\t1/1:3" for p in range(100, 250_100, 10)
    ]
    source.write_text("\n".join(lines + rows) + "\n")
    ingest_genotypes([source], "ds", tmp_path, KEY, show_progress=False)
    whole = open_genotypes(tmp_path / "ds" / "many.vcz")
    assert whole.sizes["variants"] == 25_000 and whole["call_genotype"].data.numblocks[0] == 3
    part = open_genotypes("ds/many", tmp_path, region="20:120,005-120,100")
    assert list(part["variant_position"].values) == list(range(120_010, 120_101, 10))
    assert part["call_genotype"].data.numblocks[0] == 1
    assert open_genotypes("ds/many", tmp_path, region="20:250090").sizes["variants"] == 1
    assert open_genotypes("ds/many", tmp_path, region="20:250085-").sizes["variants"] == 1
    assert open_genotypes("ds/many", tmp_path, region="20").sizes["variants"] == 25_000
    with pytest.raises(CatalogError, match="no contig 'chr20'"):
        open_genotypes("ds/many", tmp_path, region="chr20:1-5")


def test_files_of_one_chromosome_each_make_one_object_equal_to_the_whole(root, tmp_path):
    """Split by contig: a plain VCF, a bgzipped one without an index, and an unindexed BCF
    copy of the whole's contig X, converted together, equal the whole file's object."""
    import pysam

    lines = gzip.decompress((SOURCES / "sample.vcf.gz").read_bytes()).decode().splitlines()
    header = [line for line in lines if line.startswith("#")]
    records = [line for line in lines if not line.startswith("#")]
    parts = []
    for contig in ("19", "20", "X"):
        part = tmp_path / f"chr{contig}.vcf"
        part.write_text("\n".join(header + [r for r in records if r.split("\t")[0] == contig]))
        parts.append(part)
    pysam.tabix_compress(str(parts[1]), str(parts[1]) + ".gz")
    parts[1] = Path(str(parts[1]) + ".gz")
    with pysam.VariantFile(str(parts[2])) as source:
        bcf = tmp_path / "chrX.bcf"
        with pysam.VariantFile(str(bcf), "wb", header=source.header) as out:
            for record in source:
                out.write(record)
    parts[2] = bcf
    (outcome,) = ingest_genotypes(parts, "ds-split", tmp_path, KEY, "all", show_progress=False)
    assert outcome.error is None, outcome.error
    assert not list(tmp_path.glob("*.csi")) and not list(tmp_path.glob("*.tbi")), "sources kept"
    split, whole = open_genotypes("ds-split/all", tmp_path), open_genotypes("ds-g/vcf", root)
    for name in ("sample_id", "variant_position", "call_genotype", "call_DP", "variant_AF"):
        np.testing.assert_array_equal(split[name].values, whole[name].values, err_msg=name)
    assert [str(c) for c in split["contig_id"].values] == ["19", "20", "X"]
