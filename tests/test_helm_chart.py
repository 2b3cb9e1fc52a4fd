"""The Helm chart renders offline, validates for Kubernetes 1.32, and carries the site
configuration with the local keys. Kubernetes cannot run here: what can be checked without a
cluster is checked on what Helm itself renders."""

from __future__ import annotations

import base64

import helm_python
import kubernetes_validate
import pytest
import yaml

from enclave_hub.core.site_config import SiteConfigError, parse_site_config
from enclave_hub.core.site_secrets import SECRET_NAMES
from helm_chart import (
    CHART,
    DEPENDENCIES_OFF,
    chart_values,
    institution_values,
    merged,
    named,
    of_kind,
    render,
    render_templates,
)

ERROR = 3
WARNING = 2


def test_the_chart_depends_on_zero_to_jupyterhub_4_4_and_dask_gateway_2026_3():
    declared = {d["name"]: d for d in helm_python.dependency_list(CHART)}
    assert set(declared) == {"jupyterhub", "dask-gateway"}
    assert declared["jupyterhub"]["version"] == "~4.4.0"
    assert declared["dask-gateway"]["version"] == "~2026.3.0"
    # Not vendored: a render with them on would silently leave their templates out, which is
    # why every render here switches them off through their conditions.
    assert {d["status"] for d in declared.values()} == {"missing"}
    conditions = {
        d["name"]: d.get("condition")
        for d in yaml.safe_load((CHART / "Chart.yaml").read_text())["dependencies"]
    }
    assert conditions == {
        "jupyterhub": "jupyterhub.enabled",
        "dask-gateway": "dask-gateway.enabled",
    }
    values = chart_values()
    assert values["jupyterhub"]["enabled"] is True
    assert values["dask-gateway"]["enabled"] is True


def test_every_template_renders_and_every_object_validates_strictly_for_kubernetes_1_32():
    rendered = render_templates(institution_values())
    templates = {f"enclave/templates/{path.name}" for path in (CHART / "templates").glob("*.yaml")}
    assert set(rendered) == templates
    manifests = render(institution_values())
    kinds = {m["kind"] for m in manifests}
    assert kinds == {
        "ConfigMap",
        "Secret",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
        "NetworkPolicy",
        # The Dask gateway's accounts and roles (templates/dask-gateway-rbac.yaml).
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
    }
    for manifest in manifests:
        kubernetes_validate.validate(manifest, "1.32.0", strict=True)


def test_the_chart_passes_helm_lint_but_for_its_unvendored_dependencies():
    report = helm_python.lint(
        CHART,
        merged(institution_values(), DEPENDENCIES_OFF),
        strict=True,
        kube_version="v1.32.0",
    )
    problems = [m for m in report["messages"] if m["severity"] >= WARNING]
    assert [p["error"] for p in problems] == [
        "chart directory is missing these dependencies: jupyterhub,dask-gateway"
    ]


def test_the_site_configuration_has_the_local_keys_and_where_things_are_in_the_cluster():
    config_map = named(render(institution_values()), "ConfigMap", "enclave-site")
    site = parse_site_config(yaml.safe_load(config_map["data"]["site.yaml"]), "enclave-site")

    assert str(site.identity.issuer) == "https://login.example.ac.uk/realms/research"
    assert site.airlock.reviews_required == 2
    assert site.sessions.profiles["gpu"].gpus == 1
    assert [p.id for p in site.projects] == ["cancer-imaging"]
    assert site.registry.database_url == (
        "postgresql+psycopg://enclave@postgres.tre.example.ac.uk:5432/enclave"
    )
    assert site.kubernetes is not None
    assert site.kubernetes.data_claim == "tre-datasets"  # the institution's existing claim
    assert site.kubernetes.workspace_claim == "enclave-workspaces"
    # Images by digest, as the institution pinned them.
    assert site.kubernetes.session_image == (
        "registry.example.ac.uk/enclave/notebook:0.1.0@sha256:" + "5a" * 32
    )
    assert site.kubernetes.gpu_session_image.endswith(
        "/enclave/notebook-gpu:0.1.0@sha256:" + "7c" * 32
    )
    # The release's namespace, and the allow-list resolver that sessions and Dask pods ask.
    assert site.kubernetes.namespace == "tre"
    assert site.kubernetes.dns_nameservers == ["10.96.0.53"]
    # Services listen on their pods' addresses and find each other by their Services' names.
    assert site.listen_address == "0.0.0.0"
    assert site.audit_url == "http://enclave-audit:8082"
    assert site.hub_url == "http://hub:8081"


def test_a_site_key_enclave_does_not_know_is_refused_by_name():
    values = institution_values(site={"airlock": {"reviews_requird": 1}})
    config_map = named(render(values), "ConfigMap", "enclave-site")
    with pytest.raises(SiteConfigError, match=r"airlock\.reviews_requird: unknown key"):
        parse_site_config(yaml.safe_load(config_map["data"]["site.yaml"]), "enclave-site")


