"""Bgzipped text VCFs whose FORMAT fields are GT and single Integers or Floats (GT:DP:GQ, GT
alone) converted to VCF Zarr reading their text once, in parallel, where bio2zarr would read
every record through htslib and write an intermediate copy first.

1. lines: each file's BGZF blocks are split into runs; a worker process inflates its run,
   notes where each data line starts and copies out its eight site columns;
2. calls: the variants are split into runs of whole chunks; a worker parses its chunks' sample
   columns (`calls.parse_calls`) and writes them as the store's call arrays, one chunk of
   variants at a time, all its sample chunks at once;
3. sites: the site columns, as a sites-only VCF under the de-identified header, are written as
   the store's variant arrays (`sites`: alleles, ids, INFO, FILTER, contigs, region index;
   bio2zarr converts them where `sites` declines), and the call arrays and the pseudonymous
   sample ids join that store.

The store is the one bio2zarr would write, with call arrays of the same names, types, chunks
and compressors. An Integer FORMAT field takes, as in bio2zarr, the narrowest integer type that
holds its values: guessed from the first lines; a chunk whose values do not fit is written as
int32 beside the store, and the field's array is widened once the whole file is read.
Anything the parser cannot read as htslib does raises `Declined` and the caller converts with
bio2zarr instead.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import multiprocessing
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numcodecs
import numpy as np

from . import bgzf, calls

TEXT_PER_RUN = 32 * 1024**2  # inflated bytes per run of blocks while finding the lines
BLOCKS_PER_READ = 32  # blocks inflated at a time while parsing calls
RUNS_PER_WORKER = 8  # runs of variant chunks per worker, for balance
WORKER_BASE_BYTES = 256 * 1024**2  # a worker process with its libraries and inflated text
# Call arrays are compressed as bio2zarr compresses them but with zstd at level 1, not 7:
# measured on GT:DP:GQ calls, 5 to 8 times faster to write and 5 to 10% larger.
CALL_COMPRESSION_LEVEL = 1
# bio2zarr's intermediate format (here of the sites, in `ingest` of whole files) is read once,
# soon after, from the staging folder: fast LZ4 rather than bio2zarr's zstd level 7, which
# took three quarters of the conversion for three times less temporary disk.
INTERMEDIATE_CODEC = {"id": "blosc", "cname": "lz4", "clevel": 1, "shuffle": 0}
PLOIDY_BLOCKS = 64  # blocks read for the first GT, whose ploidy the arrays take
CALL_ARRAYS = ("call_genotype", "call_genotype_phased", "call_genotype_mask")
WIDE = "wide.vcz"  # beside the call arrays: int32 twins of the Integer fields' arrays
FORMAT_TYPES = {"Integer": calls.INTEGER, "Float": calls.FLOAT}
SEPARATORS = re.compile(rb"[/|]")
PR_SET_THP_DISABLE = 41  # prctl(2): no transparent huge pages for this process


class Declined(Exception):
    """The files need bio2zarr: the reason why."""


@dataclass(frozen=True)
class Fields:
    """The FORMAT fields: their keys, kind (calls.GT, INTEGER, FLOAT) and slot in the integer
    or float buffers; descriptions from the header; the ploidy of the first call and the
    integer types guessed from the first lines (`first_calls`)."""

    keys: tuple[str, ...]
    kinds: tuple[int, ...]
    slots: tuple[int, ...]
    descriptions: tuple[str, ...]
    ploidy: int
    integer_types: tuple[str, ...] = ()  # per Integer field, the type its array starts with

    def of_kind(self, kind: int) -> list[str]:
        return [k for k, kk in zip(self.keys, self.kinds, strict=True) if kk == kind]

    def parser_tables(self) -> tuple[np.ndarray, ...]:
        width = max(len(key) for key in self.keys)
        keys = np.zeros((len(self.keys), width), dtype=np.uint8)
        for row, key in enumerate(self.keys):
            keys[row, : len(key)] = np.frombuffer(key.encode(), dtype=np.uint8)
        lengths = np.array([len(key) for key in self.keys], dtype=np.int64)
        return keys, lengths, np.array(self.kinds, np.int64), np.array(self.slots, np.int64)


@dataclass(frozen=True)
class Layout:
    """Where the data lines are: each file's blocks, and the text offset of each data line."""

    blocks: tuple[bgzf.Blocks, ...]
    line_starts: tuple[np.ndarray, ...]

    @property
    def variants(self) -> int:
        return sum(len(starts) for starts in self.line_starts)

    def locate(self, line: int) -> tuple[int, int]:
        """(file number, text offset) of data line `line` of all the files."""
        for number, starts in enumerate(self.line_starts):
            if line < len(starts):
                return number, int(starts[line])
            line -= len(starts)
        raise IndexError(line)


