"""The site columns of a sites-only VCF (CHROM to INFO) written as VCF Zarr's variant arrays:
the store bio2zarr writes, its schema, layout, attributes and region index made by bio2zarr's
own writer, but the values parsed here a partition at a time rather than read record by record
into bio2zarr's intermediate format first (which took 14.5 s of the 30 of a 100,000-variant
ingest).

The values are those htslib reads and bio2zarr stores. INFO fields are parsed where they are
Flags, Integers or Floats (one value, one per allele or alternate allele, or a list), or
Strings of one value; anything else (a key the header does not declare, a Number=G field, a
symbolic allele or END, whose length htslib reckons otherwise) raises `Unparsed` and bio2zarr
converts the sites as before.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from bio2zarr import constants, vcf, vcz
from bio2zarr.zarr_utils import STRING_DTYPE_NAME

INT32 = np.iinfo(np.int32)
LENGTH_KEYS = ("END", "SVLEN")


class Unparsed(Exception):
    """The sites need bio2zarr's reading: the reason why."""


@dataclass
class Site:
    """One data line's columns as htslib reads them."""

    contig: int
    position: int
    identifier: str | None
    alleles: list[str]
    quality: float | None
    filters: list[int]
    info: dict[str, object]


class SiteParser:
    """Parses data lines against the header's contigs, filters and INFO fields."""

    def __init__(self, metadata):
        self.contigs = {contig.id: n for n, contig in enumerate(metadata.contigs)}
        self.filters = {f.id: n for n, f in enumerate(metadata.filters)}
        self.info = {f.name: f for f in metadata.info_fields}
        for field in self.info.values():
            _check_supported(field)

    def parse(self, line: str) -> Site:
        columns = line.rstrip("\n").split("\t")
        if len(columns) != 8:
            raise Unparsed(f"a line of {len(columns)} site columns")
        chrom, pos, vid, ref, alt, qual, filters, info = columns
        if chrom not in self.contigs:
            raise Unparsed(f"contig {chrom} is not in the header")
        alts = [] if alt == "." else alt.split(",")
        # symbolic and breakend alleles, whose length htslib may take from END
        if any(a.startswith("<") or "[" in a or "]" in a for a in alts):
            raise Unparsed("a symbolic or breakend allele")
        return Site(
            self.contigs[chrom],
            _integer(pos),
            None if vid == "." else vid,
            [ref, *alts],
            None if qual == "." else _float(qual),
            [] if filters == "." else [self._filter(name) for name in filters.split(";")],
            {} if info == "." else self._info(info),
        )

    def _filter(self, name: str) -> int:
        if name not in self.filters:
            raise Unparsed(f"filter {name} is not in the header")
        return self.filters[name]

    def _info(self, column: str) -> dict[str, object]:
        found: dict[str, object] = {}
        for item in column.split(";"):
            key, has_value, value = item.partition("=")
            field = self.info.get(key)
            if field is None or key in found or key in LENGTH_KEYS:
                raise Unparsed(f"INFO key {key!r}: undeclared, repeated or a length")
            if field.vcf_type == "Flag":
                if has_value:
                    raise Unparsed(f"the Flag {key} has a value")
                found[key] = True
            elif not has_value:
                raise Unparsed(f"INFO {key} has no value")
            elif field.vcf_type == "String":
                if "," in value:
                    raise Unparsed(f"the String {key} holds a list")
                found[key] = value
            else:
                parse = _integer if field.vcf_type == "Integer" else _float
                if value != ".":  # a lone "." is the whole value missing
                    found[key] = [None if v == "." else parse(v) for v in value.split(",")]
        return found


def _check_supported(field) -> None:
    number, kind = field.vcf_number, field.vcf_type
    simple = kind == "Flag" or (kind == "String" and number == "1")
    if not (simple or (kind in ("Integer", "Float") and number != "G")):
        raise Unparsed(f"INFO {field.name} (Number={number}, Type={kind})")


