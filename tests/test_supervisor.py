"""Checks `enclave up` makes before it starts anything."""

from __future__ import annotations

import importlib.util

import pytest

from enclave_harness import make_site_dir
from enclave_hub.core.site_config import parse_site_config
from enclave_hub.core.site_secrets import SECRET_NAMES, Secrets
from enclave_hub.local.supervisor import (
    StartupError,
    check_reachable_by_sessions,
    component_plan,
    port_bindings,
)


def test_a_folder_sessions_cannot_pass_through_is_named():
    closed = make_site_dir() / "closed"
    inner = closed / "workspaces"
    inner.mkdir(parents=True)
    closed.chmod(0o700)
    with pytest.raises(StartupError, match=f"{closed} is mode 700"):
        check_reachable_by_sessions(inner, "the session workspace root")
    closed.chmod(0o711)
    check_reachable_by_sessions(inner, "the session workspace root")


@pytest.mark.parametrize("issuer", [None, "https://login.example.org"])
def test_the_plan_runs_modules_that_exist_and_the_hub_last(tmp_path, issuer):
    identity = {"issuer": issuer, "client_id": "enclave"} if issuer else {}
    site = parse_site_config({"state_dir": str(tmp_path), "identity": identity}, "test")
    secrets = Secrets(*(f"secret-{n}" for n in range(len(SECRET_NAMES))))
    plan = component_plan(site, tmp_path / "site.yaml", "/usr/bin/chp", secrets)
    modules = [step.argv[2] for step in plan if step.argv[1:2] == ("-m",)]
    for module in modules:
        assert importlib.util.find_spec(module) is not None, module
    assert ("enclave_hub.local.devidp" in modules) is (issuer is None)
    assert plan[-1].name == "hub" and plan[-1].env == {
        "ENCLAVE_CONFIG": str(tmp_path / "site.yaml")
    }
    proxy = next(step for step in plan if step.name == "proxy")
    assert proxy.argv[0] == "/usr/bin/chp"
    assert proxy.env == {"CONFIGPROXY_AUTH_TOKEN": secrets.proxy_token}
    assert all(secrets.proxy_token not in " ".join(step.argv) for step in plan)


def test_every_port_of_the_site_has_an_address_and_a_purpose_on_one_machine():
    site = parse_site_config({}, "test")
    assert site.uses_dev_provider
    assert set(site.ports) == set(port_bindings(site))
