"""The airlock's checks of a request, against checking the same tables by hand in pandas.

Three requests: 20 small tables (a paper's worth), one table of 1,000,000 rows (about 13 MB),
and a zip of 100 small tables. Enclave's figure is what a submission costs: each file kept in
the store with its SHA-256, then every rule run in the checks' own limited process (the
kinds, minimum counts, zeros, identifiers, row counts; the archive expanded safely). The other
is the least a researcher or checker would do themselves in one Python process: read each
table with pandas and look for counts below 10 (the zip read member by member, unchecked for
bombs). Each in a fresh process; the best of `--rounds`; peak memory counts the checks'
process too.
"""

from __future__ import annotations

import argparse
import io
import resource
import tempfile
import time
import zipfile
from pathlib import Path

from measure import in_child, main_or_child, report

SMALL = "site,sex,n\n" + "".join(f"site-{i},{s},{20 + i}\n" for i in range(100) for s in "FM")


def write_requests(folder: Path) -> dict[str, list[Path]]:
    small = []
    for number in range(20):
        path = folder / f"table-{number}.csv"
        path.write_text(SMALL)
        small.append(path)
    large = folder / "large.csv"
    with large.open("w") as out:
        out.write("region,age_band,n\n")
        for row in range(1_000_000):
            out.write(f"r{row % 997},{row % 9},{10 + row % 50}\n")
    archive = folder / "tables.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for number in range(100):
            bundle.writestr(f"tables/t{number}.csv", SMALL)
    return {
        "20 small tables": small,
        "1,000,000-row table": [large],
        "zip of 100 tables": [archive],
    }


def enclave_check(paths: list[Path]) -> dict:
    from enclave_hub.airlock.checks import Rules
    from enclave_hub.airlock.checks.runner import run_checks
    from enclave_hub.airlock.store import AirlockStore

    rules = Rules(max_file_size=1024**3, max_expanded_size=1024**3)
    with tempfile.TemporaryDirectory() as folder:
        store = AirlockStore(Path(folder))
        started = time.perf_counter()
        files = []
        for path in paths:
            with path.open("rb") as source:
                sha, _ = store.put(source, 1024**3)
            files.append((path.name, store.blob(sha), "output"))
        reports = run_checks(files, rules, timeout=600, memory=8 * 1024**3)
        seconds = time.perf_counter() - started
    outcomes = sorted({r["outcome"] for r in reports})
    return {"seconds": seconds, "outcomes": outcomes}


def pandas_check(paths: list[Path]) -> dict:
    import pandas as pd

    def small_cells(frame) -> int:
        return int(((frame["n"] > 0) & (frame["n"] < 10)).sum())

    started = time.perf_counter()
    found = 0
    for path in paths:
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as bundle:
                for name in bundle.namelist():
                    found += small_cells(pd.read_csv(io.BytesIO(bundle.read(name))))
        else:
            found += small_cells(pd.read_csv(path))
    return {"seconds": time.perf_counter() - started, "small_cells": found}


def child(tool: str, *paths: str) -> None:
    check = enclave_check if tool == "enclave" else pandas_check
    result = check([Path(p) for p in paths])
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    report({**result, "children_peak": children})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        requests = write_requests(Path(folder))
        print(f"Best of {args.rounds} rounds, each tool in a fresh process per round\n")
        print(f"{'request':<22} {'MB':>6} {'pandas s':>9} {'Enclave s':>10} {'ratio':>6} "
              f"{'pandas peak':>12} {'Enclave peak':>13}")  # fmt: skip
        for label, paths in requests.items():
            size = sum(p.stat().st_size for p in paths) / 1e6
            best: dict[str, tuple[float, int]] = {}
            for _ in range(args.rounds):
                for tool in ("pandas", "enclave"):
                    result, peak = in_child(__file__, tool, *map(str, paths))
                    peak = max(peak, result["children_peak"])
                    if tool not in best or result["seconds"] < best[tool][0]:
                        best[tool] = (result["seconds"], peak)
            (base, base_peak), (ours, our_peak) = best["pandas"], best["enclave"]
            print(
                f"{label:<22} {size:>6.1f} {base:>9.3f} {ours:>10.3f} {ours / base:>6.1f} "
                f"{base_peak / 2**20:>9.0f} MiB {our_peak / 2**20:>10.0f} MiB"
            )


if __name__ == "__main__":
    main_or_child(main, child)
