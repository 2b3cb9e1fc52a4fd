"""VCF text parsed by compiled code: where each data line starts and its eight site columns
end, and the sample columns of whole lines into arrays (GT, and FORMAT fields of one Integer or
Float each), with the values htslib would read and bio2zarr would store: a missing value -1
(floats: bio2zarr's missing NaN), an allele a shorter call lacks -2, a haploid call phased.

What it cannot read exactly so (a vector, an unknown key, a float of more than 15 digits, more
alleles than the ploidy), it reports by a reason code rather than guess, and the caller
converts the file with bio2zarr instead."""

from __future__ import annotations

import numba
import numpy as np

GT, INTEGER, FLOAT = 0, 1, 2
INT_MISSING, INT_FILL = -1, -2
FLOAT_MISSING_BITS = 0x7F800001  # a signalling NaN: set through an int32 view, not as a float

PARSED = 0
REASONS = {
    1: "a FORMAT key the header does not declare as GT or a single Integer or Float",
    2: "a call with more alleles than the first call's",
    3: "a GT that is not alleles separated by / or |",
    4: "a FORMAT value that is not one plain number",
    5: "a line whose columns are not the header's",
}
UNKNOWN_KEY, PLOIDY, GT_FORM, NUMBER, COLUMNS = 1, 2, 3, 4, 5

TAB, NEWLINE, COLON, DOT, SLASH, PIPE, MINUS, PLUS = 9, 10, 58, 46, 47, 124, 45, 43
ZERO, NINE, LOWER_E, UPPER_E = 48, 57, 101, 69
SITE_COLUMNS = 8
MAX_ALLELE = 126  # alleles are int8; bio2zarr's own limit for that width
MAX_DIGITS = 15  # significant digits a double holds exactly: decimal to double is then exact
POWERS_OF_TEN = np.array([10.0**e for e in range(23)])  # exact doubles (Clinger's fast path)


ONES = np.uint64(0x0101010101010101)
HIGH_BITS = np.uint64(0x8080808080808080)
NEWLINES = np.uint64(0x0A0A0A0A0A0A0A0A)


@numba.njit(cache=True, nogil=True)
def line_starts(text):
    """The offset just past each newline of `text`, found eight bytes at a time: a word holds
    a newline where `word ^ NEWLINES` has a zero byte (the lines are long, so most words
    have none)."""
    found = []
    words = len(text) // 8
    view = text[: words * 8].view(np.uint64)
    for w in range(words):
        x = view[w] ^ NEWLINES
        if (x - ONES) & ~x & HIGH_BITS:
            for pos in range(w * 8, w * 8 + 8):
                if text[pos] == NEWLINE:
                    found.append(pos + 1)
    for pos in range(words * 8, len(text)):
        if text[pos] == NEWLINE:
            found.append(pos + 1)
    return np.array(found, dtype=np.int64)


@numba.njit(cache=True, nogil=True)
def site_ends(text, starts, at_end):
    """For each line start, the offset just past its eighth column (its newline or tab), or -1
    where the text ends first (unless `at_end`, the end of the file, which ends the line)."""
    ends = np.full(len(starts), -1, dtype=np.int64)
    for i in range(len(starts)):
        pos = starts[i]
        tabs = 0
        while pos < len(text):
            c = text[pos]
            if c == NEWLINE:
                break
            if c == TAB:
                tabs += 1
                if tabs == SITE_COLUMNS:
                    break
            pos += 1
        if pos < len(text) or at_end:
            ends[i] = pos
    return ends


@numba.njit(cache=True, nogil=True)
def whole_lines_end(text):
    """How far `text` holds whole lines: just past its last newline (0 if none)."""
    for pos in range(len(text) - 1, -1, -1):
        if text[pos] == NEWLINE:
            return pos + 1
    return 0


@numba.njit(cache=True, nogil=True)
def gather_sites(text, starts, ends):
    """The site columns of each line, each followed by a newline, as one byte array."""
    out = np.empty(int(np.sum(ends - starts)) + len(starts), dtype=np.uint8)
    at = 0
    for i in range(len(starts)):
        size = ends[i] - starts[i]
        out[at : at + size] = text[starts[i] : ends[i]]
        out[at + size] = NEWLINE
        at += size + 1
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _field_of(text, start, stop, keys, key_lengths):
    for field in range(len(key_lengths)):
        if key_lengths[field] != stop - start:
            continue
        same = True
        for k in range(stop - start):
            if keys[field, k] != text[start + k]:
                same = False
                break
        if same:
            return field
    return -1


@numba.njit(cache=True, nogil=True, inline="always")
def _is_end(c):
    return c in (COLON, TAB, NEWLINE)


