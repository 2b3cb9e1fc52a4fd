"""`enclave up` on a machine that never ran it, and after a run that was killed.

The first test is a newcomer's first ten minutes: the hub's address is not on loopback, the
demo datasets are not ingested, and the README's tour is run, block by block, as it is written,
in alice's session. Ctrl-C must then leave the machine as it was, but for the state folder.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import dask.array as da
import httpx
import pytest
import yaml

from enclave.omop import Cohort, concept_set, open_omop
from enclave_harness import (
    SessionNotebook,
    make_site_dir,
    sandbox_namespaces,
    session_server_pids,
    start_enclave,
    write_site_config,
)
from enclave_hub.local.leftovers import RunRecord, remove_leftovers
from enclave_hub.sandbox.cgroup import sandbox_cgroups

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

README = Path(__file__).parents[1] / "README.md"
COMPONENTS = (
    "development OIDC provider",
    "audit service",
    "proxy",
    "registry service",
    "airlock service",
    "inquiry service",
    "Dask gateway",
    "hub",
)


def _lines(*argv: str) -> list[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()


def machine_state() -> dict[str, list[str]]:
    """What `enclave up` adds to this machine while it runs (in the suite's namespaces)."""
    return {
        "loopback addresses": sorted(line.split()[3] for line in _lines("ip", "-o", "addr")),
        "links": sorted(line.split()[0] for line in _lines("ip", "-brief", "link")),
        "network namespaces": sorted(sandbox_namespaces()),
        "nftables tables": _lines("nft", "list", "tables"),
        "sandbox cgroups": [cgroup.name for cgroup in sandbox_cgroups()],
    }


def tour_blocks() -> list[str]:
    """The Python blocks of the README's tour for researchers, in order."""
    text = README.read_text()
    tour = text[text.index("## A tour for each role") : text.index("**Admin.**")]
    return re.findall(r"```python\n(.*?)```", tour, re.DOTALL)


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


# What the tour's results say, checked against the data root on the host.
TOUR_RESULTS = """
import json
print(json.dumps({
    "datasets": enclave.datasets(),
    "tiles": len(list(s.tiles(512, level=0, overlap=0))),
    "region": list(s.read_region((1000, 1200), 0, (512, 512)).size),
    "view": type(enclave.view(s)).__name__,
    "volume": list(v.shape),
    "nifti": __import__("os").path.getsize("ct.nii.gz"),
    "cells": a.n_obs,
    "pca": list(a.obsm["X_pca"].shape),
    "colour": pixels.mean(axis=(1, 2)).compute().tolist(),
    "export": [r.status, len(enclave.export_requests())],
    "cohort": cohort.count(),
    "cases": int(g["sample_case"].sum()),
    "top": str(gwas["variant_id"].values[top]),
    "near": [int(near.sizes["variants"]), int(g.sizes["samples"])],
    "someone": sorted(k for k in ("records", "volumes", "slides", "genotypes", "cells")
                      if getattr(someone, k)),
    "people": people.groupby("dataset")["person"].nunique().to_dict(),
}))
"""


# The tour's export request, after each block: none yet, failed checks, then in review.
EXPORT_SO_FAR = """
import json
print(json.dumps({"status": r.status, "problems": r.problems()} if "r" in globals() else None))
"""


def test_a_new_machine_runs_the_readme_tour_and_is_left_as_found():
    base = make_site_dir()
    config = write_site_config(base, demo_datasets=True)
    hub_address = yaml.safe_load(config.read_text())["sessions"]["hub_address"]
    subprocess.run(["ip", "addr", "del", f"{hub_address}/32", "dev", "lo"], capture_output=True)
    before = machine_state()
    assert not any(a.startswith(f"{hub_address}/") for a in before["loopback addresses"])

    enclave = start_enclave(config, timeout=240)
    try:
        output = enclave.output()
        for dataset in ("ds-pathology", "ds-ct", "ds-rna", "ds-emr", "ds-genomes"):
            assert f"Demo dataset {dataset}: " in output and "ingested." in output, output
            assert f"Demo dataset {dataset} granted to cancer-imaging." in output, output
        login_page = httpx.get(f"{enclave.url}/hub/login", timeout=30)
        assert login_page.status_code == 200 and "Sign in" in login_page.text
        components = {p.name: p.pid for p in RunRecord(enclave.state_dir / "run").processes()}
        assert set(COMPONENTS) <= set(components)

        alice = SessionNotebook(enclave, "alice", "cancer-imaging")
        exports = []
        for block in tour_blocks():
            alice.kernel.execute(block)  # raises with the kernel's traceback on any error
            exports.append(alice.run(EXPORT_SO_FAR))
        results = alice.run(TOUR_RESULTS)
        (server_pid,) = session_server_pids(enclave, "alice", "cancer-imaging")
        alice.stop()
    finally:
        stopped = enclave.stop()

    assert stopped == 0, enclave.output()
    assert results["datasets"] == ["ds-ct", "ds-emr", "ds-genomes", "ds-pathology", "ds-rna"]
    assert results["tiles"] > 0 and results["region"] == [512, 512]
    assert results["view"] == "Snapshot"
    assert results["volume"] == [5, 16, 16] and results["nifti"] > 0
    assert results["cells"] == 700 and results["pca"] == [700, 30]
    level0 = da.from_zarr(base / "data" / "ds-pathology" / "cmu_small_region.ome.zarr", "0")
    assert results["colour"] == pytest.approx(level0.mean(axis=(1, 2)).compute().tolist())
    assert results["export"] == ["in-review", 1]
    host = open_omop("ds-emr/omop-demo", root=base / "data")
    expected = (
        Cohort(host, "condition_occurrence", concept_set(host, [201826]))
        .require("drug_exposure", concept_set(host, [1503297]), within_days=(0, 30))
        .age_at_index(minimum=50)
    )
    assert results["cohort"] == expected.count() > 0
    # The genotypes' samples are the records' persons: every case of the records is a sample.
    diagnosed = Cohort(host, "condition_occurrence", concept_set(host, [201826])).count()
    assert results["cases"] == diagnosed > 0
    assert results["top"] == "rs7903146" and results["near"][1] == 500
    assert 0 < results["near"][0] < 2000
    # One person of the records has a CT, a slide and a genome; the cells are another's.
    assert results["someone"] == ["genotypes", "records", "slides", "volumes"]
    counts = {"ds-ct": 1, "ds-emr": 500, "ds-genomes": 500, "ds-pathology": 1, "ds-rna": 1}
    assert results["people"] == counts
    statuses = [export["status"] for export in exports if export]
    assert statuses == ["checks-failed", "in-review"], exports
    (failed,) = [export["problems"] for export in exports if export][:1]
    assert any("CD4+/CD45RA+/CD25- Naive T" in problem for problem in failed), failed
    assert machine_state() == before
    assert not [name for name, pid in components.items() if _alive(pid)]
    assert not _alive(server_pid)


def test_after_a_kill_9_the_next_enclave_up_cleans_up_and_sessions_run():
    config = write_site_config(make_site_dir())
    first = start_enclave(config)
    record = RunRecord(first.state_dir / "run")
    try:
        alice = SessionNotebook(first, "alice", "genomics-pilot")
        assert alice.run("import json; print(json.dumps(6 * 7))") == 42
        (server_pid,) = session_server_pids(first, "alice", "genomics-pilot")
        (namespace,) = _lines("ip", "netns", "identify", str(server_pid))
        left = [p for p in record.processes() if p.name in COMPONENTS]
        first.process.kill()  # kill -9 of `enclave up` itself, with a session running
        first.process.wait()
        assert _alive(server_pid) and all(p.alive() for p in left)
        second = start_enclave(config)
    except BaseException:
        remove_leftovers(record, first.site.sessions.workspace_root, print)
        raise
    try:
        output = second.output()
        for process in left:
            line = f"An earlier run left its {process.name} running (pid {process.pid})"
            assert line in output, output
        number = namespace.removeprefix("enclave-s")
        assert re.search(
            rf"An earlier run left sandbox {number} \(network namespace {namespace}, "
            rf"link enc{number}h, cgroup s{number}, folder \S+, \d+ processes\): removed it\.",
            output,
        ), output
        assert not _alive(server_pid)
        assert not [p for p in left if p.alive()]

        again = SessionNotebook(second, "alice", "genomics-pilot")
        assert again.run("import json; print(json.dumps(6 * 7))") == 42
        again.stop()
    finally:
        assert second.stop() == 0, second.output()