def _integer(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise Unparsed(f"{text!r} is not an integer") from None
    if not INT32.min + 8 <= value <= INT32.max:  # htslib keeps the lowest for its markers
        raise Unparsed(f"{value} is outside htslib's integers")
    return value


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise Unparsed(f"{text!r} is not a number") from None
    if math.isnan(value):
        raise Unparsed("a NaN")
    return float(np.float32(value))


# --- the summaries a schema is made from ------------------------------------------------------


def summarise(metadata, sites: Iterator[Site]) -> int:
    """Fill the summaries of the metadata's fields (largest number of values, range of the
    integers) as bio2zarr's intermediate format would; returns the number of sites."""
    fields = {f.full_name: f.summary for f in metadata.fields}
    count = 0
    for site in sites:
        count += 1
        _bound(fields["POS"], [site.position])
        _bound(fields["rlen"], [len(site.alleles[0])])
        fields["ALT"].max_number = max(fields["ALT"].max_number, len(site.alleles) - 1)
        for key, value in site.info.items():
            summary = fields[f"INFO/{key}"]
            values = value if isinstance(value, list) else [value]
            summary.max_number = max(summary.max_number, len(values))
            if not isinstance(value, str):
                _bound(summary, [v for v in values if v is not None])
    return count


def _bound(summary, values: list) -> None:
    if values:
        summary.max_value = max(summary.max_value, *values)
        summary.min_value = min(summary.min_value, *values)


# --- the values of each array -----------------------------------------------------------------


def site_arrays(schema, sites: list[Site]) -> dict[str, np.ndarray]:
    """Each of the schema's arrays for these sites, with bio2zarr's missing and fill values."""
    n = len(sites)
    shapes = {spec.name: (n, *schema.get_shape(spec.dimensions)[1:]) for spec in schema.fields}
    values: dict[str, np.ndarray] = {}
    for spec in schema.fields:
        dtype = STRING_DTYPE_NAME if spec.dtype == STRING_DTYPE_NAME else np.dtype(spec.dtype)
        fill = _fill_of(dtype, spec.name)
        values[spec.name] = np.full(shapes[spec.name], fill, dtype=dtype)
    missing_float = constants.FLOAT32_MISSING
    for row, site in enumerate(sites):
        values["variant_contig"][row] = site.contig
        values["variant_position"][row] = site.position
        values["variant_length"][row] = len(site.alleles[0])
        values["variant_allele"][row, : len(site.alleles)] = site.alleles
        values["variant_id"][row] = site.identifier or constants.STR_MISSING
        values["variant_id_mask"][row] = site.identifier is None
        quality = missing_float if site.quality is None else site.quality
        values["variant_quality"][row] = quality
        values["variant_filter"][row, site.filters] = True
        for key, value in site.info.items():
            _put(values[f"variant_{key}"], row, value)
    return values


def _fill_of(dtype, name: str):
    """What a row holds where its site has no value: bio2zarr's missing value."""
    if name == "variant_allele":
        return constants.STR_FILL
    if dtype == np.bool_:
        return False
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        return constants.FLOAT32_MISSING
    if isinstance(dtype, np.dtype) and dtype.kind == "i":
        return constants.INT_MISSING
    return constants.STR_MISSING


def _put(array: np.ndarray, row: int, value) -> None:
    if array.dtype == np.bool_ or isinstance(value, str):
        array[row] = value
        return
    floats = array.dtype.kind == "f"
    missing = constants.FLOAT32_MISSING if floats else constants.INT_MISSING
    cells = [missing if v is None else v for v in value]
    if array.ndim == 1:
        array[row] = cells[0]
        return
    array[row, :] = constants.FLOAT32_FILL if floats else constants.INT_FILL
    array[row, : len(cells)] = cells


# --- the whole --------------------------------------------------------------------------------


def encode_sites(text: Path, indexed: Path, store: Path, settings: dict) -> None:
    """The data lines of `text`, a sites-only VCF whose bgzipped, indexed copy is `indexed`,
    written as the variant arrays of a new VCF Zarr `store`; raises Unparsed first where
    bio2zarr must read them. The lines are parsed twice, for the schema and then a
    partition at a time, so that memory holds one partition's sites whatever their number."""
    metadata, header = vcf.scan_vcf(indexed, 1)
    parser = SiteParser(metadata)
    count = summarise(metadata, _sites(text, parser))
    if count != metadata.num_records:
        raise Unparsed(f"{count} data lines where the index counts {metadata.num_records}")
    columns = SiteColumns(metadata, header, indexed)
    schema = vcf.IntermediateColumnarFormat.generate_schema(
        columns, settings["variants_chunk_size"], settings["samples_chunk_size"]
    )
    writer = PartitionWriter(SiteColumns, store)
    partitions = max(1, -(-count // (settings["variants_chunk_size"] * 10)))
    writer.init(columns, target_num_partitions=partitions, schema=schema)
    lines = _sites(text, parser)
    for index, partition in enumerate(writer.metadata.partitions):
        batch = [next(lines) for _ in range(partition.stop - partition.start)]
        writer.write_partition(index, site_arrays(schema, batch))
    writer.finalise()
    writer.create_index()


def _sites(text: Path, parser: SiteParser) -> Iterator[Site]:
    with text.open() as lines:
        for line in lines:
            if not line.startswith("#"):
                yield parser.parse(line)


class SiteColumns:
    """What bio2zarr's schema and writer ask of their source: the scanned header's metadata,
    with summaries filled by `summarise`, and no samples."""

    def __init__(self, metadata, header: str, path: Path):
        self.metadata = metadata
        self.vcf_header = header
        self.path = path
        self.fields = {f.full_name: _Column(f) for f in metadata.fields}
        self.gt_field = None
        self.root_attrs = vcf.IntermediateColumnarFormat.root_attrs.fget(self)

    num_records = property(lambda self: self.metadata.num_records)
    num_samples = property(lambda self: 0)
    samples = property(lambda self: [])
    contigs = property(lambda self: self.metadata.contigs)
    filters = property(lambda self: self.metadata.filters)


@dataclass
class _Column:
    vcf_field: object


class PartitionWriter(vcz.VcfZarrWriter):
    """bio2zarr's writer, given each partition's arrays whole."""

    def write_partition(self, index: int, arrays: dict[str, np.ndarray]) -> None:
        partition = self.metadata.partitions[index]
        wip = self.wip_partition_path(index)
        wip.mkdir()
        for name, values in arrays.items():
            shutil.copytree(self.arrays_path / name, wip / name)
            array = zarr.open_array(store=wip / name, mode="a")
            array[partition.start : partition.stop] = values
        os.rename(wip, self.partition_path(index))