@numba.njit(cache=True, nogil=True, inline="always")
def _integer(text, pos):
    """(value, position after it, reason) of a plain decimal integer at `pos`."""
    negative = text[pos] == MINUS
    if negative or text[pos] == PLUS:
        pos += 1
    value = 0
    digits = 0
    while ZERO <= text[pos] <= NINE:
        value = value * 10 + (text[pos] - ZERO)
        digits += 1
        if value > 2147483647:
            return 0, pos, NUMBER
        pos += 1
    if digits == 0 or not _is_end(text[pos]):
        return 0, pos, NUMBER
    if negative:
        value = -value
    if value <= -2147483641:  # htslib reserves these for missing and vector ends
        return 0, pos, NUMBER
    return value, pos, PARSED


@numba.njit(cache=True, nogil=True, inline="always")
def _float(text, pos):
    """(value, position after it, reason) of a decimal at `pos`, rounded as htslib rounds:
    to the nearest double (exact here: at most 15 digits times an exact power of ten), then
    to float32."""
    negative = text[pos] == MINUS
    if negative or text[pos] == PLUS:
        pos += 1
    mantissa = 0
    significant = 0
    exponent = 0
    digits = 0
    fraction = False
    while True:
        c = text[pos]
        if ZERO <= c <= NINE:
            digits += 1
            if mantissa > 0 or c != ZERO:
                significant += 1
                if significant > MAX_DIGITS:
                    return 0.0, pos, NUMBER
                mantissa = mantissa * 10 + (c - ZERO)
            if fraction:
                exponent -= 1
        elif c == DOT and not fraction:
            fraction = True
        else:
            break
        pos += 1
    if digits == 0:
        return 0.0, pos, NUMBER
    if text[pos] == LOWER_E or text[pos] == UPPER_E:
        pos += 1
        power, pos, reason = _integer_in_float(text, pos)
        if reason != PARSED:
            return 0.0, pos, reason
        exponent += power
    if not _is_end(text[pos]):
        return 0.0, pos, NUMBER
    if mantissa == 0:
        value = 0.0
    elif exponent > 22 or exponent < -22:
        return 0.0, pos, NUMBER
    elif exponent >= 0:
        value = mantissa * POWERS_OF_TEN[exponent]
    else:
        value = mantissa / POWERS_OF_TEN[-exponent]
    return (-value if negative else value), pos, PARSED


@numba.njit(cache=True, nogil=True, inline="always")
def _integer_in_float(text, pos):
    negative = text[pos] == MINUS
    if negative or text[pos] == PLUS:
        pos += 1
    value = 0
    digits = 0
    while ZERO <= text[pos] <= NINE and digits < 4:
        value = value * 10 + (text[pos] - ZERO)
        digits += 1
        pos += 1
    if digits == 0 or not _is_end(text[pos]):
        return 0, pos, NUMBER
    return (-value if negative else value), pos, PARSED


@numba.njit(cache=True, nogil=True, inline="always")
def _is_allele(c):
    """A one-character allele: a digit or the missing dot."""
    return ZERO <= c <= NINE or c == DOT


@numba.njit(cache=True, nogil=True, inline="always")
def _allele(c):
    return -1 if c == DOT else c - ZERO


@numba.njit(cache=True, nogil=True, inline="always")
def _genotype(text, pos, gt, phased, row, sample):
    """Parse one GT at `pos` into `gt[row, sample]` and `phased[row, sample]`."""
    ploidy = gt.shape[2]
    if (  # the usual 0/1 or .|. at once
        ploidy == 2
        and _is_allele(text[pos])
        and text[pos + 1] in (SLASH, PIPE)
        and _is_allele(text[pos + 2])
        and _is_end(text[pos + 3])
    ):
        gt[row, sample, 0] = _allele(text[pos])
        gt[row, sample, 1] = _allele(text[pos + 2])
        phased[row, sample] = text[pos + 1] == PIPE
        return pos + 3, PARSED
    alleles = 0
    second_phased = False
    while True:
        c = text[pos]
        if c == DOT:
            allele = -1
            pos += 1
        elif ZERO <= c <= NINE:
            allele = 0
            while ZERO <= text[pos] <= NINE:
                allele = allele * 10 + (text[pos] - ZERO)
                if allele > MAX_ALLELE:
                    return pos, NUMBER
                pos += 1
        else:
            return pos, GT_FORM
        if alleles == ploidy:
            return pos, PLOIDY
        gt[row, sample, alleles] = allele
        alleles += 1
        c = text[pos]
        if c in (SLASH, PIPE):
            if alleles == 1:
                second_phased = c == PIPE
            pos += 1
            continue
        if not _is_end(c):
            return pos, GT_FORM
        break
    for extra in range(alleles, ploidy):
        gt[row, sample, extra] = INT_FILL
    phased[row, sample] = alleles == 1 or second_phased
    return pos, PARSED


@numba.njit(cache=True, nogil=True, inline="always")
def _one_char_allele(c):
    """The allele of a one-character GT part (a digit or the missing dot), or -3 if not one."""
    if c == DOT:
        return -1
    digit = c - ZERO
    return digit if 0 <= digit <= 9 else -3


