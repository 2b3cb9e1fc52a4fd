"""The airlock's checks of genetic outputs, on real files: genotype files refused by what they
hold whatever their names (VCF plain, gzip and BGZF; BCF; PLINK; BGEN; VCF Zarr stores; the
same inside archives), and GWAS summary statistics held to a minimum minor allele count and
sample size, in bounded memory however long, also in the checks' own process."""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pysam
import pytest
from bio2zarr import vcf as vcf2zarr
from test_airlock_checks import messages, report, reports, rules_of, zip_of

from enclave_hub.airlock.checks import Rules
from enclave_hub.airlock.checks.files import OUTPUT, SUPPORTING
from enclave_hub.airlock.checks.runner import run_checks

GENOTYPES = Path(__file__).resolve().parents[2] / "shared" / "data" / "genotypes"
VCF = (
    "##fileformat=VCFv4.2\n"
    "##contig=<ID=1,length=10000>\n"
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\tS2\n"
    "1\t100\trs1\tA\tG\t.\tPASS\t.\tGT\t0/1\t1/1\n"
    "1\t200\trs2\tC\tT\t.\tPASS\t.\tGT\t0/0\t0/1\n"
)
REFUSED = "(individual-level genotypes) is refused"
RULES = Rules()


def refused_as(found: dict, what: str) -> bool:
    """Does the report fail the file with the refusal of `what` (a VCF, a BCF...)?"""
    failed = [f["message"] for f in found["findings"] if f["outcome"] == "fail"]
    return found["outcome"] == "fail" and any(m.startswith(f"{what} {REFUSED}") for m in failed)


def bgzf(tmp_path: Path, text: str) -> bytes:
    plain, packed = tmp_path / "plain.vcf", tmp_path / "packed.vcf.gz"
    plain.write_text(text)
    pysam.tabix_compress(str(plain), str(packed), force=True)
    return packed.read_bytes()


def zipped_folder(folder: Path) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            archive.write(path, path.relative_to(folder.parent).as_posix())
    return out.getvalue()


@pytest.fixture(scope="module", params=[2, 3], ids=["zarr-v2", "zarr-v3"])
def vcf_zarr(request, tmp_path_factory) -> Path:
    """sample.vcf.gz as a VCF Zarr store in either Zarr format."""
    store = tmp_path_factory.mktemp(f"vcz{request.param}") / "sample.vcz"
    vcf2zarr.convert(
        [GENOTYPES / "sample.vcf.gz"],
        store,
        worker_processes=0,
        show_progress=False,
        zarr_format=request.param,
    )
    return store


# -- genotype files --------------------------------------------------------------------------


def test_a_vcf_is_refused_whatever_its_name_or_compression(tmp_path):
    for name, content in [
        ("calls.txt", VCF),
        ("calls.csv", gzip.compress(VCF.encode())),
        ("notes.dat", bgzf(tmp_path, VCF)),
        ("summary.txt", (GENOTYPES / "sample.vcf.gz").read_bytes()),
        ("chrM.md", (GENOTYPES / "1kg_2020_chrM.vcf.gz").read_bytes()),
    ]:
        found = report(tmp_path, name, content)
        assert found["kind"] == "vcf" and refused_as(found, "a VCF"), (name, found)


def test_a_bcf_is_refused_compressed_or_not(tmp_path):
    bcf = (GENOTYPES / "sample.bcf").read_bytes()
    for name, content in [("results.dat", bcf), ("table.csv", gzip.decompress(bcf))]:
        found = report(tmp_path, name, content)
        assert found["kind"] == "bcf" and refused_as(found, "a BCF"), (name, found)


