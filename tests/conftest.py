"""Shared fixtures: one real deployment (provider, proxy, hub) for the end-to-end tests."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

import pytest
from package_upstream import PackageUpstream, serve_upstream
from postgres_harness import new_database, postgresql_server

from enclave_harness import (
    REFRESH_AGE,
    RunningEnclave,
    free_port,
    make_site_dir,
    require_root,
    start_enclave,
    write_site_config,
)
from enclave_hub.core.site_config import SEED_PROJECTS
from enclave_hub.sandbox.cgroup import sandbox_cgroups
from helm_chart import institution_values, render_whole, whole_chart

# The `browser` fixture: Debian's Chromium driven by Playwright.
pytest_plugins = ["browser_harness"]

# Projects for users that tests create at the provider, besides the demo users.
EXTRA_PROJECTS = [
    {
        "id": "trial",
        "title": "Trial project",
        "members": ["frank", "grace", "ivan", "judy", "kim", "vera"],
    },
    {"id": "tight", "title": "Small resources", "members": ["heidi"], "profile": "small"},
    {"id": "gpu-study", "title": "Needs a GPU", "members": ["heidi"], "profile": "gpu"},
    {
        "id": "audit-day",
        "title": "A day under audit",
        "members": ["lena"],
        "datasets": ["ds-imaging"],
    },
    # Dask clusters (test_e2e_dask): two projects under tight limits, one with a short idle
    # timeout, one to suspend.
    {
        "id": "dask-a",
        "title": "Dask A",
        "members": ["nina", "oscar"],
        "profile": "daskling",
        "datasets": ["ds-dask"],
    },
    {
        "id": "dask-b",
        "title": "Dask B",
        "members": ["pia"],
        "profile": "daskling",
        "datasets": ["ds-dask-b"],
    },
    {"id": "dask-idle", "title": "Dask, idle", "members": ["nina"], "profile": "dask-idle"},
    {"id": "dask-halt", "title": "Dask, suspended", "members": ["pia"], "profile": "daskling"},
    # Attacks on the session boundary (test_e2e_session_boundary).
    {
        "id": "boundary",
        "title": "Session boundary",
        "members": ["sam", "tess", "uma", "vic", "wes"],
        "checkers": ["erin", "rose"],
    },
    # The pages of every role in a browser (test_pages): a researcher and two checkers.
    {
        "id": "pages-study",
        "title": "Pages under test",
        "members": ["uli"],
        "checkers": ["erin", "rose"],
        "datasets": ["ds-imaging"],
    },
    # The airlock (test_e2e_airlock): a researcher and the two demo output checkers.
    {
        "id": "airlock-study",
        "title": "Outputs under review",
        "members": ["quinn"],
        "checkers": ["erin", "rose"],
        "datasets": ["ds-imaging"],
    },
    # The package index (test_e2e_packages): a researcher who installs and asks for packages.
    {"id": "package-study", "title": "Packages wanted", "members": ["pat"]},
    # The R kernel in a session (test_e2e_r).
    {"id": "r-study", "title": "Analyses in R", "members": ["rita"], "checkers": ["erin", "rose"]},
    # Jobs (test_e2e_jobs): a researcher whose jobs outlive her session, and two checkers.
    {
        "id": "job-study",
        "title": "Jobs that outlive",
        "members": ["jody"],
        "checkers": ["erin", "rose"],
    },
]
DATASETS = {
    "cancer-imaging": ["ds-imaging"],
    "cardiac-mri": ["ds-cardiac"],
    "dask-a": ["ds-dask"],
    "dask-b": ["ds-dask-b"],
}
# Workers of half a GiB; two per cluster, three per project.
DASKLING = {
    "worker_cores": 1,
    "worker_memory": "512MiB",
    "default_workers": 2,
    "cluster_workers": 2,
    "cluster_cores": 2,
    "cluster_memory": "1GiB",
    "project_workers": 3,
    "project_cores": 3,
    "project_memory": "1536MiB",
    "idle_timeout": 0,
}
# One worker big enough for sgkit: numba and LLVM alone take the 80% of half a GiB at which Dask
# pauses a worker, and a paused worker leaves the computation waiting for ever.
GENOMICS_DASK = {
    **DASKLING,
    "worker_memory": "1536MiB",
    "default_workers": 1,
    "cluster_workers": 1,
    "cluster_memory": "1536MiB",
    "cluster_cores": 1,
    "project_workers": 1,
    "project_cores": 1,
    "project_memory": "1536MiB",
}


def pytest_sessionstart(session: pytest.Session) -> None:
    """Start from no sandbox cgroup: empty ones an earlier run left are removed; ones that hold
    processes (a deployment running on this machine) stop the suite, named, since the suite's
    sandboxes would take the same names."""
    live = []
    for cgroup in sandbox_cgroups():
        if cgroup.pids():
            live.append(f"{cgroup.name} ({', '.join(str(f) for f in cgroup.folders)})")
        else:
            cgroup.remove()
    if live:
        pytest.exit(
            "sandbox cgroups with processes in them are on this machine: "
            + "; ".join(live)
            + ". Stop the Enclave that runs them (or kill what is left) before the tests.",
            returncode=3,
        )


@dataclass(frozen=True)
class TestHost:
    """Addresses on this machine, outside every session, where tests run servers."""

    ipv4: str = "169.254.251.1"
    ipv6: str = "fd3e:6e63:6c76:ffff::1"
    allowed_port: int = 0


@pytest.fixture(scope="session")
def test_host() -> TestHost:
    host = TestHost(allowed_port=free_port())
    for address in (f"{host.ipv4}/32", f"{host.ipv6}/128"):
        subprocess.run(["ip", "addr", "replace", address, "dev", "lo"], check=True)
    yield host
    for address in (f"{host.ipv4}/32", f"{host.ipv6}/128"):
        subprocess.run(["ip", "addr", "del", address, "dev", "lo"], check=False)


@pytest.fixture(scope="session")
def postgresql():
    """A real PostgreSQL server for the tests that run against both of the registry's databases."""
    require_root()
    with postgresql_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """The deployment database's two kinds: SQLite in a file, and a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'enclave.sqlite'}"
    return new_database(request.getfixturevalue("postgresql"))


@pytest.fixture(scope="session")
def package_upstream(tmp_path_factory) -> PackageUpstream:
    """The internet's package index, stood in for by one on this machine (test_e2e_packages)."""
    upstream, server = serve_upstream(tmp_path_factory.mktemp("upstream"))
    yield upstream
    server.shutdown()


