"""The site configuration: defaults that work, and errors that name the bad key."""

from __future__ import annotations

import stat

import pytest

from enclave_hub.core.site_config import (
    SiteConfigError,
    load_site_config,
    parse_site_config,
    write_default_site_config,
)


def test_an_empty_file_is_a_working_single_machine_deployment(tmp_path):
    path = tmp_path / "enclave.yaml"
    path.write_text("")
    site = load_site_config(path)
    assert site.uses_dev_provider
    assert site.public_url == "http://localhost:8000"  # sessions at <user>.localhost
    roles = sorted(user.role for user in site.identity.dev_provider.users)
    expected = ["admin", "auditor", "output checker", "output checker", "researcher"]
    expected += ["researcher", "researcher of no project yet"]
    assert roles == expected
    # Two output checkers, so that the demo project's exports can be released.
    demo = next(p for p in site.projects if p.id == "cancer-imaging")
    assert len(demo.checkers) == site.airlock.reviews_required == 2


def test_the_default_file_is_private_and_loads_back(tmp_path):
    path = write_default_site_config(tmp_path / "state")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_site_config(path).state_dir == tmp_path / "state"


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"hub": {"prot": 8000}}, "hub.prot: unknown key"),
        ({"hub": {"port": "eighty"}}, "hub.port"),
        ({"hub": {"port": 70000}}, "hub.port"),
        ({"identity": {"issuer": "not a url"}}, "identity.issuer"),
        ({"projects": [{"id": "Bad Id!", "title": "x"}]}, "projects.0.id"),
        ({"sessions": {"uid_base": 0}}, "sessions.uid_base"),
        ({"hub": {"port": 9400}}, "identity.dev_provider.port and hub.port"),
        ({"identity": {"allowed_groups": []}}, "allowed_groups"),
    ],
)
def test_a_bad_key_is_named(data, named):
    with pytest.raises(SiteConfigError) as error:
        parse_site_config(data, "site.yaml")
    assert named in str(error.value)
    assert str(error.value).startswith("site.yaml: ")


def test_yaml_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "enclave.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(SiteConfigError, match="top level must be a mapping"):
        load_site_config(path)


def test_broken_yaml_names_the_file(tmp_path):
    path = tmp_path / "enclave.yaml"
    path.write_text("hub: {port: [8000\n")
    with pytest.raises(SiteConfigError, match=f"{path}: not valid YAML"):
        load_site_config(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(SiteConfigError, match=r"nothere\.yaml: cannot read"):
        load_site_config(tmp_path / "nothere.yaml")


def test_the_platform_role_comes_from_the_identity_groups_admin_first(tmp_path):
    site = parse_site_config(
        {"identity": {"admin_groups": ["ops"]}, "audit": {"auditor_groups": ["audit", "ops"]}},
        "site.yaml",
    )
    assert site.platform_role(["ops"]) == "admin"
    assert site.platform_role(["audit", "x"]) == "auditor"
    assert site.platform_role(["researchers"]) is None
    assert site.platform_role([]) is None


def test_sessions_get_origins_of_their_own_unless_the_hub_has_only_an_address():
    site = parse_site_config({}, "site.yaml")
    assert site.hub.user_subdomains and site.public_url == "http://localhost:8000"
    with pytest.raises(
        SiteConfigError, match=r"hub\.user_subdomains: .* 192\.0\.2\.7 is an address"
    ):
        parse_site_config({"hub": {"public_url": "http://192.0.2.7:8000"}}, "site.yaml")
    by_address = {"hub": {"public_url": "http://192.0.2.7:8000", "user_subdomains": False}}
    assert parse_site_config(by_address, "site.yaml").public_url == "http://192.0.2.7:8000"
