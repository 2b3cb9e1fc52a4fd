"""Genotype ingest and QC: Enclave (`ingest genotypes`, then sgkit on the VCF Zarr store)
against plink2 and bcftools on the bgzipped VCF, side by side in one run, each with its time
and peak memory.

The cohort is synthetic, written once and kept in a cache folder (`--cache`; reruns of the
same size reuse it): biallelic sites on three autosomes, FORMAT GT:DP:GQ, minor allele
frequencies drawn from Beta(0.4, 4), genotypes in Hardy-Weinberg proportions, a few percent of
calls missing (`./.`, more for some samples than others), read depths around 20 to 40 per
sample; bgzipped by `bgzip -@2` and indexed (.csi).

- ingest: `enclave dataset ingest genotypes` as a command (2 workers, the default memory
  limit): genotypes (samples x variants) per second, and the time in each phase;
- QC: per-variant allele frequency, call rate and Hardy-Weinberg exact p-value, per-sample call
  rate and heterozygosity. Enclave: `open_genotypes`, then `enclave.genotype_stats` (sgkit's
  `variant_stats` and `sample_stats`, the same variables, in one pass) and sgkit's
  `hardy_weinberg_test` (given the genotype counts) computed together by dask's threaded
  scheduler on 2 threads, written to Parquet; sgkit's own `variant_stats` and `sample_stats` in
  its place are timed too (imports done and the numba functions compiled beforehand; the
  compiling, which sgkit repeats in every fresh process, is printed apart). plink2: `--vcf`
  with `--freq --missing --hardy --het`, its VCF import included. bcftools: `+fill-tags` (AF,
  F_MISSING, HWE) into `query`, then `stats -s -`. Run as root, the bench installs the Debian
  packages plink2, bcftools and tabix where missing.

Each runs once, as a command of its own (Enclave's QC in a child process of this script).
Peak memory is the largest total resident memory of the command's processes, sampled every
0.1 s (and no less than any one process's own high-water mark); pages that processes share
count in each. The three tools' figures are checked against each other before the ratios.

    .venv/bin/python bench/genotypes_qc.py [--samples 5000] [--variants 100000]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from measure import folder_bytes, main_or_child, report, run_measured

CONTIGS = {"chr20": 64_444_167, "chr21": 46_709_983, "chr22": 50_818_468}
GENOTYPES = ("0/0", "0/1", "1/1")
MISSING_ENTRY = b"./.:.:."
ENTRIES_PER_BLOCK = 5_000_000  # genotypes formatted at once while writing the VCF
DATASET, OBJECT = "bench", "cohort"
WORKERS = 2
TOOLS = {"plink2": "plink2", "bcftools": "bcftools", "bgzip": "tabix", "tabix": "tabix"}
# The ingest's phases, each marked by what it leaves in the staging folder: the one-pass
# converter's (`direct`) finding the lines, then parsing the calls and converting the sites
# side by side.
PHASES = {"lines": "*/work/direct", "calls and sites": "*/work/direct/calls.vcz"}


def ensure_tools() -> None:
    """Install the Debian packages of the tools this compares against, where missing."""
    missing = sorted({package for tool, package in TOOLS.items() if not shutil.which(tool)})
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"needs the Debian packages {' '.join(missing)} (apt-get install)")
    print(f"Installing Debian packages: {' '.join(missing)}", flush=True)
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=environment)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
        check=True,
        env=environment,
    )


def _entry_table() -> tuple[np.ndarray, np.ndarray]:
    """Every `GT:DP:GQ\\t` entry (code gt * 10,000 + dp * 100 + gq; the missing call last) as
    zero-padded bytes, and the same ending in a newline for a line's last sample."""
    texts = [
        f"{gt}:{dp}:{gq}".encode() for gt in GENOTYPES for dp in range(100) for gq in range(100)
    ]
    texts.append(MISSING_ENTRY)
    width = max(map(len, texts)) + 1
    tabbed = np.array([t + b"\t" for t in texts], dtype=f"S{width}")
    ended = np.array([t + b"\n" for t in texts], dtype=f"S{width}")
    return tabbed.view(np.uint8).reshape(-1, width), ended.view(np.uint8).reshape(-1, width)