def test_plink_bgen_and_pgen_files_are_refused_by_their_magic_numbers(tmp_path):
    bed = (GENOTYPES / "plink" / "example.bed").read_bytes()
    for name in ("example.bed", "figure.png"):
        assert refused_as(report(tmp_path, name, bed), "a PLINK 1 .bed")
    # No writer of these is installed: headers laid out as their specifications say.
    bgen = struct.pack("<IIII", 20, 20, 3, 2) + b"bgen" + struct.pack("<I", 0b1001) + bytes(32)
    assert refused_as(report(tmp_path, "scores.csv", bgen), "a BGEN file")
    for mode in (0x02, 0x10, 0x11):
        pgen = b"\x6c\x1b" + bytes([mode]) + struct.pack("<II", 3, 2) + bytes(32)
        assert refused_as(report(tmp_path, "out.pgen", pgen), "a PLINK 2 .pgen")


def test_genotype_files_are_refused_as_supporting_files_too(tmp_path):
    found = report(tmp_path, "evidence.txt", VCF, SUPPORTING)
    assert refused_as(found, "a VCF")


def test_text_that_mentions_genotype_formats_and_text_bed_files_are_not_genotypes(tmp_path):
    for text in ("# fileformat=VCF is what we read\n", "notes about the bgen files we read\n"):
        notes = report(tmp_path, "notes.txt", text)
        assert notes["kind"] == "text" and notes["outcome"] == "flag", text
    regions = report(tmp_path, "peaks.bed", "chr1\t100\t200\tpeak1\n")
    assert regions["kind"] == "unknown" and regions["outcome"] == "flag"


# -- inside archives -------------------------------------------------------------------------


def test_a_vcf_inside_a_zip_or_tar_is_refused(tmp_path):
    members = {
        "out/calls.txt": VCF.encode(),
        "out/calls.vcf.gz": bgzf(tmp_path, VCF),
        "out/by_site.csv": b"site,n\nleeds,12\n",
    }
    found = report(tmp_path, "results.zip", zip_of(members))
    failed = [f["message"] for f in found["findings"] if f["outcome"] == "fail"]
    assert found["outcome"] == "fail" and len(failed) == 2, found
    assert all(m.split(": ", 1)[1].startswith(f"a VCF {REFUSED}") for m in failed), failed
    assert "3 member(s) expanded safely" in messages(found)
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w:gz") as archive:
        info = tarfile.TarInfo("genotypes.dat")
        info.size = len(members["out/calls.vcf.gz"])
        archive.addfile(info, io.BytesIO(members["out/calls.vcf.gz"]))
    found = report(tmp_path, "results.tar.gz", tar.getvalue())
    assert found["outcome"] == "fail" and f"genotypes.dat: a VCF {REFUSED}" in messages(found)


def test_a_zipped_vcf_zarr_store_is_refused(tmp_path, vcf_zarr):
    found = report(tmp_path, "sample.vcz.zip", zipped_folder(vcf_zarr))
    assert found["kind"] == "archive" and refused_as(found, "a VCF Zarr store"), found
    assert "sample.vcz/" in messages(found) and "is its metadata" in messages(found)


def test_a_zarr_store_is_known_by_its_genotype_array_alone(tmp_path, vcf_zarr):
    # Only the genotypes, zipped from inside the store: no group attributes to say VCF Zarr.
    found = report(tmp_path, "calls.zip", zipped_folder(vcf_zarr / "call_genotype"))
    assert refused_as(found, "a VCF Zarr store"), found
    assert "call_genotype/" in messages(found)


def test_a_zarr_store_of_other_arrays_is_checked_member_by_member(tmp_path, vcf_zarr):
    # The variants' positions alone: binary chunks, refused as unknown binaries, not as VCF Zarr.
    found = report(tmp_path, "positions.zip", zipped_folder(vcf_zarr / "variant_position"))
    assert "VCF Zarr" not in messages(found)
    assert "an unrecognised binary file cannot be checked" in messages(found)


# -- GWAS summary statistics -----------------------------------------------------------------


