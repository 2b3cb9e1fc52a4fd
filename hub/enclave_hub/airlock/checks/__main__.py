"""The checks process (see `runner`): a request on stdin, the reports as JSON on stdout."""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import tempfile
from pathlib import Path

from . import Rules
from .files import check_files


def _limit_self(memory: int, cpu: int, file_size: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))


def main() -> None:
    request = json.load(sys.stdin)
    rules = Rules(**request["rules"])
    limits = request["limits"]
    _limit_self(limits["memory"], limits["cpu"], max(rules.max_file_size, rules.max_expanded_size))
    folder = Path(tempfile.mkdtemp(prefix="airlock-checks-"))
    try:
        files = []
        for number, entry in enumerate(request["files"]):
            copy = folder / f"file-{number}"
            with os.fdopen(entry["fd"], "rb") as source, copy.open("wb") as out:
                shutil.copyfileobj(source, out)
            files.append((entry["name"], copy, entry["role"]))
        reports = check_files(files, rules)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    json.dump([report.as_dict() for report in reports], sys.stdout)


if __name__ == "__main__":
    main()
