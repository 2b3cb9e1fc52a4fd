"""GWAS summary statistics: association results, one row per variant, with rules of their own.

A CSV, TSV or Parquet table is summary statistics when its columns (named as below, in any
case) give a variant (an id, or a chromosome and a position), an effect, its standard error
and a p-value, and at least one of allele count, allele frequency and sample size. It is not
held to the rules of tables of counts (its rows are variants, its counts are of alleles), but
each variant needs a minor allele count of at least `min_allele_count` and a sample size of at
least `min_sample_size`. The minor allele count is min(AC, 2N - AC) from an allele count
column, else 2N min(AF, 1 - AF) rounded (diploid); a value that is missing fails its row, and
a table without a sample size, or without both allele count and frequency, fails whole. Tables
are read in chunks of a few columns, so millions of variants are checked in bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import astuple, dataclass

from . import Finding, Rules
from .tables import check_identifiers

# Each part's column names, lower-case: those of plink2 --glm (#CHROM POS ID A1_FREQ A1_CT
# OBS_CT BETA|OR SE|LOG(OR)_SE T_STAT|Z_STAT P|LOG10_P), REGENIE (CHROM GENPOS ID A1FREQ N BETA
# SE LOG10P), SAIGE (CHR POS MarkerID AC_Allele2 AF_Allele2 N BETA SE p.value), sgkit
# (variant_contig variant_position variant_id variant_linreg_beta variant_linreg_t_value
# variant_linreg_p_value), the GWAS-SSF standard (chromosome base_pair_location variant_id rsid
# effect_allele_frequency n beta|odds_ratio|hazard_ratio standard_error
# p_value|neg_log_10_p_value), and their usual short forms.
VARIANT_ID = frozenset({"id", "variant_id", "rsid", "snp", "snpid", "markerid", "markername"})
CHROMOSOME = frozenset({"#chrom", "chrom", "chr", "chromosome", "variant_contig"})
POSITION = frozenset({"pos", "bp", "position", "genpos", "base_pair_location", "variant_position"})
EFFECT = frozenset(
    {"beta", "or", "z", "effect", "odds_ratio", "hazard_ratio", "variant_linreg_beta"}
)
STANDARD_ERROR = frozenset(  # or the test statistic it follows from (beta / t)
    {"se", "stderr", "standard_error", "log(or)_se", "t_stat", "z_stat", "variant_linreg_t_value"}
)
P_VALUE = frozenset(
    {"p", "pval", "pvalue", "p_value", "p.value", "log10p", "log10_p", "neg_log_10_p_value",
     "variant_linreg_p_value"}
)  # fmt: skip
ALLELE_FREQUENCY = frozenset(
    {"af", "maf", "eaf", "a1_freq", "a1freq", "af_allele2", "effect_allele_frequency"}
)
ALLELE_COUNT = frozenset({"ac", "mac", "alt_ct", "a1_ct", "ac_allele2"})
SAMPLE_SIZE = frozenset({"n", "obs_ct", "n_total"})
SHOWN = 20  # failing variants named in a finding; the rest are counted
RULE = "summary-statistics"


@dataclass(frozen=True)
class Layout:
    """The columns of a summary statistics table that its check reads (None: it has none)."""

    variant: str | None
    chromosome: str | None
    position: str | None
    allele_count: str | None
    frequency: str | None
    sample_size: str | None

    @property
    def columns(self) -> list[str]:
        return [column for column in astuple(self) if column is not None]


def _named(columns: list[str], names: frozenset[str]) -> str | None:
    return next((c for c in columns if c.strip().lower() in names), None)


def layout_of(columns: list[str]) -> Layout | None:
    """The layout of a table with these columns if it is GWAS summary statistics, else None."""
    roles = (VARIANT_ID, CHROMOSOME, POSITION, ALLELE_COUNT, ALLELE_FREQUENCY, SAMPLE_SIZE)
    found = Layout(*(_named(columns, names) for names in roles))
    located = found.variant or (found.chromosome and found.position)
    tested = all(_named(columns, names) for names in (EFFECT, STANDARD_ERROR, P_VALUE))
    counted = found.allele_count or found.frequency or found.sample_size
    return found if located and tested and counted else None


def _shown(value) -> str:
    import pandas as pd

    if pd.isna(value):
        return "?"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _variant(chunk, layout: Layout, index: int) -> str:
    """A variant by its id, or its chromosome and position where it has none."""
    if layout.variant is not None:
        name = _shown(chunk[layout.variant].iloc[index])
        if name not in ("?", ".") or not (layout.chromosome and layout.position):
            return name
    chromosome, position = (chunk[c].iloc[index] for c in (layout.chromosome, layout.position))
    return f"{_shown(chromosome)}:{_shown(position)}"


def _minor_allele_count(chunk, layout: Layout, size):
    import numpy as np
    import pandas as pd

    if layout.allele_count is not None:
        count = pd.to_numeric(chunk[layout.allele_count], errors="coerce")
        return np.minimum(count, 2 * size - count)
    frequency = pd.to_numeric(chunk[layout.frequency], errors="coerce")
    return (2 * size * np.minimum(frequency, 1 - frequency)).round()


def _lacking(layout: Layout) -> str | None:
    """The column the minor allele count or sample size cannot do without, if it is missing."""

    def names(*sets: frozenset[str]) -> str:
        return ", ".join(sorted(name.upper() for names in sets for name in names))

    if layout.sample_size is None:
        return f"a sample size column (one of {names(SAMPLE_SIZE)})"
    if layout.allele_count is None and layout.frequency is None:
        both = names(ALLELE_COUNT, ALLELE_FREQUENCY)
        return f"an allele count or frequency column (one of {both})"
    return None


def check_sumstats(
    columns: list[str], chunks: Iterable, layout: Layout, rules: Rules
) -> list[Finding]:
    """The findings for a summary statistics table with these columns, read as `chunks`
    (DataFrames of the layout's columns, in order)."""
    import numpy as np
    import pandas as pd

    findings = check_identifiers(c for c in columns if c != layout.variant)
    lacking = _lacking(layout)
    if lacking is not None:
        message = f"GWAS summary statistics without {lacking}: its variants cannot be checked"
        return [*findings, Finding(RULE, "fail", message)]
    rows = failing = 0
    shown: list[str] = []
    for chunk in chunks:
        size = pd.to_numeric(chunk[layout.sample_size], errors="coerce")
        minor = _minor_allele_count(chunk, layout, size)
        passing = (minor >= rules.min_allele_count) & (size >= rules.min_sample_size)
        below = np.flatnonzero(~passing.to_numpy())
        shown += [
            f"row {rows + i + 1} {_variant(chunk, layout, i)} "
            f"(MAC {_shown(minor.iloc[i])}, N {_shown(size.iloc[i])})"
            for i in below[: SHOWN - len(shown)]
        ]
        failing += len(below)
        rows += len(chunk)
    mac, n = rules.min_allele_count, rules.min_sample_size
    if not failing:
        message = (
            f"GWAS summary statistics: all {rows} variant(s) have a minor allele count of at "
            f"least {mac} and a sample size of at least {n}"
        )
        return [*findings, Finding(RULE, "pass", message)]
    more = f" and {failing - len(shown)} more" if failing > len(shown) else ""
    message = (
        f"GWAS summary statistics: {failing} of {rows} variant(s) have a minor allele count "
        f"below {mac} or a sample size below {n}: " + "; ".join(shown) + more
    )
    return [*findings, Finding(RULE, "fail", message)]