def plink2_glm(rows: int, start: int = 0) -> pd.DataFrame:
    """Variants `start`.. laid out as plink2 --glm writes them (.glm.linear), all alike."""
    index = np.arange(start, start + rows)
    return pd.DataFrame(
        {
            "#CHROM": index % 22 + 1,
            "POS": index * 10 + 1,
            "ID": [f"rs{i}" for i in index],
            "REF": "A",
            "ALT": "G",
            "A1": "G",
            "A1_FREQ": 0.25,
            "OBS_CT": 5000,
            "BETA": 0.01,
            "SE": 0.02,
            "T_STAT": 0.5,
            "P": 0.6,
        }
    )


def tsv(frame: pd.DataFrame) -> str:
    return frame.to_csv(sep="\t", index=False)


def test_summary_statistics_whose_variants_all_meet_the_minimums_pass(tmp_path):
    # 1500 variants: longer than max_table_rows, and the ID column is a variant's id, not a
    # person's; neither rule of tables of counts applies.
    found = report(tmp_path, "height.glm.tsv", tsv(plink2_glm(1500)))
    assert found["kind"] == "table" and found["outcome"] == "pass", found
    assert rules_of(found, "pass") == ["summary-statistics"]
    assert "all 1500 variant(s) have a minor allele count of at least 20" in messages(found)


def test_failing_variants_are_named_by_row_and_variant(tmp_path):
    # SAIGE's columns: the allele count is of Allele2, so its minor count is min(AC, 2N - AC).
    table = (
        "CHR,POS,MarkerID,Allele1,Allele2,AC_Allele2,AF_Allele2,N,BETA,SE,p.value\n"
        "1,100,rs1,A,G,400,0.2,1000,0.1,0.05,0.04\n"
        "1,200,rs2,C,T,4,0.002,1000,0.3,0.2,0.1\n"
        "1,300,rs3,G,A,1990,0.995,1000,0.1,0.05,0.04\n"
        "1,400,rs4,T,C,30,0.375,40,0.2,0.1,0.05\n"
        "1,500,rs5,T,C,,0.3,1000,0.2,0.1,0.05\n"
    )
    found = report(tmp_path, "saige.csv", table)
    assert found["outcome"] == "fail" and rules_of(found, "fail") == ["summary-statistics"]
    message = messages(found)
    assert "4 of 5 variant(s) have a minor allele count below 20 or a sample size below 50" in (
        message
    )
    assert (
        "row 2 rs2 (MAC 4, N 1000); row 3 rs3 (MAC 10, N 1000); row 4 rs4 (MAC 30, N 40); "
        "row 5 rs5 (MAC ?, N 1000)"
    ) in message


def test_without_ids_variants_are_named_by_chromosome_and_position(tmp_path):
    # The GWAS-SSF standard's columns, in Parquet; the allele count comes from the frequency.
    frame = pd.DataFrame(
        {
            "chromosome": ["1", "1", "X", "X"],
            "base_pair_location": [12345, 23456, 34567, 45678],
            "effect_allele_frequency": [0.3, 0.999, 0.004, 0.005],  # 0.005 x 2 x 2000 = 20
            "n": [2000, 2000, 2000, 2000],
            "beta": [0.1, 0.2, 0.3, 0.4],
            "standard_error": [0.01, 0.02, 0.03, 0.04],
            "p_value": [0.01, 0.02, 0.03, 0.04],
        }
    )
    out = io.BytesIO()
    frame.to_parquet(out)
    found = report(tmp_path, "gwas.parquet", out.getvalue())
    assert found["outcome"] == "fail"
    assert messages(found).endswith(
        "2 of 4 variant(s) have a minor allele count below 20 or a sample size below 50: "
        "row 2 1:23456 (MAC 4, N 2000); row 3 X:34567 (MAC 16, N 2000)"
    )


