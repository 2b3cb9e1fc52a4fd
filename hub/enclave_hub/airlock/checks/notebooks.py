"""Notebooks leave as code only: every output (which may show data) must be cleared first."""

from __future__ import annotations

import json
from pathlib import Path

from . import Finding


def check_notebook(path: Path) -> list[Finding]:
    try:
        notebook = json.loads(path.read_bytes())
        cells = notebook["cells"]
        if not isinstance(cells, list):
            raise TypeError("'cells' is not a list")
    except (ValueError, KeyError, TypeError) as error:
        return [Finding("notebook", "fail", f"not a readable notebook ({error})")]
    with_outputs = [
        number
        for number, cell in enumerate(cells, 1)
        if isinstance(cell, dict) and cell.get("cell_type") == "code" and cell.get("outputs")
    ]
    findings = []
    if with_outputs:
        shown = ", ".join(map(str, with_outputs[:10]))
        findings.append(
            Finding(
                "notebook-outputs",
                "fail",
                f"{len(with_outputs)} cell(s) carry outputs (cells {shown}): clear all outputs "
                "and request it again",
            )
        )
    attached = [
        number
        for number, cell in enumerate(cells, 1)
        if isinstance(cell, dict) and cell.get("attachments")
    ]
    if attached:
        findings.append(
            Finding(
                "notebook-attachments",
                "flag",
                f"cell(s) {', '.join(map(str, attached))} embed attachments (images): a checker "
                "must look at them",
            )
        )
    return findings or [Finding("notebook-outputs", "pass", f"{len(cells)} cells, no outputs")]