def raw_header(path: Path) -> str:
    """The header of a VCF or BCF file, as text."""
    from cyvcf2 import VCF

    reader = VCF(str(path), lazy=True, threads=1)
    try:
        return reader.raw_header
    finally:
        reader.close()


def format_fields(files: list[Path]) -> Fields:
    """The FORMAT fields the parser reads, from the headers (ploidy 0 until the first call is
    read); raises Declined where one is not GT or a single Integer or Float, or where the
    files' headers differ."""
    from cyvcf2 import VCF

    headers = [raw_header(path) for path in files]
    if any(_meta_lines(h) != _meta_lines(headers[0]) for h in headers[1:]):
        raise Declined("the files' headers differ")
    keys, kinds, slots, descriptions = [], [], [], []
    counts = {calls.INTEGER: 0, calls.FLOAT: 0}
    reader = VCF(str(files[0]), lazy=True, threads=1)
    try:
        records = [r.info() for r in reader.header_iter() if r.type == "FORMAT"]
    finally:
        reader.close()
    for info in records:
        key = info["ID"]
        if key == "GT":
            kind, slot = calls.GT, 0
        elif info.get("Number") == "1" and info.get("Type") in FORMAT_TYPES:
            kind = FORMAT_TYPES[info["Type"]]
            slot, counts[kind] = counts[kind], counts[kind] + 1
        else:
            raise Declined(f"FORMAT/{key} is Number={info.get('Number')} {info.get('Type')}")
        keys.append(key)
        kinds.append(kind)
        slots.append(slot)
        descriptions.append(info.get("Description", "").strip('"'))
    if "GT" not in keys:
        raise Declined("no FORMAT/GT")
    return Fields(tuple(keys), tuple(kinds), tuple(slots), tuple(descriptions), 0)


def _meta_lines(header: str) -> list[str]:
    return [line for line in header.splitlines() if not line.startswith("#CHROM")]


def first_calls(blocks: bgzf.Blocks, fields: Fields, samples: int) -> Fields:
    """`fields` with the ploidy of the first GT and the integer types that the first blocks'
    whole data lines need (a guess, which `_widen` corrects)."""
    text = bgzf.inflate(blocks, 0, min(len(blocks), PLOIDY_BLOCKS))
    fields = replace(fields, ploidy=_first_ploidy(text.tobytes()))
    starts = calls.line_starts(text)
    data = [
        int(at) for at in np.concatenate([[0], starts]) if at < len(text) and text[at] != ord("#")
    ]
    end = calls.whole_lines_end(text)
    if not data or data[0] >= end:
        return replace(fields, integer_types=tuple("i1" for _ in fields.of_kind(calls.INTEGER)))
    lines = int(np.count_nonzero(text[data[0] : end] == calls.NEWLINE))
    buffers = _buffers(fields, samples, lines)
    _, rows, _ = calls.parse_calls(text, data[0], end, 0, *fields.parser_tables(), *buffers)
    integers = buffers[2][:, :rows]
    return replace(fields, integer_types=tuple(Range.of(values).dtype for values in integers))


def _first_ploidy(text: bytes) -> int:
    """The number of alleles of the first GT in the text's data lines."""
    for line in text.split(b"\n")[:-1]:
        columns = line.split(b"\t", 10)
        if line.startswith(b"#") or len(columns) < 10:
            continue
        keys, values = columns[8].split(b":"), columns[9].split(b":")
        if b"GT" in keys[: len(values)]:
            return len(SEPARATORS.split(values[keys.index(b"GT")]))
    raise Declined("no GT in the first lines")