@pytest.fixture(scope="session")
def enclave(test_host, package_upstream) -> RunningEnclave:
    """`enclave up` on free loopback ports, shared by the end-to-end tests."""
    require_root()
    base = make_site_dir()
    projects = [
        {**project.model_dump(), "datasets": DATASETS.get(project.id, [])}
        for project in SEED_PROJECTS
    ] + EXTRA_PROJECTS
    for datasets in DATASETS.values():
        for dataset in datasets:
            (base / "data" / dataset).mkdir(parents=True)
            (base / "data" / dataset / "README.txt").write_text(f"dataset {dataset}\n")
    sessions = {
        "egress_allow": [f"{test_host.ipv4}:{test_host.allowed_port}"],
        "poll_interval": 3,
        "profiles": {
            "default": {"cpus": 1, "memory": "2GiB", "pids": 512},
            "small": {"cpus": 0.5, "memory": "300MiB", "pids": 160},
            "records": {"cpus": 1, "memory": "768MiB", "pids": 512},
            "gpu": {"gpus": 1},
            "daskling": {"cpus": 1, "memory": "2GiB", "pids": 512, "dask": DASKLING},
            "dask-idle": {"dask": {**DASKLING, "idle_timeout": 8}},
            "genomics": {"cpus": 1, "memory": "2GiB", "pids": 512, "dask": GENOMICS_DASK},
        },
    }
    identity = {"refresh_age": REFRESH_AGE}
    packages = {
        "upstream": package_upstream.url,
        "allow": ["enclave-demo-stats", "enclave-demo-util"],
    }
    running = start_enclave(
        write_site_config(
            base, projects=projects, sessions=sessions, identity=identity, packages=packages
        )
    )
    yield running
    assert running.stop() == 0, running.output()


@pytest.fixture(scope="module")
def chart(tmp_path_factory):
    """helm/enclave with the upstream charts of ../shared/charts under its charts/."""
    return whole_chart(tmp_path_factory.mktemp("chart"))


@pytest.fixture(scope="module")
def manifests(chart):
    """Every object the whole chart makes with the example institution's values."""
    return render_whole(chart, institution_values())