def test_only_the_first_twenty_failing_variants_are_named_and_all_are_counted(tmp_path):
    frame = plink2_glm(100)
    frame.loc[10:44, "A1_FREQ"] = 0.001  # 2 x 5000 x 0.001 = 10 copies
    found = report(tmp_path, "glm.tsv", tsv(frame))
    message = messages(found)
    assert "35 of 100 variant(s)" in message
    assert "row 11 rs10 (MAC 10, N 5000)" in message and "row 30 rs29 " in message
    assert "row 31 " not in message and message.endswith(" and 15 more")


def test_summary_statistics_without_a_sample_size_fail_naming_the_column(tmp_path):
    frame = plink2_glm(5).drop(columns="OBS_CT")
    found = report(tmp_path, "glm.tsv", tsv(frame))
    assert found["outcome"] == "fail" and rules_of(found, "fail") == ["summary-statistics"]
    assert "without a sample size column (one of N, N_TOTAL, OBS_CT)" in messages(found)
    frame = plink2_glm(5).drop(columns="A1_FREQ")
    found = report(tmp_path, "glm.tsv", tsv(frame))
    assert "without an allele count or frequency column (one of A1FREQ, A1_CT" in messages(found)


def test_identifier_columns_still_fail_in_summary_statistics(tmp_path):
    frame = plink2_glm(5).assign(participant_id="P1")
    found = report(tmp_path, "glm.tsv", tsv(frame))
    assert rules_of(found, "fail") == ["identifiers"] and "participant_id" in messages(found)


def test_ordinary_tables_keep_their_own_rules(tmp_path):
    # Counts with a p-value but no variant are not summary statistics.
    table = "site,n,beta,se,p\nleeds,12,0.1,0.1,0.5\nyork,9,0,1,1\n"
    found = report(tmp_path, "by_site.csv", table)
    assert rules_of(found, "fail") == ["minimum-cell-count"]


def test_millions_of_variants_are_checked_in_bounded_memory(tmp_path):
    """3 million variants in Parquet, row group by row group, in a process allowed 1.5 GiB of
    address space: read whole, the table does not fit in it."""
    table = tmp_path / "snapshot"
    schema = pa.Schema.from_pandas(plink2_glm(1), preserve_index=False)
    with pq.ParquetWriter(table, schema) as out:
        for start in range(0, 3_000_000, 500_000):
            frame = plink2_glm(500_000, start)
            if start == 2_500_000:
                frame.loc[499_999, "OBS_CT"] = 20
            out.write_table(pa.Table.from_pandas(frame, preserve_index=False))
    found = run_checks([("gwas.parquet", table, OUTPUT)], RULES, timeout=60, memory=3 * 2**29)
    assert found[0]["outcome"] == "fail", found
    assert found[0]["findings"][-1]["message"].endswith(
        "1 of 3000000 variant(s) have a minor allele count below 20 or a sample size below 50: "
        "row 3000000 rs2999999 (MAC 10, N 20)"
    )


# -- in the checks' own process --------------------------------------------------------------


def test_the_checks_process_refuses_a_vcf_and_passes_summary_statistics(tmp_path):
    vcf, table = tmp_path / "snapshot-1", tmp_path / "snapshot-2"
    vcf.write_bytes(bgzf(tmp_path, VCF))
    table.write_text(tsv(plink2_glm(2000)))
    found = run_checks(
        [("results/variants.txt", vcf, OUTPUT), ("results/height.tsv", table, OUTPUT)],
        RULES,
        timeout=60,
        memory=4 * 1024**3,
    )
    assert found[0]["kind"] == "vcf" and refused_as(found[0], "a VCF"), found[0]
    assert found[1]["outcome"] == "pass", found[1]
    assert "all 2000 variant(s)" in found[1]["findings"][0]["message"]


def test_sites_that_configure_other_minimums_get_them(tmp_path):
    strict = Rules(min_allele_count=2000, min_sample_size=10_000)
    found = reports(tmp_path, [("glm.tsv", tsv(plink2_glm(3)), OUTPUT)], strict)[0]
    assert (
        "3 of 3 variant(s) have a minor allele count below 2000 or a sample size below 10000"
        in (messages(found))
    )
