"""`enclave dataset ingest genotypes`: VCF or BCF files (one per chromosome, say, sharing their
samples) or a PLINK 1.9 fileset, checked (`sources`), de-identified (`deid`) and converted to
one VCF Zarr object.

Text VCFs whose FORMAT fields are GT and single numbers are converted by `direct` in one pass
over their text, given the pseudonyms and the kept header lines. Any other VCF or BCF goes
through bio2zarr's intermediate columnar format in a work folder inside the staging folder:
its sample list and header are replaced there by the pseudonyms and the kept lines. Either
way nothing of the source's names reaches the store, and the work folder goes before the
store is registered. Conversion runs in worker processes, each partition of the input and
each chunk of the output bounded, so memory stays bounded whatever the input's size.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Callable
from functools import partial
from importlib import metadata
from pathlib import Path

import numcodecs
import zarr

from ..catalog import CatalogError
from ..persons import SourceManifest
from ..registration import FAILED, DatasetWriter, Outcome, first_line, memory_limit_bytes
from . import direct
from .deid import kept_header, policy, sample_pseudonyms
from .sources import GenotypeSources, bgzipped, checked_sources, prepared

STORE_SUFFIX = ".vcz"
# Chunks square enough for per-variant work (allele frequencies, association) and
# per-sample work (call rates, PCA loadings) alike: 10,000 variants by 1,000 samples.
VARIANTS_PER_CHUNK = 10_000
# Sources smaller than this bio2zarr converts in this process: starting worker processes would
# cost more than they save, and bio2zarr shuts its pools down without waiting, so that a worker
# still starting when a small conversion ends fails on the pool's freed progress counter.
IN_PROCESS_BYTES = 64 * 1024**2
SAMPLES_PER_CHUNK = 1_000
TOOLS = ("enclave", "bio2zarr", "cyvcf2", "zarr")
DIRECT = "enclave (one pass over the text; sites by bio2zarr)"


def ingest_genotypes(
    sources: list[Path],
    dataset_id: str,
    data_root: Path,
    key: bytes,
    object_id: str | None = None,
    show_progress: bool = True,
    report: Callable[[str], object] = print,
    workers: int | None = None,
    memory_limit: str = "2GB",
    manifest: SourceManifest | None = None,
) -> list[Outcome]:
    """Check, de-identify and register `sources` as one VCF Zarr object, converted by
    `workers` processes (default: one per core) in about `memory_limit` of memory; a
    `manifest` gives each sample its patient id."""
    label = str(sources[0]) if len(sources) == 1 else f"{sources[0]} and {len(sources) - 1} more"
    writer = DatasetWriter(data_root, dataset_id, kind="genotypes")
    try:
        memory = memory_limit_bytes(memory_limit)
        checked = checked_sources(sources)
        pseudonyms = sample_pseudonyms(list(checked.samples), key, manifest)
        object_id = object_id or checked.default_object_id
        if writer.has(object_id):
            raise CatalogError(f"dataset {dataset_id!r} already has {object_id!r}")
        with writer.staging(object_id) as staging:
            work, store = staging / "work", staging / "store"
            work.mkdir()
            convert = (
                _convert_plink if checked.kind == "plink" else partial(_convert_vcf, memory=memory)
            )
            settings = {
                "worker_processes": workers or len(os.sched_getaffinity(0)),
                "variants_chunk_size": VARIANTS_PER_CHUNK,
                "samples_chunk_size": SAMPLES_PER_CHUNK,
                "show_progress": show_progress,
            }
            dropped, converter = convert(checked, work, store, pseudonyms, settings)
            shutil.rmtree(work)
            zarr.consolidate_metadata(store)
            entry = _entry(store, checked, dropped, converter)
            persons = pseudonyms.values()
            writer.register(object_id, store, object_id + STORE_SUFFIX, entry, persons)
    except CatalogError as error:
        return _failed(label, str(error), report)
    except (OSError, ValueError, RuntimeError) as error:  # what bio2zarr and htslib raise
        return _failed(label, f"{label}: {first_line(error)}", report)
    report(
        f"ok      {label} → {dataset_id}/{object_id} ({entry['samples']} samples, "
        f"{entry['variants']} variants)"
    )
    return [Outcome(label, object_id=object_id)]


def _failed(label: str, message: str, report: Callable[[str], object]) -> list[Outcome]:
    for line in message.splitlines():
        report(f"{FAILED}{line}")
    return [Outcome(label, error=message)]


def _convert_vcf(
    sources: GenotypeSources,
    work: Path,
    store: Path,
    pseudonyms: dict[str, str],
    settings: dict,
    memory: int,
) -> tuple[Counter, str]:
    """Converted by Enclave's own parser where it reads every field (`direct`), else by
    bio2zarr; the dropped header lines, and which converted."""
    if all(not path.name.lower().endswith(".bcf") for path in sources.files):
        files = bgzipped(sources, work)
        samples = [pseudonyms[sample] for sample in sources.samples]
        header, dropped = kept_header(direct.raw_header(files[0]), samples)
        attempt = work / "direct"
        attempt.mkdir()
        try:
            direct.convert(files, samples, header, attempt, store, settings, memory)
            return dropped, DIRECT
        except direct.Declined:
            shutil.rmtree(store, ignore_errors=True)
        finally:
            shutil.rmtree(attempt)
    files = prepared(sources, work)
    return _convert_with_bio2zarr(files, work, store, pseudonyms, settings, memory), "bio2zarr"


def _convert_with_bio2zarr(
    files: list[Path],
    work: Path,
    store: Path,
    pseudonyms: dict[str, str],
    settings: dict,
    memory: int,
) -> Counter:
    from bio2zarr import vcf

    settings = _for_bio2zarr(settings, files)
    icf = work / "icf"
    vcf.explode(
        icf,
        files,
        worker_processes=settings["worker_processes"],
        show_progress=settings["show_progress"],
        compressor=numcodecs.get_codec(direct.INTERMEDIATE_CODEC),
    )
    dropped = _deidentify_icf(icf, pseudonyms)
    vcf.encode(icf, store, max_memory=memory, **settings)
    return dropped


def _for_bio2zarr(settings: dict, files: list[Path]) -> dict:
    """The settings of a bio2zarr conversion of `files`: in this process when they are small."""
    if sum(path.stat().st_size for path in files) < IN_PROCESS_BYTES:
        return {**settings, "worker_processes": 0}
    return settings


def _deidentify_icf(icf: Path, pseudonyms: dict[str, str]) -> Counter:
    """Put the pseudonyms and the kept header into the intermediate format before encoding."""
    described = icf / "metadata.json"
    icf_metadata = json.loads(described.read_text())
    samples = [pseudonyms[s["id"]] for s in icf_metadata["samples"]]
    icf_metadata["samples"] = [{"id": s} for s in samples]
    described.write_text(json.dumps(icf_metadata))
    header, dropped = kept_header((icf / "header.txt").read_text(), samples)
    (icf / "header.txt").write_text(header)
    return dropped


def _convert_plink(
    sources: GenotypeSources, work: Path, store: Path, pseudonyms: dict[str, str], settings: dict
) -> tuple[Counter, str]:
    """A copy of the fileset in `work` (links to the .bed and .bim, a .fam of pseudonyms only:
    families, parents, sex and phenotype stay behind), converted: bio2zarr's PLINK encoder
    holds one chunk per worker."""
    from bio2zarr import plink

    bed, bim, _ = sources.files
    prefix = work / "fileset"
    os.symlink(bed.resolve(), prefix.with_suffix(".bed"))
    os.symlink(bim.resolve(), prefix.with_suffix(".bim"))
    rows = (f"0\t{pseudonyms[sample]}\t0\t0\t0\t-9\n" for sample in sources.samples)
    prefix.with_suffix(".fam").write_text("".join(rows))
    plink.convert(str(prefix), store, **_for_bio2zarr(settings, [bed]))
    return Counter(), "bio2zarr"


def _entry(store: Path, sources: GenotypeSources, dropped: Counter, converter: str) -> dict:
    group = zarr.open_group(store, mode="r")
    contigs = [str(c) for c in group["contig_id"][:]]
    index = group["region_index"][:] if "region_index" in group else []
    per_contig = Counter()
    for row in index:
        per_contig[contigs[int(row[1])]] += int(row[5])
    return {
        "kind": "genotypes",
        "format": "vcf-zarr",
        "vcf_zarr_version": group.attrs.get("vcf_zarr_version"),
        "samples": int(group["sample_id"].shape[0]),
        "variants": int(group["variant_position"].shape[0]),
        "variants_by_contig": dict(per_contig),
        "fields": sorted(n for n in group.array_keys() if n.startswith(("variant_", "call_"))),
        "source_format": sources.kind,
        "source_files": [path.name for path in sources.files],
        "deidentification": policy(dropped),
        "converted_by": converter,
        "tools": {name: metadata.version(name) for name in TOOLS},
    }