@dataclass
class Range:
    """The least and greatest values of an Integer field seen so far (missing is -1 and a
    short vector's fill -2, so every type holds those), and the variant chunks written wide."""

    low: int = calls.INT_FILL
    high: int = calls.INT_FILL
    wide_chunks: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, values: np.ndarray) -> Range:
        if not values.size:
            return cls()
        return cls(min(int(values.min()), calls.INT_FILL), int(values.max()))

    def dtype_fits(self, dtype) -> bool:
        limits = np.iinfo(dtype)
        return limits.min <= self.low and self.high <= limits.max

    @property
    def dtype(self) -> str:
        """The narrowest integer type holding the range, as bio2zarr chooses."""
        return next(dtype for dtype in ("i1", "i2", "i4") if self.dtype_fits(dtype))

    def add(self, other: Range) -> None:
        self.low, self.high = min(self.low, other.low), max(self.high, other.high)
        self.wide_chunks += other.wide_chunks


# --- 1. lines -------------------------------------------------------------------------------


def runs_of_blocks(blocks: bgzf.Blocks, parts: int) -> list[tuple[int, int]]:
    """The blocks split into at least `parts` runs of about equal text (where there are
    blocks enough), none much over TEXT_PER_RUN."""
    parts = max(parts, -(-blocks.text_bytes // TEXT_PER_RUN))
    bounds = np.searchsorted(blocks.starts, np.linspace(0, blocks.text_bytes, parts + 1)[1:-1])
    edges = np.unique(np.concatenate([[0], bounds, [len(blocks)]]))
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def find_lines(blocks: bgzf.Blocks, first: int, stop: int, sites: Path) -> np.ndarray:
    """The text offsets of the data lines whose preceding newline (or the file's start) is in
    blocks `first` to `stop`; their site columns written to `sites`."""
    text = bgzf.inflate(blocks, first, stop)
    base = int(blocks.starts[first])
    starts = calls.line_starts(text)
    if first == 0:
        starts = np.concatenate([[0], starts])
    starts = starts[starts + base < blocks.text_bytes]
    ends = calls.site_ends(text, starts, stop == len(blocks))
    more = stop
    while len(ends) and ends[-1] < 0:  # the last line's sites run into the next blocks
        more = min(len(blocks), more + 4)
        text = np.concatenate([text, bgzf.inflate(blocks, stop, more)])
        stop = more
        ends = calls.site_ends(text, starts, more == len(blocks))
    data = text[starts] != ord("#") if len(starts) else np.zeros(0, bool)
    starts, ends = starts[data], ends[data]
    sites.write_bytes(calls.gather_sites(text, starts, ends).tobytes())
    return starts + base


# --- 2. calls -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallJob:
    """What a worker needs to encode calls: the files' blocks and the offset of each file's
    first data line, the fields, the store and its shape."""

    blocks: tuple[bgzf.Blocks, ...]
    first_lines: tuple[int, ...]
    fields: Fields
    samples: int
    variants: int
    store: Path
    variants_per_chunk: int
    samples_per_chunk: int


class LineReader:
    """The data lines of all the files from one place on, inflated a few blocks at a time;
    `text` holds what is read and not yet parsed."""

    def __init__(self, job: CallJob, file: int, offset: int):
        self.job = job
        self.file = file
        self._open_at(offset)

    def _open_at(self, offset: int) -> None:
        blocks = self.job.blocks[self.file]
        self.block = blocks.block_of(offset)
        self.text = np.zeros(0, np.uint8)
        self.skip = offset - int(blocks.starts[self.block])

    def more(self) -> bool:
        """Append the next blocks' text; False at the end of the last file."""
        blocks = self.job.blocks[self.file]
        if self.block >= len(blocks):
            if self.text.size and self.text[-1] != calls.NEWLINE:  # a last line unended
                self.text = np.append(self.text, np.uint8(calls.NEWLINE))
                return True
            if self.file + 1 == len(self.job.blocks):
                return False
            self.file += 1
            self._open_at(self.job.first_lines[self.file])
            return self.more()
        stop = min(len(blocks), self.block + BLOCKS_PER_READ)
        added = bgzf.inflate(blocks, self.block, stop)[self.skip :]
        self.skip = 0
        self.block = stop
        self.text = np.concatenate([self.text, added]) if self.text.size else added
        return True


def encode_calls(
    job: CallJob, first_chunk: int, stop_chunk: int, start: tuple[int, int]
) -> dict[str, Range]:
    """Parse and write variant chunks `first_chunk` to `stop_chunk` of the call arrays, the
    first line of the first at `start` (file number, text offset); the range of each Integer
    field in them."""
    numcodecs.blosc.use_threads = False  # the workers are the parallelism
    arrays = {name: ChunkWriter(job.store / name) for name in _array_names(job)}
    wide = {
        key: ChunkWriter(job.store.with_name(WIDE) / f"call_{key}") for key in _integer_keys(job)
    }
    ranges = {key: Range() for key in _integer_keys(job)}
    size = job.variants_per_chunk
    reader = LineReader(job, *start)
    tables = job.fields.parser_tables()
    for chunk in range(first_chunk, stop_chunk):
        rows = min(size, job.variants - chunk * size)
        buffers = _buffers(job.fields, job.samples, rows)
        row = 0
        while row < rows:
            end = calls.whole_lines_end(reader.text)
            pos, row, reason = calls.parse_calls(reader.text, 0, end, row, *tables, *buffers)
            if reason != calls.PARSED:
                raise Declined(f"{job.blocks[reader.file].path.name}: {calls.REASONS[reason]}")
            reader.text = reader.text[pos:]
            if row < rows and not reader.more():
                raise Declined("fewer data lines than first found")
        targets = _integer_targets(job, arrays, wide, chunk, buffers[2], ranges)
        _write(job, arrays, targets, chunk, buffers)
    return ranges


def _integer_keys(job: CallJob) -> list[str]:
    return job.fields.of_kind(calls.INTEGER)


def _integer_targets(job, arrays, wide, chunk, integers, ranges) -> dict[str, ChunkWriter]:
    """Where each Integer field's values of this chunk go: its array, or, where they do not
    fit its type, the int32 twin beside the store (the chunk noted in the field's range)."""
    targets = {}
    for slot, key in enumerate(_integer_keys(job)):
        seen = Range.of(integers[slot])
        fits = seen.dtype_fits(arrays[f"call_{key}"].dtype)
        if not fits:
            seen.wide_chunks.append(chunk)
        ranges[key].add(seen)
        targets[key] = arrays[f"call_{key}"] if fits else wide[key]
    return targets


def _array_names(job: CallJob) -> list[str]:
    return list(CALL_ARRAYS) + [f"call_{key}" for key in job.fields.keys if key != "GT"]


def _buffers(fields: Fields, samples: int, rows: int) -> tuple[np.ndarray, ...]:
    """A chunk's arrays of parsed calls, kept by the worker process for its next chunk of the
    same shape: the parser writes every cell, and fresh memory costs the kernel's zeroing
    of each page (a fifth of a conversion's time)."""
    shape = (fields.ploidy, len(fields.of_kind(calls.INTEGER)), len(fields.of_kind(calls.FLOAT)))
    key = (*shape, samples, rows)
    if key not in _KEPT_BUFFERS:
        _KEPT_BUFFERS.clear()
        ploidy, integers, floats = shape
        _KEPT_BUFFERS[key] = (
            np.empty((rows, samples, ploidy), np.int8),
            np.empty((rows, samples), np.bool_),
            np.empty((integers, rows, samples), np.int32),
            np.empty((floats, rows, samples), np.float32),
        )
    return _KEPT_BUFFERS[key]


_KEPT_BUFFERS: dict[tuple, tuple[np.ndarray, ...]] = {}


def worker_bytes(fields: Fields, samples: int, rows: int) -> int:
    """The memory a worker needs: one chunk's parsed calls, a quarter more while one sample
    chunk of them is compressed, and the process with its inflated text."""
    per_call = fields.ploidy + 1 + 4 * (len(fields.keys) - 1)
    return rows * samples * per_call * 5 // 4 + WORKER_BASE_BYTES


class ChunkWriter:
    """Whole chunks written straight into a Zarr v2 array made by `_create_arrays`: each
    compressed by the array's codec into its file (`variant.sample[.0]`), an edge chunk padded
    to the full chunk shape as Zarr v2 stores it."""

    def __init__(self, path: Path):
        meta = json.loads((path / ".zarray").read_text())
        self.path = path
        self.chunks = tuple(meta["chunks"])
        self.dtype = np.dtype(meta["dtype"])
        self.codec = numcodecs.get_codec(meta["compressor"])

    def write(self, variant_chunk: int, sample_chunk: int, values: np.ndarray) -> None:
        if values.shape != self.chunks:
            padded = np.zeros(self.chunks, self.dtype)
            padded[tuple(slice(0, n) for n in values.shape)] = values
            values = padded
        key = ".".join(map(str, (variant_chunk, sample_chunk, 0)[: len(self.chunks)]))
        data = np.ascontiguousarray(values, dtype=self.dtype)
        (self.path / key).write_bytes(self.codec.encode(data))


def _write(job: CallJob, arrays: dict, integer_targets: dict, chunk: int, buffers: tuple) -> None:
    gt, phased, ints, floats = buffers
    for number, start in enumerate(range(0, job.samples, job.samples_per_chunk)):
        samples = slice(start, start + job.samples_per_chunk)
        genotypes = gt[:, samples]
        arrays["call_genotype"].write(chunk, number, genotypes)
        arrays["call_genotype_mask"].write(chunk, number, genotypes < 0)
        arrays["call_genotype_phased"].write(chunk, number, phased[:, samples])
        for slot, key in enumerate(_integer_keys(job)):
            integer_targets[key].write(chunk, number, ints[slot, :, samples])
        for slot, key in enumerate(job.fields.of_kind(calls.FLOAT)):
            arrays[f"call_{key}"].write(chunk, number, floats[slot, :, samples])


# --- the whole --------------------------------------------------------------------------------


def convert(
    files: list[Path],
    samples: list[str],
    header: str,
    work: Path,
    store: Path,
    settings: dict,
    memory: int,
) -> None:
    """Convert `files` (bgzipped text VCFs sharing `samples`, already the pseudonyms) into the
    VCF Zarr `store` under the de-identified `header`; raises Declined where bio2zarr must."""
    if not samples:
        raise Declined("no samples")
    fields = format_fields(files)
    try:
        blocks = tuple(bgzf.block_table(path) for path in files)
    except bgzf.NotBgzf as error:
        raise Declined(str(error)) from None
    fields = first_calls(blocks[0], fields, len(samples))
    variants_per_chunk = settings["variants_chunk_size"]
    workers = _workers_within(memory, settings, fields, len(samples))
    with worker_pool(workers) as pool, ThreadPoolExecutor(1) as sites_thread:
        layout, sites = _find_all_lines(pool, blocks, work, workers * 4)
        calls_store = work / "calls.vcz"
        shape = CallShape(len(samples), layout.variants, fields.ploidy, settings)
        specs = _call_array_specs(fields)
        _create_arrays(calls_store, specs, shape)
        _create_arrays(
            work / WIDE, [s.widened("i4") for s in specs if s.name in _wide_names(fields)], shape
        )
        job = CallJob(
            layout.blocks,
            tuple(int(starts[0]) for starts in layout.line_starts),
            fields,
            len(samples),
            layout.variants,
            calls_store,
            variants_per_chunk,
            settings["samples_chunk_size"],
        )
        chunks = -(-layout.variants // variants_per_chunk)
        runs = np.array_split(np.arange(chunks), min(chunks, workers * RUNS_PER_WORKER))
        sites_vcf = _sites_vcf(header, sites, work)
        done = [sites_thread.submit(encode_sites, sites_vcf, work, store, settings)]
        done += [
            pool.submit(
                encode_calls,
                job,
                int(run[0]),
                int(run[-1]) + 1,
                layout.locate(int(run[0]) * variants_per_chunk),
            )
            for run in runs
        ]
        try:
            for future in _progress(done, settings["show_progress"]):
                future.result()
        except BaseException:
            pool.shutdown(cancel_futures=True)  # what has not begun is not worth doing
            raise
    ranges = {key: Range() for key in fields.of_kind(calls.INTEGER)}
    for future in done[1:]:
        for key, seen in future.result().items():
            ranges[key].add(seen)
    for key, seen in ranges.items():
        if seen.wide_chunks:
            spec = next(s for s in specs if s.name == f"call_{key}")
            _widen(calls_store, work / WIDE, spec.widened(seen.dtype), shape, seen.wide_chunks)
    _join(store, calls_store, samples, settings)


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """The conversion's worker processes: started afresh (not forked from this process and
    its memory), without huge pages."""
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_without_huge_pages)


def _without_huge_pages() -> None:
    """A worker's start: its memory in small pages. Its chunk buffers are written once per
    chunk, so huge pages save it little; but NumPy asks for them for every large array, and
    a fresh huge page is zeroed whole and, on a virtual machine whose host takes back free
    memory, faulted in by the host page by page: measured on the benchmark's cohort, the
    workers' system time halved and the ingest took 23 s rather than 26.4."""
    ctypes.CDLL(None).prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)


def _workers_within(memory: int, settings: dict, fields: Fields, samples: int) -> int:
    """As many of the workers asked for as `memory` has room for."""
    per_worker = worker_bytes(fields, samples, settings["variants_chunk_size"])
    fitting = min(settings["worker_processes"], memory // per_worker)
    if fitting < 1:
        raise Declined("a chunk of calls does not fit the memory limit")
    return int(fitting)


def _find_all_lines(pool, blocks: tuple, work: Path, parts: int) -> tuple[Layout, list[Path]]:
    jobs, sites, runs = [], [], [runs_of_blocks(table, parts) for table in blocks]
    for number, table in enumerate(blocks):
        for first, stop in runs[number]:
            path = work / f"sites-{number}-{first}.txt"
            sites.append(path)
            jobs.append(pool.submit(find_lines, table, first, stop, path))
    starts = [future.result() for future in jobs]
    per_file = []
    at = 0
    for file_runs in runs:
        count = len(file_runs)
        per_file.append(np.concatenate(starts[at : at + count]))
        at += count
    if any(len(s) == 0 for s in per_file):
        raise Declined("a file without data lines")
    return Layout(blocks, tuple(per_file)), sites


def _progress(futures: list, show: bool) -> Iterator:
    from concurrent.futures import as_completed

    if not show:
        yield from futures
        return
    from tqdm import tqdm

    yield from tqdm(as_completed(futures), total=len(futures), desc="convert", unit="part")


@dataclass(frozen=True)
class CallShape:
    """The call arrays' dimensions and chunks."""

    samples: int
    variants: int
    ploidy: int
    settings: dict

    def of(self, rank: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(shape, chunks) of an array of `rank` dimensions (variants, samples, ploidy)."""
        chunks = (self.settings["variants_chunk_size"], self.settings["samples_chunk_size"])
        shape = (self.variants, self.samples, self.ploidy)[:rank]
        return shape, (*chunks, self.ploidy)[:rank]


@dataclass(frozen=True)
class ArraySpec:
    """A call array as bio2zarr makes it: name, type, rank, compressor and description."""

    name: str
    dtype: str
    rank: int
    compressor: dict
    description: str = ""

    def widened(self, dtype: str) -> ArraySpec:
        return replace(self, dtype=dtype)


def _call_array_specs(fields: Fields) -> list[ArraySpec]:
    from bio2zarr import zarr_utils

    specs = [
        ArraySpec("call_genotype", "i1", 3, zarr_utils.DEFAULT_COMPRESSOR_GENOTYPES_CONFIG),
        ArraySpec("call_genotype_mask", "bool", 3, zarr_utils.DEFAULT_COMPRESSOR_BOOL_CONFIG),
        ArraySpec("call_genotype_phased", "bool", 2, zarr_utils.DEFAULT_COMPRESSOR_BOOL_CONFIG),
    ]
    integer_types = iter(fields.integer_types)
    for key, kind, description in zip(fields.keys, fields.kinds, fields.descriptions, strict=True):
        if kind != calls.GT:
            dtype = next(integer_types) if kind == calls.INTEGER else "f4"
            compressor = zarr_utils.DEFAULT_COMPRESSOR_CONFIG
            specs.append(ArraySpec(f"call_{key}", dtype, 2, compressor, description))
    return specs


def _wide_names(fields: Fields) -> set[str]:
    return {f"call_{key}" for key in fields.of_kind(calls.INTEGER)}


def _create_arrays(store: Path, specs: list[ArraySpec], shape: CallShape) -> dict:
    """Empty Zarr v2 arrays, as bio2zarr creates them but with CALL_COMPRESSION_LEVEL."""
    import zarr
    from bio2zarr import zarr_utils

    root = zarr.open_group(store, mode="a", zarr_format=2)
    dimensions = ["variants", "samples", "ploidy"]
    arrays = {}
    for spec in specs:
        array_shape, chunks = shape.of(spec.rank)
        arrays[spec.name] = array = zarr_utils.create_empty_group_array(
            root,
            name=spec.name,
            shape=array_shape,
            chunks=chunks,
            dtype=spec.dtype,
            compressor={**spec.compressor, "clevel": CALL_COMPRESSION_LEVEL},
            filters=None,
            dimension_names=dimensions[: spec.rank],
            fill_value=None,
        )
        array.attrs.update({"description": spec.description})
    return arrays


def _widen(store: Path, wide: Path, spec: ArraySpec, shape: CallShape, wide_chunks: list) -> None:
    """The Integer field's array made again in the type its whole range needs, a chunk of
    variants at a time: from its own chunks where they fitted the first type, else from their
    int32 twins in `wide`."""
    import zarr

    narrow = zarr.open_array(store / spec.name, mode="r")
    twin = zarr.open_array(wide / spec.name, mode="r")
    widened_store = wide.with_name("widened.vcz")
    widened = _create_arrays(widened_store, [spec], shape)[spec.name]
    size = shape.settings["variants_chunk_size"]
    for chunk, start in enumerate(range(0, shape.variants, size)):
        rows = slice(start, start + size)
        widened[rows] = (twin if chunk in wide_chunks else narrow)[rows].astype(spec.dtype)
    shutil.rmtree(store / spec.name)
    (widened_store / spec.name).rename(store / spec.name)


def _sites_vcf(header: str, sites: list[Path], work: Path) -> Path:
    """The site columns as a sites-only VCF under the header (its FORMAT lines and sample
    columns left out), kept as text beside its bgzipped, indexed copy (returned)."""
    import pysam

    lines = []
    for line in header.splitlines():
        if line.startswith("##FORMAT="):
            continue
        lines.append("\t".join(line.split("\t")[:8]) if line.startswith("#CHROM") else line)
    text = work / "sites.vcf"
    with text.open("wb") as out:
        out.write(("\n".join(lines) + "\n").encode())
        for part in sites:
            with part.open("rb") as source:
                shutil.copyfileobj(source, out)
            part.unlink()
    pysam.tabix_index(str(text), preset="vcf", csi=True, keep_original=True)
    return work / "sites.vcf.gz"


def encode_sites(sites_vcf: Path, work: Path, store: Path, settings: dict) -> None:
    """The sites written into `store` by `sites`, or by bio2zarr where `sites` cannot parse
    them; in a thread of the converting process, while the workers parse the calls: the
    kernel shares the cores among them all evenly, where whole chunks of calls and the
    sites as one task left a worker idle at the end."""
    from bio2zarr import vcf

    from . import sites

    try:
        sites.encode_sites(sites_vcf.with_suffix(""), sites_vcf, store, settings)
        return
    except sites.Unparsed:
        shutil.rmtree(store, ignore_errors=True)
    icf = work / "sites.icf"
    codec = numcodecs.get_codec(INTERMEDIATE_CODEC)
    vcf.explode(icf, [sites_vcf], worker_processes=0, show_progress=False, compressor=codec)
    vcf.encode(icf, store, **{**settings, "worker_processes": 0, "show_progress": False})


def _join(store: Path, calls_store: Path, samples: list[str], settings: dict) -> None:
    """The call arrays moved into the store, and the sample ids written."""
    import zarr
    from bio2zarr import zarr_utils

    root = zarr.open_group(store, mode="r+")
    if "sample_id" in root:
        del root["sample_id"]
    zarr_utils.create_group_array(
        root,
        "sample_id",
        data=samples,
        shape=len(samples),
        dtype=zarr_utils.STRING_DTYPE_NAME,
        compressor=zarr_utils.DEFAULT_COMPRESSOR_CONFIG,
        chunks=(settings["samples_chunk_size"],),
        dimension_names=["samples"],
    )
    for array in calls_store.iterdir():
        if array.name.startswith("call_"):
            array.rename(store / array.name)
