"""Person ids in outputs: a file that holds the commons' person pseudonyms cannot leave.

Inside the enclave one person has one pseudonym in every dataset and every project, so that
their records, images and genome join. Outside it they must not: two projects' outputs that
carried the same pseudonyms could be joined by anyone holding both. So no output may carry
them, whatever its kind: the file's bytes are searched (text, CSV, notebooks, code, archive
members), and the cells of tables stored compressed (Parquet, Excel) once read.
"""

from __future__ import annotations

import re
from pathlib import Path

from enclave.pseudonyms import PSEUDONYM

from . import Finding

PSEUDONYM_BYTES = re.compile(PSEUDONYM.pattern.encode())
BLOCK = 1 << 20
OVERLAP = 64  # more than a pseudonym's length, so that none is split between blocks
MESSAGE = "person ids stay in the enclave: aggregate, or drop the column"


def check_file_bytes(path: Path) -> list[Finding]:
    """A failure when the file's bytes hold person pseudonyms: how many, and the first line."""
    found: set[bytes] = set()
    first_line = None
    newlines_read, tail = 0, b""
    with path.open("rb") as source:
        while block := source.read(BLOCK):
            text = tail + block
            for match in PSEUDONYM_BYTES.finditer(text):
                if match.end() <= len(tail):
                    continue  # wholly in the previous block's tail: seen there
                found.add(match.group())
                if first_line is None:
                    before = newlines_read - tail.count(b"\n")
                    first_line = before + text.count(b"\n", 0, match.start()) + 1
            newlines_read += block.count(b"\n")
            tail = text[-OVERLAP:]
    if not found:
        return []
    where = f"{len(found)} person pseudonym(s) of the commons, the first on line {first_line}"
    return [Finding("person-ids", "fail", f"holds {where}: {MESSAGE}")]


def check_table_cells(frame, where: str = "") -> list[Finding]:
    """A failure naming the columns of a table whose text cells hold person pseudonyms."""
    text = frame.select_dtypes(include=["object", "string", "category"])
    columns = [
        str(column)
        for column in text.columns
        if text[column].astype(str).str.contains(PSEUDONYM.pattern, regex=True).any()
    ]
    if not columns:
        return []
    return [Finding("person-ids", "fail", f"{where}column(s) {', '.join(columns)}: {MESSAGE}")]
