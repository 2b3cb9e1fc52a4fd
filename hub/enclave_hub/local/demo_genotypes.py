"""The demo commons' genotypes: a synthetic, bgzipped and indexed VCF whose samples are the
demo medical records' persons (their source values, so that ingest under the commons' key
gives each sample its person's pseudonym), generated with a fixed seed.

About 2,000 biallelic SNPs on two contigs, in Hardy-Weinberg proportions, with a few missing
calls, depth and genotype quality. One of them, at rs7903146's place on chromosome 10
(TCF7L2, the best-known type 2 diabetes locus), carries more of its risk allele in persons with
higher HbA1c, so the README's association test has a signal to find.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np

SEED = 26
VARIANTS_PER_CONTIG = {"10": 1200, "22": 800}
LENGTHS = {"10": 133_797_422, "22": 50_818_468}  # GRCh38
ASSOCIATED = ("10", 112_998_590, "rs7903146", "C", "T")
MISSING_SHARE = 0.005
HEADER = """##fileformat=VCFv4.2
##reference=GRCh38
##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency in the generated population">
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">
##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Genotype quality">
"""
CALLS = np.array(["0/0", "0/1", "1/1"])


def write_demo_genotypes(records: Path, folder: Path) -> Path:
    """Write `genotypes.vcf.gz` (and its index) into `folder` for the persons of the demo
    records in `records` (Parquet); the VCF's path."""
    import pysam

    persons, hba1c = _persons(records)
    rng = np.random.default_rng(SEED)
    folder.mkdir(parents=True, exist_ok=True)
    plain = folder / "genotypes.vcf"
    with plain.open("w") as out:
        out.write(HEADER)
        out.writelines(f"##contig=<ID={c},length={n}>\n" for c, n in LENGTHS.items())
        out.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(persons))
        out.write("\n")
        for contig, count in VARIANTS_PER_CONTIG.items():
            positions = rng.choice(LENGTHS[contig], count, replace=False) + 1
            if contig == ASSOCIATED[0]:
                positions[0] = ASSOCIATED[1]
            for position in np.unique(positions):
                if (contig, position) == ASSOCIATED[:2]:
                    out.write(_row(ASSOCIATED, _associated(hba1c, rng), rng))
                    continue
                reference, alternate = rng.choice(list("ACGT"), 2, replace=False)
                frequency = rng.beta(0.6, 1.4) * 0.5 + 0.01
                dosage = rng.binomial(2, frequency, len(persons))
                out.write(_row((contig, position, ".", reference, alternate), dosage, rng))
    pysam.tabix_compress(str(plain), str(plain) + ".gz", force=True)
    plain.unlink()
    pysam.tabix_index(str(folder / "genotypes.vcf.gz"), preset="vcf", csi=True, force=True)
    return folder / "genotypes.vcf.gz"


def _persons(records: Path) -> tuple[list[str], np.ndarray]:
    """Each person's source value, and their mean HbA1c (in person order)."""
    rows = (
        duckdb.connect()
        .execute(
            "SELECT p.person_source_value, avg(m.value_as_number) "
            f"FROM '{records}/person.parquet' p "
            f"LEFT JOIN '{records}/measurement.parquet' m USING (person_id) "
            "GROUP BY p.person_id, p.person_source_value ORDER BY p.person_id"
        )
        .fetchall()
    )
    return [r[0] for r in rows], np.array([r[1] or 0.0 for r in rows])


def _associated(hba1c: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Risk allele counts more likely as HbA1c rises (frequency 0.15 to 0.55 by rank)."""
    rank = hba1c.argsort().argsort() / max(len(hba1c) - 1, 1)
    return rng.binomial(2, 0.15 + 0.4 * rank)


def _row(site: tuple, dosage: np.ndarray, rng: np.random.Generator) -> str:
    contig, position, identifier, reference, alternate = site
    calls = CALLS[dosage].astype(object)
    calls[rng.random(len(dosage)) < MISSING_SHARE] = "./."
    depth = rng.poisson(30, len(dosage))
    quality = np.minimum(99, rng.poisson(60, len(dosage)))
    samples = "\t".join(f"{c}:{d}:{q}" for c, d, q in zip(calls, depth, quality, strict=True))
    frequency = dosage.mean() / 2
    return (
        f"{contig}\t{position}\t{identifier}\t{reference}\t{alternate}\t.\tPASS\t"
        f"AF={frequency:.4f}\tGT:DP:GQ\t{samples}\n"
    )