@pytest.mark.parametrize(
    ("missing", "named_key"),
    [
        ({"site": {"identity": {"issuer": None}}}, "site.identity.issuer"),
        ({"database": {"host": None}}, "database.host"),
        ({"network": {"identityProvider": {"cidrs": []}}}, "network.identityProvider.cidrs"),
        ({"network": {"kubernetesApi": {"cidrs": []}}}, "network.kubernetesApi.cidrs"),
        ({"database": {"cidrs": []}}, "database.cidrs"),
        # The workspaces need ReadWriteMany, which no default storage class promises.
        (
            {"storage": {"workspaces": {"storageClassName": ""}}},
            "storage.workspaces.storageClassName",
        ),
        # The hub, the gateway and its controller run Enclave's image, as pinned in images.hub.
        ({"images": {"hub": {"digest": ""}}}, "dask-gateway.controller.image"),
    ],
)
def test_what_an_institution_must_set_is_named_when_missing(missing, named_key):
    with pytest.raises(helm_python.HelmRenderError, match=named_key.replace(".", r"\.")):
        render(institution_values(**missing))


def test_the_chart_defaults_alone_do_not_render_until_the_institution_sets_its_provider():
    with pytest.raises(helm_python.HelmRenderError, match=r"site\.identity\.issuer"):
        render(chart_values())


def test_secrets_are_generated_per_install_and_the_client_secret_is_the_providers():
    first = named(render(institution_values()), "Secret", "enclave-secrets")["data"]
    second = named(render(institution_values()), "Secret", "enclave-secrets")["data"]
    assert "oauth_client_secret" not in first  # issued by the identity provider, not made here
    assert set(first) == set(SECRET_NAMES) - {"oauth_client_secret"}
    for name, value in first.items():
        assert len(base64.b64decode(value)) == 64
        assert value != second[name]
    volume = next(
        v
        for v in named(render(institution_values()), "Deployment", "enclave-airlock")["spec"][
            "template"
        ]["spec"]["volumes"]
        if v["name"] == "enclave-secrets"
    )
    sources = volume["projected"]["sources"]
    assert {"secret": {"name": "enclave-secrets"}} in sources
    assert volume["projected"]["defaultMode"] == 0o400
    hub_volumes = chart_values()["jupyterhub"]["hub"]["extraVolumes"]
    assert next(v for v in hub_volumes if v["name"] == "enclave-secrets") == volume


def test_the_services_keep_their_state_on_their_own_volumes():
    manifests = render(institution_values())
    claims = {c["metadata"]["name"] for c in of_kind(manifests, "PersistentVolumeClaim")}
    # The datasets' claim is the institution's own (storage.datasets.existingClaim).
    assert claims == {"enclave-workspaces", "enclave-audit", "enclave-airlock", "enclave-packages"}
    for service, paths in {
        "audit": {"/var/lib/enclave/audit", "/var/lib/enclave/audit-key"},
        "airlock": {"/var/lib/enclave/airlock"},
        "packages": {"/var/lib/enclave/packages"},
    }.items():
        pod = named(manifests, "Deployment", f"enclave-{service}")["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        state = {m["mountPath"] for m in container["volumeMounts"] if m["name"] == "state"}
        assert state == paths
        volume = next(v for v in pod["volumes"] if v["name"] == "state")
        assert volume["persistentVolumeClaim"]["claimName"] == f"enclave-{service}"
        assert container["command"][-2:] == ["--config", "/etc/enclave/site.yaml"]


def test_a_named_witness_claim_is_the_audit_services_witness_and_the_pin_passes_through():
    fingerprint = "sha256:" + "ab" * 32
    values = merged(
        institution_values(),
        {
            "storage": {"auditWitness": {"existingClaim": "tre-audit-witness"}},
            "site": {"audit": {"key_fingerprint": fingerprint}},
        },
    )
    manifests = render(values)
    config_map = named(manifests, "ConfigMap", "enclave-site")
    site = parse_site_config(yaml.safe_load(config_map["data"]["site.yaml"]), "enclave-site")
    assert site.audit.key_fingerprint == fingerprint
    assert str(site.audit.witness_dir) == "/var/lib/enclave-witness"
    pod = named(manifests, "Deployment", "enclave-audit")["spec"]["template"]["spec"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "witness"]
    assert mount["mountPath"] == str(site.audit.witness_dir) and not mount.get("readOnly")
    (volume,) = [v for v in pod["volumes"] if v["name"] == "witness"]
    assert volume["persistentVolumeClaim"]["claimName"] == "tre-audit-witness"
    for other in ("registry", "airlock", "inquiry", "packages"):
        spec = named(manifests, "Deployment", f"enclave-{other}")["spec"]["template"]["spec"]
        assert "witness" not in {v["name"] for v in spec["volumes"]}
    unwitnessed = yaml.safe_load(
        named(render(institution_values()), "ConfigMap", "enclave-site")["data"]["site.yaml"]
    )
    assert "witness_dir" not in unwitnessed.get("audit", {})
