"""Genotype files are refused whatever their names: individual-level genotypes never leave.

Each format is known by its first bytes (`kinds` looks inside gzip and BGZF for them):

- VCF: a first line starting `##fileformat=VCF`.
- BCF: `BCF\\x02`, in practice inside BGZF.
- BGEN: `bgen` at bytes 16-20, after the first variant's offset, the header's length (at
  least 20, at most that offset; and under 16 MiB, which no text reads as), the variant count
  and the sample count (BGEN 1.2; files that leave the magic number zero are not known by it).
- PLINK 1 `.bed`: 0x6c 0x1b, then 0x01 (variant-major) or 0x00 (the old sample-major).
- PLINK 2 `.pgen`: 0x6c 0x1b, then its storage mode (the PGEN specification): 0x02-0x04
  fixed-width, 0x10-0x11 variable-width, 0x20-0x21 the same with its index in a `.pgi` file.
- a VCF Zarr store, which can only be sent as an archive's members: the metadata of a
  `call_genotype` array (`.zarray`, `.zattrs` in Zarr v2; `zarr.json` in v3), or group
  metadata naming `vcf_zarr_version` (`.zattrs`, consolidated `.zmetadata`, `zarr.json`).
"""

from __future__ import annotations

import struct
from pathlib import Path, PurePosixPath

FORMATS = {
    "vcf": "a VCF",
    "bcf": "a BCF",
    "bgen": "a BGEN file",
    "plink-bed": "a PLINK 1 .bed",
    "pgen": "a PLINK 2 .pgen",
    "vcf-zarr": "a VCF Zarr store",
}
REFUSED = {
    kind: f"{what} (individual-level genotypes) is refused: genotypes leave only as summary "
    "statistics that pass the checks"
    for kind, what in FORMATS.items()
}

BGEN_MAX_HEADER = 2**24
PLINK_MAGIC = b"\x6c\x1b"
BED_MODES = {0x00, 0x01}
PGEN_MODES = {0x02, 0x03, 0x04, 0x10, 0x11, 0x20, 0x21}
ZARR_METADATA = {".zarray", ".zattrs", ".zmetadata", "zarr.json"}
GENOTYPE_ARRAY = "call_genotype"
VCF_ZARR_ATTRIBUTE = b'"vcf_zarr_version"'


def genotype_format(head: bytes) -> str | None:
    """The genotype format (a key of `FORMATS`) whose first, uncompressed bytes these are."""
    if head.startswith(b"##fileformat=VCF"):
        return "vcf"
    if head.startswith(b"BCF\x02"):
        return "bcf"
    if head[16:20] == b"bgen":
        offset, header_length = struct.unpack_from("<II", head)
        if 20 <= header_length <= min(offset, BGEN_MAX_HEADER):
            return "bgen"
    if head[:2] == PLINK_MAGIC and len(head) > 2:
        if head[2] in BED_MODES:
            return "plink-bed"
        if head[2] in PGEN_MODES:
            return "pgen"
    return None


def is_vcf_zarr_part(name: str, path: Path) -> bool:
    """Is this archive member (expanded at `path`) metadata of a VCF Zarr store?"""
    member = PurePosixPath(name)
    if member.name not in ZARR_METADATA:
        return False
    return member.parent.name == GENOTYPE_ARRAY or VCF_ZARR_ATTRIBUTE in path.read_bytes()
