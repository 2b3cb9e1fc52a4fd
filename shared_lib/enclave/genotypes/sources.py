"""What an ingest of genotypes is given, checked before anything is converted: VCF or BCF files
(bgzipped or plain, indexed or not) that share their samples, or one PLINK 1.9 fileset
(`.bed`, `.bim`, `.fam`). Every problem names its file; `prepared` gives the converter indexed
bgzipped copies where a source lacks them, made in a work folder, never beside the source.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..catalog import CatalogError, object_id_for
from ..registration import first_line

VCF_SUFFIXES = (".vcf.gz", ".vcf.bgz", ".vcf", ".bcf")
PLINK_SUFFIXES = (".bed", ".bim", ".fam")
INDEX_SUFFIXES = (".tbi", ".csi")
# The empty block that ends every BGZF file (SAM/BAM specification, 4.1.2).
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
GZIP_MAGIC = b"\x1f\x8b"
BED_MAGIC = b"\x6c\x1b\x01"  # PLINK 1.9 .bed, variant-major


class SourceProblems(CatalogError):
    """What is wrong with the sources of one object, every problem on a line of its own."""


@dataclass(frozen=True)
class GenotypeSources:
    """The checked sources of one object: `kind` 'vcf' (VCF or BCF files) or 'plink' (`files`
    is then the fileset's `.bed`, `.bim` and `.fam`); `samples` as the sources name them."""

    kind: str
    files: tuple[Path, ...]
    samples: tuple[str, ...]

    @property
    def default_object_id(self) -> str:
        name = self.files[0].name
        lower = name.lower()
        suffix = next(s for s in VCF_SUFFIXES + PLINK_SUFFIXES if lower.endswith(s))
        return object_id_for(name[: -len(suffix)])


def checked_sources(paths: list[Path]) -> GenotypeSources:
    """The sources of one object, checked; raises SourceProblems naming each file's problem."""
    plink = [p for p in paths if _plink_prefix(p) is not None]
    vcfs = [p for p in paths if p not in plink]
    if plink and vcfs:
        raise SourceProblems(
            f"{plink[0]} and {vcfs[0]}: a PLINK fileset and VCF files cannot make one object"
        )
    if plink:
        prefixes = {_plink_prefix(p) for p in plink}
        if len(prefixes) > 1:
            names = ", ".join(sorted(str(p) for p in prefixes))
            raise SourceProblems(f"{names}: one PLINK fileset per object")
        return _plink_sources(prefixes.pop())
    return _vcf_sources(vcfs)


def _plink_prefix(path: Path) -> Path | None:
    """The fileset a PLINK path names (by a member or by its prefix), or None."""
    if path.suffix.lower() in PLINK_SUFFIXES:
        return path.with_suffix("")
    if not path.exists() and path.with_name(path.name + ".bed").exists():
        return path
    return None


def _plink_sources(prefix: Path) -> GenotypeSources:
    files = tuple(prefix.with_name(prefix.name + s) for s in PLINK_SUFFIXES)
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise SourceProblems(
            f"{prefix}: the PLINK fileset lacks {' and '.join(missing)} (a .bed needs its .bim "
            "and .fam beside it)"
        )
    bed, bim, fam = files
    samples = tuple(_fam_samples(fam))
    variants = _count_lines(bim)
    with bed.open("rb") as stream:
        magic = stream.read(3)
    if magic != BED_MAGIC:
        raise SourceProblems(f"{bed}: not a PLINK 1.9 variant-major .bed (its first bytes)")
    expected = 3 + variants * ((len(samples) + 3) // 4)
    size = bed.stat().st_size
    if size != expected:
        raise SourceProblems(
            f"{bed}: {size} bytes where {variants} variants ({bim.name}) of {len(samples)} "
            f"samples ({fam.name}) take {expected}: truncated or not of this fileset"
        )
    _unique(samples, fam)
    return GenotypeSources("plink", files, samples)


def _fam_samples(fam: Path) -> list[str]:
    samples = []
    with fam.open() as stream:
        for number, line in enumerate(stream, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 6:
                raise SourceProblems(f"{fam}: line {number} has {len(fields)} fields, not 6")
            samples.append(fields[1])
    return samples


def _count_lines(path: Path) -> int:
    with path.open("rb") as stream:
        return sum(1 for line in stream if line.strip())


def _vcf_sources(paths: list[Path]) -> GenotypeSources:
    problems = []
    samples_of: dict[Path, tuple[str, ...]] = {}
    for path in paths:
        problem = _file_problem(path)
        if problem is None:
            try:
                samples_of[path] = _vcf_samples(path)
            except SourceProblems as error:
                problem = str(error)
        if problem:
            problems.append(problem)
    if problems:
        raise SourceProblems("\n".join(problems))
    first, *others = paths
    for other in others:
        if samples_of[other] != samples_of[first]:
            raise SourceProblems(
                _samples_differ(other, samples_of[other], first, samples_of[first])
            )
    _unique(samples_of[first], first)
    return GenotypeSources("vcf", tuple(paths), samples_of[first])


def _file_problem(path: Path) -> str | None:
    """Why `path` cannot be read as a VCF or BCF file, or None."""
    lower = path.name.lower()
    if not lower.endswith(VCF_SUFFIXES):
        return f"{path}: not a VCF, BCF or PLINK file (.vcf.gz, .vcf, .bcf, .bed/.bim/.fam)"
    if not path.is_file():
        return f"{path}: no such file"
    try:
        with path.open("rb") as stream:
            head = stream.read(18)
            stream.seek(max(0, path.stat().st_size - len(BGZF_EOF)))
            tail = stream.read()
    except OSError as error:
        return f"{path}: cannot be read ({error.strerror})"
    if not head.startswith(GZIP_MAGIC):
        return None if lower.endswith(".vcf") else f"{path}: not compressed (bgzip it)"
    if not _is_bgzf(head):
        return f"{path}: gzip-compressed but not with bgzip (recompress it with bgzip)"
    if tail != BGZF_EOF:
        return f"{path}: truncated (its bgzip end-of-file block is missing)"
    return None


def _is_bgzf(head: bytes) -> bool:
    """A gzip member with the extra subfield 'BC' that BGZF blocks carry."""
    return len(head) >= 14 and head[3] & 4 == 4 and head[12:14] == b"BC"


def _vcf_samples(path: Path) -> tuple[str, ...]:
    from cyvcf2 import VCF

    try:
        reader = VCF(str(path), lazy=True, threads=1)
    except (OSError, ValueError) as error:
        raise SourceProblems(f"{path}: not a readable VCF or BCF ({error})") from None
    try:
        return tuple(reader.samples)
    finally:
        reader.close()


def _samples_differ(path: Path, samples: tuple, first: Path, expected: tuple) -> str:
    missing, extra = set(expected) - set(samples), set(samples) - set(expected)
    if not missing and not extra:
        return f"{path}: the samples of {first.name} in another order (one object needs one)"
    parts = [f"{len(missing)} of {first.name}'s samples missing"] if missing else []
    parts += [f"{len(extra)} samples {first.name} lacks"] if extra else []
    return f"{path}: samples differ from {first.name}'s ({', '.join(parts)})"


def _unique(samples: tuple[str, ...], where: Path) -> None:
    seen: set[str] = set()
    twice = [s for s in samples if s in seen or seen.add(s)]
    if twice:
        raise SourceProblems(f"{where}: {len(twice)} sample ids appear twice")


def bgzipped(sources: GenotypeSources, work: Path) -> list[Path]:
    """The VCF or BCF files compressed: each source itself, a plain VCF bgzipped into `work`."""
    import pysam

    ready = []
    for number, path in enumerate(sources.files):
        if path.name.lower().endswith(".vcf"):
            copy = work / f"{number}.vcf.gz"
            if not copy.exists():
                pysam.tabix_compress(str(path), str(copy))
            ready.append(copy)
        else:
            ready.append(path)
    return ready


def prepared(sources: GenotypeSources, work: Path) -> list[Path]:
    """The VCF or BCF files to convert with bio2zarr, bgzipped and indexed: each source itself
    where it is, else a copy (a plain VCF) or a link in `work` with an index beside."""
    import pysam

    ready = []
    for number, (path, compressed) in enumerate(
        zip(sources.files, bgzipped(sources, work), strict=True)
    ):
        if compressed != path:
            pysam.tabix_index(str(compressed), preset="vcf", csi=True, force=True)
            ready.append(compressed)
        elif any(path.with_name(path.name + s).is_file() for s in INDEX_SUFFIXES):
            ready.append(path)
        else:
            ready.append(_indexed_link(path, work / f"{number}{_suffix(path)}"))
    return ready


def _suffix(path: Path) -> str:
    return ".bcf" if path.name.lower().endswith(".bcf") else ".vcf.gz"


def _indexed_link(path: Path, link: Path) -> Path:
    import pysam
    from pysam import bcftools

    os.symlink(path.resolve(), link)
    try:
        if link.suffix == ".bcf":
            bcftools.index("--csi", str(link), catch_stdout=False)
        else:
            pysam.tabix_index(str(link), preset="vcf", csi=True, keep_original=True, force=True)
    except (OSError, pysam.utils.SamtoolsError) as error:
        raise SourceProblems(f"{path}: cannot be indexed ({first_line(error)})") from None
    return link
