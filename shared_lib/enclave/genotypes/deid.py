"""De-identification of genotypes: sample ids become the people's keyed pseudonyms (the same
`Pseudonymizer.patient` the other kinds give a patient id, so a sample joins its person's
records, images and slides under one key; a manifest may give each sample its patient id),
and the VCF header keeps only the lines that
describe the data.

Header lines are kept by an allow-list, not dropped by a deny-list: a caller's or vendor's
line (`##GATKCommandLine`, `##bcftools_viewCommand=... -s NAME`, `##SAMPLE=<...>`,
`##DRAGENCommandLine`) is unknown in advance and may name people, paths or hosts. The
descriptive lines whose values are free text are kept only when the value is a plain name.
"""

from __future__ import annotations

import re
from collections import Counter

from ..catalog import CatalogError
from ..persons import SourceManifest
from ..pseudonyms import Pseudonymizer

# Lines that define the data's fields, contigs and filters: kept as they are.
STRUCTURE = {"fileformat", "INFO", "FORMAT", "FILTER", "ALT", "contig"}
# Lines that describe the data in free text: kept when the value is a plain name ('GRCh38',
# 'freeBayes v1.3.2'), dropped when it holds a path, an address or a command.
NAMES = {"fileDate", "reference", "assembly", "source", "phasing"}
PLAIN_NAME = re.compile(r"[\w.+:-]+( [\w.+:-]+){0,3}")
META_LINE = re.compile(r"##([^=]+)=(.*)")


def kept_header(header: str, samples: list[str]) -> tuple[str, Counter]:
    """The header with only the kept meta lines and `samples` on its column line; and the
    keys of the dropped lines, counted (their values are not recorded: they may identify)."""
    kept, dropped = [], Counter()
    for line in header.splitlines():
        if line.startswith("#CHROM"):
            columns = line.split("\t")[:9] if samples else line.split("\t")[:8]
            kept.append("\t".join(columns + samples))
            continue
        match = META_LINE.fullmatch(line)
        if not match:
            continue
        key, value = match.groups()
        if key in STRUCTURE or (key in NAMES and PLAIN_NAME.fullmatch(value)):
            kept.append(line)
        else:
            dropped[key] += 1
    return "\n".join(kept) + "\n", dropped


def sample_pseudonyms(
    samples: list[str], key: bytes, manifest: SourceManifest | None = None
) -> dict[str, str]:
    """Each sample id's keyed pseudonym: of the sample id itself, or, with a `manifest`, of
    the patient id it gives the sample (which must name every sample, one person each)."""
    pseudonyms = Pseudonymizer(key)
    if manifest is None:
        return {sample: pseudonyms.patient(sample) for sample in samples}
    missing = [sample for sample in samples if manifest.find(sample) is None]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise CatalogError(
            f"samples {', '.join(missing[:3])}{more}: the manifest {manifest.path} does not "
            "name them"
        )
    found: dict[str, str] = {}
    for sample in samples:
        pseudonym = pseudonyms.patient(manifest.require(sample, sample).patient_id)
        twin = next((s for s, p in found.items() if p == pseudonym), None)
        if twin is not None:
            raise CatalogError(
                f"samples {twin} and {sample}: the manifest {manifest.path} gives both the "
                "same patient (one sample per person)"
            )
        found[sample] = pseudonym
    return found


def policy(dropped: Counter) -> dict:
    """What was done, for `dataset.json`."""
    return {
        "sample_id": "keyed pseudonym of the source sample id (the patient id of other kinds)",
        "header": "only field, filter, contig and plain-name lines kept",
        "header_lines_dropped": dict(sorted(dropped.items())),
        "kept": "genotypes, phasing, positions, alleles, variant ids, INFO and FORMAT fields",
    }
