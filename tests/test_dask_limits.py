"""A project's Dask limits, cluster options and the client's errors, without a deployment."""

from __future__ import annotations

import pytest

import enclave
from enclave_harness import free_port
from enclave_hub.core.site_config import DaskLimits, SiteConfigError, parse_site_config
from enclave_hub.dask.identity import Principal
from enclave_hub.dask.limits import GIB, LimitExceeded, Usage, allowed_workers, check_growth
from enclave_hub.dask.options import cluster_options
from enclave_hub.dask.scheduler_start import WORKERS_VARIABLE

LIMITS = DaskLimits(
    worker_cores=2,
    worker_memory=4 * GIB,
    cluster_workers=3,
    cluster_cores=4,
    cluster_memory=16 * GIB,
    project_workers=5,
    project_cores=8,
    project_memory=20 * GIB,
)


def workers(count: int, cores: int = 1, memory: int = GIB) -> Usage:
    return Usage.of(count, cores, memory)


def test_within_every_limit_passes():
    check_growth(LIMITS, "p", workers(3), workers(2), "default")


@pytest.mark.parametrize(
    ("wanted", "others", "message"),
    [
        (
            workers(4),
            Usage(),
            "4 workers in one cluster is more than project p may use per "
            "cluster (3 workers, profile 'default')",
        ),
        (
            workers(3, cores=2),
            Usage(),
            "6 cores in one cluster is more than project p may use per cluster (4 cores",
        ),
        (workers(2, memory=9 * GIB), Usage(), "18 GiB of memory in one cluster"),
        (
            workers(2),
            workers(4),
            "2 workers in this cluster, with 4 workers in the project's "
            "other clusters, is more than project p may use in all (5 workers",
        ),
        (
            workers(2, memory=8 * GIB),
            workers(1, memory=5 * GIB),
            "16 GiB of memory in this "
            "cluster, with 5 GiB of memory in the project's other clusters",
        ),
    ],
)
def test_past_a_limit_is_refused_naming_it(wanted, others, message):
    with pytest.raises(LimitExceeded, match=r"^refused: ") as refused:
        check_growth(LIMITS, "p", wanted, others, "default")
    assert message in str(refused.value)


def test_adaptive_scaling_is_capped_by_the_tightest_limit():
    assert allowed_workers(LIMITS, 1, GIB, Usage()) == 3  # workers per cluster
    assert allowed_workers(LIMITS, 2, GIB, Usage()) == 2  # cores per cluster
    assert allowed_workers(LIMITS, 1, 6 * GIB, workers(1, memory=9 * GIB)) == 1  # memory in all
    assert allowed_workers(LIMITS, 1, GIB, workers(5)) == 0


def test_limits_that_do_not_nest_are_refused_naming_the_key():
    bad = {"sessions": {"profiles": {"default": {"dask": {"cluster_workers": 9}}}}}
    with pytest.raises(SiteConfigError) as refused:
        parse_site_config(bad, "site.yaml")
    assert "sessions.profiles.default.dask" in str(refused.value)
    assert "cluster_workers is above project_workers" in str(refused.value)


def test_options_are_bounded_by_the_profile_and_mark_the_project():
    options = cluster_options(LIMITS, "cancer-imaging")
    with pytest.raises(ValueError, match="worker_cores"):
        options.parse_options({"worker_cores": 3})
    with pytest.raises(ValueError, match="worker_memory"):
        options.parse_options({"worker_memory": 5})
    chosen = options.parse_options({"worker_cores": 1, "worker_memory": 1.5})
    config = options.get_configuration(chosen, None)
    assert config["worker_cores"] == config["worker_threads"] == 1
    assert config["worker_memory"] == int(1.5 * GIB)
    # The scheduler asks from the start for the workers the cluster starts with.
    assert config["environment"] == {
        "ENCLAVE_PROJECT": "cancer-imaging",
        WORKERS_VARIABLE: str(LIMITS.default_workers),
    }
    with pytest.raises(ValueError, match="workers"):
        options.parse_options({"workers": -1})


def test_a_principal_is_one_users_session_in_one_project():
    principal = Principal("alice", "cancer-imaging")
    assert principal.name == "alice/cancer-imaging"
    assert Principal.parse(principal.name) == principal


def test_dask_client_outside_a_session_says_so(monkeypatch):
    monkeypatch.delenv("DASK_GATEWAY__ADDRESS", raising=False)
    with pytest.raises(enclave.ClusterUnavailable, match="works in an Enclave session"):
        enclave.dask_client()


def test_dask_client_names_a_gateway_it_cannot_reach():
    import dask

    address = f"http://127.0.0.1:{free_port()}"
    with (
        dask.config.set({"gateway.address": address}),
        pytest.raises(enclave.ClusterUnavailable) as unreachable,
    ):
        enclave.dask_client()
    assert f"The Dask gateway at {address} cannot be reached" in str(unreachable.value)