@numba.njit(cache=True, nogil=True)
def _usual_calls(text, pos, first_sample, keys_in_line, line_slots, gt_row, phased_row, ints, row):
    """Parse the usual calls of a line of GT then integers (`\t0/1:23:45`: one-character
    alleles, every field present, each a plain unsigned number or the missing dot) from
    `first_sample` on, `pos` at the tab before it. Returns (position, sample) of the first call that
    is anything else (its integers written so far are what the general parser writes again)
    or of the line's end."""
    for sample in range(first_sample, phased_row.shape[0]):
        if text[pos] != TAB:
            return pos, sample
        at = pos + 1
        first = _one_char_allele(text[at])
        separator = text[at + 1]
        second = _one_char_allele(text[at + 2])
        if first == -3 or second == -3 or (separator != SLASH and separator != PIPE):
            return pos, sample
        at += 3
        for key in range(1, keys_in_line):
            if text[at] != COLON:
                return pos, sample
            at += 1
            digit = np.int64(text[at]) - ZERO
            if digit < 0 or digit > 9:
                if text[at] != DOT:
                    return pos, sample
                ints[line_slots[key], row, sample] = INT_MISSING
                at += 1
                continue
            value = digit
            digits = 1
            at += 1
            while True:
                digit = np.int64(text[at]) - ZERO
                if digit < 0 or digit > 9:
                    break
                value = value * 10 + digit
                digits += 1
                at += 1
            if digits > 9:
                return pos, sample
            ints[line_slots[key], row, sample] = value
        if text[at] != TAB and text[at] != NEWLINE:
            return pos, sample
        gt_row[sample, 0] = first
        gt_row[sample, 1] = second
        phased_row[sample] = separator == PIPE
        pos = at
    return pos, phased_row.shape[0]


@numba.njit(cache=True, nogil=True)
def parse_calls(text, pos, end, row, keys, key_lengths, kinds, slots, gt, phased, ints, floats):
    """Parse the whole lines of `text[pos:end]` into rows from `row` on, until the arrays
    (rows x samples) are full. Returns (position reached, next row, reason: PARSED or why
    not)."""
    rows, samples = phased.shape
    float_bits = floats.view(np.int32)
    order = np.empty(len(kinds), dtype=np.int64)
    line_slots = np.empty(len(kinds), dtype=np.int64)
    in_line = np.empty(len(kinds), dtype=np.bool_)
    while pos < end and row < rows:
        tabs = 0
        while tabs < SITE_COLUMNS:
            c = text[pos]
            if c == NEWLINE:
                return pos, row, COLUMNS
            if c == TAB:
                tabs += 1
            pos += 1
        keys_in_line = 0
        start = pos
        while True:
            c = text[pos]
            if _is_end(c):
                field = _field_of(text, start, pos, keys, key_lengths)
                if field < 0 or keys_in_line == len(kinds):
                    return pos, row, UNKNOWN_KEY
                order[keys_in_line] = field
                keys_in_line += 1
                if c != COLON:
                    break
                start = pos + 1
            pos += 1
        # GT then integers (GT alone parses as fast the general way)
        usual = gt.shape[2] == 2 and keys_in_line > 1 and kinds[order[0]] == GT
        in_line[:] = False
        for key in range(keys_in_line):
            line_slots[key] = slots[order[key]]
            in_line[order[key]] = True
            usual = usual and (key == 0 or kinds[order[key]] == INTEGER)
        # A field the line lacks is missing in all its calls; the general parser below sets
        # each call it reads to missing first, the usual one writes every field of the line.
        for field in range(len(kinds)):
            if in_line[field] or kinds[field] == GT:
                continue
            if kinds[field] == INTEGER:
                ints[slots[field], row] = INT_MISSING
            else:
                float_bits[slots[field], row] = FLOAT_MISSING_BITS
        sample = 0
        while True:
            if usual:
                pos, sample = _usual_calls(
                    text, pos, sample, keys_in_line, line_slots, gt[row], phased[row], ints, row
                )
            if sample == samples:
                break
            if text[pos] != TAB:
                return pos, row, COLUMNS
            pos += 1
            gt[row, sample] = INT_MISSING
            phased[row, sample] = False
            ints[:, row, sample] = INT_MISSING
            float_bits[:, row, sample] = FLOAT_MISSING_BITS
            key = 0
            while True:
                if key == keys_in_line:
                    return pos, row, NUMBER
                field = order[key]
                kind = kinds[field]
                if kind == GT:
                    pos, reason = _genotype(text, pos, gt, phased, row, sample)
                elif text[pos] == DOT and _is_end(text[pos + 1]):
                    pos += 1
                    reason = PARSED
                elif kind == INTEGER:
                    value, pos, reason = _integer(text, pos)
                    ints[slots[field], row, sample] = value
                else:
                    number, pos, reason = _float(text, pos)
                    floats[slots[field], row, sample] = number
                if reason != PARSED:
                    return pos, row, reason
                if text[pos] != COLON:
                    break
                pos += 1
                key += 1
            sample += 1
        if text[pos] != NEWLINE:
            return pos, row, COLUMNS
        pos += 1
        row += 1
    return pos, row, PARSED