def _header(samples: list[str]) -> bytes:
    lines = [
        "##fileformat=VCFv4.2",
        "##source=synthetic",
        *(f"##contig=<ID={name},length={length}>" for name, length in CONTIGS.items()),
        '##FILTER=<ID=PASS,Description="All filters passed">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">',
        '##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Genotype quality">',
        "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT"])
        + "\t"
        + "\t".join(samples),
    ]
    return ("\n".join(lines) + "\n").encode()


def write_cohort(path: Path, samples: int, variants: int, seed: int = 26) -> None:
    """The synthetic cohort as a bgzipped, indexed VCF at `path`, written a block of variants
    at a time."""
    rng = np.random.default_rng(seed)
    missing_factor = rng.gamma(4.0, 0.25, samples).astype(np.float32)  # mean 1
    depth = rng.uniform(20, 40, samples)
    per_contig = np.diff(np.linspace(0, variants, len(CONTIGS) + 1).astype(int))
    contig = np.repeat(np.arange(len(CONTIGS)), per_contig)
    position = np.concatenate(
        [
            np.sort(rng.choice(length, count, replace=False)) + 1
            for length, count in zip(CONTIGS.values(), per_contig, strict=True)
        ]
    )
    ref = rng.integers(0, 4, variants)
    alt = (ref + rng.integers(1, 4, variants)) % 4
    maf = np.clip(rng.beta(0.4, 4.0, variants), 0.5 / samples, 0.5).astype(np.float32)
    missing_rate = rng.beta(2.0, 60.0, variants).astype(np.float32)
    tabbed, ended = _entry_table()
    names, bases = list(CONTIGS), "ACGT"
    block = max(1, ENTRIES_PER_BLOCK // samples)
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as out:
        bgzip = subprocess.Popen(["bgzip", "-@2", "-c"], stdin=subprocess.PIPE, stdout=out)
        bgzip.stdin.write(_header([f"S{i:05d}" for i in range(samples)]))
        for start in range(0, variants, block):
            rows = slice(start, min(start + block, variants))
            shape = (rows.stop - rows.start, samples)
            p = maf[rows, None]
            gt = (rng.random(shape, np.float32) < p).astype(np.int32)
            gt += rng.random(shape, np.float32) < p
            dp = np.minimum(rng.poisson(depth, shape), 99)
            gq = np.clip(np.rint(rng.normal(3.0 * dp - 5, 12.0)), 0, 99).astype(np.int32)
            code = gt * 10_000 + dp * 100 + gq
            missing = rng.random(shape, np.float32) < missing_rate[rows, None] * missing_factor
            code[missing] = len(tabbed) - 1
            prefixes = np.array(
                [
                    f"{names[c]}\t{pos}\t.\t{bases[r]}\t{bases[a]}\t.\tPASS\t.\tGT:DP:GQ\t"
                    for c, pos, r, a in zip(
                        contig[rows], position[rows], ref[rows], alt[rows], strict=True
                    )
                ],
                dtype="S64",
            )
            entries = tabbed[code]
            entries[:, -1] = ended[code[:, -1]]
            lines = np.concatenate(
                [prefixes.view(np.uint8).reshape(shape[0], -1), entries.reshape(shape[0], -1)],
                axis=1,
            ).ravel()
            bgzip.stdin.write(lines[lines != 0].tobytes())
        bgzip.stdin.close()
        if bgzip.wait() != 0:
            raise RuntimeError("bgzip failed")
    subprocess.run(["tabix", "--csi", "-p", "vcf", str(partial)], check=True)
    partial.with_name(partial.name + ".csi").rename(path.with_name(path.name + ".csi"))
    partial.rename(path)


def cohort(cache: Path, samples: int, variants: int) -> Path:
    """The cached cohort of this size, written first if missing."""
    path = cache / f"cohort-{samples}x{variants}.vcf.gz"
    if not (path.exists() and path.with_name(path.name + ".csi").exists()):
        cache.mkdir(parents=True, exist_ok=True)
        print(f"Writing the synthetic cohort to {path}...", flush=True)
        began = time.perf_counter()
        write_cohort(path, samples, variants)
        print(f"  written in {time.perf_counter() - began:.0f} s", flush=True)
    return path


def ingest(source: Path, root: Path, key: Path) -> dict:
    """`enclave dataset ingest genotypes`: seconds, peak memory and when each phase began."""
    enclave = Path(sys.executable).with_name("enclave")
    command = [str(enclave), "dataset", "ingest", "genotypes", str(source), "--dataset"]
    command += [DATASET, "--object", OBJECT, "--data-root", str(root), "--key-file", str(key)]
    command += ["--workers", str(WORKERS), "--no-progress"]
    staging = root / DATASET
    marks: dict[str, float] = {}

    def watch(elapsed: float) -> None:
        """Mark the phases by what the staging folder holds."""
        seen = {phase: any(staging.glob(pattern)) for phase, pattern in PHASES.items()}
        seen["checksum and registration"] = bool(marks) and not any(staging.glob("*/work"))
        for phase, present in seen.items():
            if present and phase not in marks:
                marks[phase] = elapsed

    seconds, peak = run_measured(command, watch=watch, stdout=subprocess.DEVNULL)
    return {"seconds": seconds, "peak": peak, "marks": marks}


def sgkit_stats(ds):
    """sgkit's own per-variant and per-sample statistics."""
    import sgkit

    return sgkit.sample_stats(sgkit.variant_stats(ds))


def qc_tables(ds, stats):
    """Per-variant and per-sample QC of `ds`, its statistics by `stats` and sgkit's
    Hardy-Weinberg test, computed in one pass of dask's threaded scheduler: two tables."""
    import dask
    import pandas as pd
    import sgkit
    import xarray as xr

    ds = stats(ds)
    # The genotype counts the statistics made, so that hardy_weinberg_test does not count them
    # again in a pass of its own (its `genotype_count` variable, documented by sgkit).
    counts = [ds.variant_n_hom_ref, ds.variant_n_het, ds.variant_n_hom_alt]
    ds["variant_genotype_count"] = xr.concat(counts, dim="genotypes").T.assign_coords(
        genotypes=["0/0", "0/1", "1/1"]
    )
    ds = sgkit.hardy_weinberg_test(ds, alleles=2)
    with dask.config.set(scheduler="threads", num_workers=WORKERS):
        frequency, call_rate, hwe, sample_rate, het, called = dask.compute(
            ds.variant_allele_frequency.data[:, 1],
            ds.variant_call_rate.data,
            ds.variant_hwe_p_value.data,
            ds.sample_call_rate.data,
            ds.sample_n_het.data,
            ds.sample_n_called.data,
        )
    variants = {"allele_frequency": frequency, "call_rate": call_rate, "hwe_p": hwe}
    samples = {"call_rate": sample_rate, "n_het": het, "heterozygosity": het / called}
    return pd.DataFrame(variants), pd.DataFrame(samples)


def child(root: str, out: str) -> None:
    """Enclave's QC in this process, warm (the numba functions compiled on the first 100
    variants beforehand, which sgkit does again in every fresh process); then the same with
    sgkit's own statistics: seconds of each."""
    import enclave

    def genotypes():
        return enclave.open_genotypes(f"{DATASET}/{OBJECT}", root=Path(root))

    began = time.perf_counter()
    for stats in (enclave.genotype_stats, sgkit_stats):
        qc_tables(genotypes().isel(variants=slice(0, 100)), stats)
    compiling = time.perf_counter() - began
    began = time.perf_counter()
    variants, samples = qc_tables(genotypes(), enclave.genotype_stats)
    variants.to_parquet(Path(out) / "variants.parquet")
    samples.to_parquet(Path(out) / "samples.parquet")
    seconds = time.perf_counter() - began
    began = time.perf_counter()
    qc_tables(genotypes(), sgkit_stats)
    sgkit_seconds = time.perf_counter() - began
    report({"seconds": seconds, "sgkit_seconds": sgkit_seconds, "compiling": compiling})


def enclave_qc(root: Path, out: Path) -> dict:
    """Enclave's QC in a child of this script: its seconds (imports left out), peak, results."""
    import pandas as pd

    out.mkdir()
    log = out / "report.json"
    with log.open("w") as stdout:
        _, peak = run_measured(
            [sys.executable, str(Path(__file__).resolve()), "--child", str(root), str(out)],
            stdout=stdout,
        )
    result = json.loads(log.read_text().splitlines()[-1])
    return {
        "seconds": result["seconds"],
        "sgkit_seconds": result["sgkit_seconds"],
        "compiling": result["compiling"],
        "peak": peak,
        "variants": pd.read_parquet(out / "variants.parquet"),
        "samples": pd.read_parquet(out / "samples.parquet"),
    }


def plink2_qc(vcf: Path, out: Path) -> dict:
    """plink2 from the VCF, its import included."""
    import pandas as pd

    out.mkdir()
    prefix = out / "qc"
    command = ["plink2", "--vcf", str(vcf), "--freq", "--missing", "--hardy", "--het"]
    seconds, peak = run_measured(
        [*command, "--out", str(prefix)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    read = {s: pd.read_csv(f"{prefix}.{s}", sep="\t") for s in ("afreq", "vmiss", "hardy")}
    samples = {s: pd.read_csv(f"{prefix}.{s}", sep="\t") for s in ("smiss", "het")}
    return {"seconds": seconds, "peak": peak, "variants": read, "samples": samples}


def bcftools_qc(vcf: Path, out: Path) -> dict:
    """bcftools: fill-tags into query for the variants, then stats for the samples."""
    import pandas as pd

    out.mkdir()
    variants, stats = out / "variants.tsv", out / "stats.txt"
    fill = f"bcftools +fill-tags {vcf} -Ou -- -t AF,F_MISSING,HWE"
    query = r"bcftools query -f '%INFO/AF\t%INFO/F_MISSING\t%INFO/HWE\n'"
    tags_seconds, tags_peak = run_measured(f"{fill} | {query} > {variants}")
    stats_seconds, stats_peak = run_measured(f"bcftools stats -s - {vcf} > {stats}")
    per_variant = pd.read_csv(variants, sep="\t", names=["AF", "F_MISSING", "HWE"])
    with stats.open() as lines:
        rows = [line.rstrip("\n").split("\t") for line in lines if line.startswith("PSC\t")]
    per_sample = pd.DataFrame(
        [(r[2], int(r[5]), int(r[13])) for r in rows], columns=["sample", "nHets", "nMissing"]
    )
    return {
        "seconds": tags_seconds + stats_seconds,
        "peak": max(tags_peak, stats_peak),
        "parts": {"+fill-tags | query": tags_seconds, "stats -s -": stats_seconds},
        "variants": per_variant,
        "samples": per_sample,
    }


def _largest_difference(ours, theirs, relative: bool = False) -> float:
    """The largest difference between two columns where both have a value (inf when one has
    a value where the other has none)."""
    ours, theirs = np.asarray(ours, float), np.asarray(theirs, float)
    if not np.array_equal(np.isnan(ours), np.isnan(theirs)):
        return np.inf
    both = ~np.isnan(ours)
    difference = np.abs(ours[both] - theirs[both])
    if relative:
        difference /= np.maximum(np.abs(ours[both]), np.finfo(float).tiny)
    return float(difference.max(initial=0))


def agreement(enclave: dict, plink2: dict, bcftools: dict, variants: int) -> list[tuple]:
    """(figure, largest difference from plink2's, from bcftools', tolerance) for each figure."""
    ours, samples = enclave["variants"], enclave["samples"]
    theirs, by_sample = plink2["variants"], plink2["samples"]
    other, other_samples = bcftools["variants"], bcftools["samples"]
    plink2_hets = by_sample["het"]["OBS_CT"] - by_sample["het"]["O(HOM)"]
    return [
        (
            "allele frequency",
            _largest_difference(ours.allele_frequency, theirs["afreq"].ALT_FREQS),
            _largest_difference(ours.allele_frequency, other.AF),
            1e-6,
        ),
        (
            "variant call rate",
            _largest_difference(ours.call_rate, 1 - theirs["vmiss"].F_MISS),
            _largest_difference(ours.call_rate, 1 - other.F_MISSING),
            1e-6,
        ),
        (
            "HWE p-value (relative)",
            _largest_difference(ours.hwe_p, theirs["hardy"].P, relative=True),
            _largest_difference(ours.hwe_p, other.HWE, relative=True),
            1e-5,
        ),
        (
            "sample call rate",
            _largest_difference(samples.call_rate, 1 - by_sample["smiss"].F_MISS),
            _largest_difference(samples.call_rate, 1 - other_samples.nMissing / variants),
            1e-6,
        ),
        (
            "heterozygous calls per sample",
            _largest_difference(samples.n_het, plink2_hets),
            _largest_difference(samples.n_het, other_samples.nHets),
            0,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=5_000)
    parser.add_argument("--variants", type=int, default=100_000)
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("BENCH_DIR", tempfile.gettempdir()))
        / "enclave-bench-genotypes",
        help="where the synthetic VCF is kept between runs",
    )
    args = parser.parse_args()
    ensure_tools()
    vcf = cohort(args.cache, args.samples, args.variants)
    genotypes = args.samples * args.variants
    print(
        f"Cohort: {args.samples:,} samples x {args.variants:,} variants ({genotypes:,} "
        f"genotypes, GT:DP:GQ), VCF {folder_bytes(vcf) / 2**20:,.0f} MiB bgzipped\n",
        flush=True,
    )
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as scratch:
        scratch = Path(scratch)
        root = scratch / "data"
        done = ingest(vcf, root, scratch / "key")
        store = root / DATASET / f"{OBJECT}.vcz"
        print(
            f"Enclave ingest ({WORKERS} workers): {genotypes / done['seconds'] / 1e6:.1f} million "
            f"genotypes/s ({done['seconds']:.1f} s), peak {done['peak'] / 2**30:.2f} GiB, "
            f"store {folder_bytes(store) / 2**20:,.0f} MiB"
        )
        marks = {"start-up and checks": 0.0, **done["marks"], "end": done["seconds"]}
        phases = [
            f"{phase} {marks[after] - marks[phase]:.1f} s"
            for phase, after in itertools.pairwise(marks)
        ]
        print(f"  phases: {', '.join(phases)}\n", flush=True)
        results = {}
        for name, run, source in (
            ("Enclave", enclave_qc, root),
            ("plink2", plink2_qc, vcf),
            ("bcftools", bcftools_qc, vcf),
        ):
            results[name] = run(source, scratch / name)
        print(f"{'QC':<10} {'seconds':>8} {'peak MiB':>9} {'time / Enclave':>15}")
        for name, result in results.items():
            ratio = result["seconds"] / results["Enclave"]["seconds"]
            print(
                f"{name:<10} {result['seconds']:>8.1f} {result['peak'] / 2**20:>9,.0f} "
                f"{ratio:>14.2f}x"
            )
        ours = results["Enclave"]
        print(
            f"  Enclave with sgkit's own variant_stats and sample_stats: "
            f"{ours['sgkit_seconds']:.1f} s (plink2 / it "
            f"{results['plink2']['seconds'] / ours['sgkit_seconds']:.2f}x)"
        )
        print(
            f"  Enclave, warm: the numba functions, which sgkit compiles in every fresh process "
            f"({ours['compiling']:.1f} s here for both, before the timing)"
        )
        for part, seconds in results["bcftools"]["parts"].items():
            print(f"  bcftools {part}: {seconds:.1f} s")
        print(f"\n{'agreement (largest difference)':<32} {'plink2':>10} {'bcftools':>10}  within")
        for figure, plink2, bcftools, tolerance in agreement(*results.values(), args.variants):
            ok = "yes" if max(plink2, bcftools) <= tolerance else "NO"
            print(f"{figure:<32} {plink2:>10.2g} {bcftools:>10.2g}  {ok} ({tolerance:g})")


if __name__ == "__main__":
    main_or_child(main, child)
