"""The whole chart: helm/enclave rendered with its two dependencies, the upstream charts of
../shared/charts (Zero to JupyterHub 4.4.0, dask-gateway 2026.3.0), as an install renders it.

Every object is checked strictly for Kubernetes 1.32 (Traefik's custom resources against the
CRDs dask-gateway's chart ships), checkov reports nothing on Enclave's own objects and only
what tests/checkov_skips.yaml says why on the dependencies', and the names Enclave computes
agree with those the dependencies give their objects. checkov runs from its own virtual
environment (`ENCLAVE_CHECKOV`, by default .venv/checkov/bin/checkov): its pins are not the
project's.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

from enclave_hub.core.site_config import parse_site_config
from enclave_hub.dask.cluster_pods import cluster_settings
from helm_chart import (
    DEPENDENCY_CHARTS,
    NAMESPACE,
    UPSTREAM,
    institution_values,
    named,
    of_kind,
    render_whole,
)
from kube_sessions import kube_spawner_config, no_cluster, seeded_registry, session_pod

ROOT = Path(__file__).parents[1]
CHECKOV = Path(os.environ.get("ENCLAVE_CHECKOV", ROOT / ".venv" / "checkov" / "bin" / "checkov"))
SKIPS = Path(__file__).with_name("checkov_skips.yaml")
TRAEFIK_CRDS = UPSTREAM / DEPENDENCY_CHARTS["dask-gateway"] / "crds" / "traefik.yaml"


def own(manifest: dict) -> bool:
    """Whether an object is Enclave's own (its labels say so), not a dependency's."""
    return manifest["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "enclave"


def strict(schema: dict) -> dict:
    """A CRD's structural schema that refuses fields it does not name, as the API server's
    strict field validation does."""
    schema = dict(schema)
    if "properties" in schema:
        schema["properties"] = {k: strict(v) for k, v in schema["properties"].items()}
        if not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema.setdefault("additionalProperties", False)
    if isinstance(schema.get("items"), dict):
        schema["items"] = strict(schema["items"])
    if isinstance(schema.get("additionalProperties"), dict):
        schema["additionalProperties"] = strict(schema["additionalProperties"])
    return schema


def crd_schemas() -> dict[tuple[str, str], dict]:
    """Each Traefik resource's schema, by (apiVersion, kind)."""
    schemas = {}
    for crd in yaml.safe_load_all(TRAEFIK_CRDS.read_text()):
        if not crd:
            continue
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = strict(version["schema"]["openAPIV3Schema"])
            schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def test_every_object_of_the_whole_chart_validates_strictly_for_kubernetes_1_32(manifests):
    kinds = {m["kind"] for m in manifests}
    assert {"IngressRoute", "Middleware", "Deployment", "NetworkPolicy", "Role"} <= kinds
    schemas = crd_schemas()
    custom = 0
    for manifest in manifests:
        key = (manifest["apiVersion"], manifest["kind"])
        if key in schemas:
            custom += 1
            jsonschema.validate(manifest, schemas[key])
        else:
            kubernetes_validate.validate(manifest, "1.32.0", strict=True)
    assert custom == 3  # the gateway's route and its two middlewares
    # The CRDs' schemas are strict: a field they do not name is refused.
    route = next(m for m in manifests if m["kind"] == "IngressRoute")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {**route, "spec": {**route["spec"], "tls": {"passthru": True}}},
            schemas[("traefik.io/v1alpha1", "IngressRoute")],
        )


def checkov_failures(manifests, folder: Path) -> set[tuple[str, str]]:
    """(check, Kind/name) for every check checkov fails on these objects."""
    assert CHECKOV.exists(), (
        f"checkov is not installed at {CHECKOV}: bootstrap.sh installs it for the tests"
    )
    path = folder / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(manifests))
    result = subprocess.run(
        [str(CHECKOV), "--file", str(path), "--framework", "kubernetes", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    (kubernetes,) = [r for r in reports if r["check_type"] == "kubernetes"]
    assert kubernetes["summary"]["passed"] > 100  # it did check
    failed = set()
    for check in kubernetes["results"]["failed_checks"]:
        kind, _namespace, name = check["resource"].split(".", 2)
        failed.add((check["check_id"], f"{kind}/{name}"))
    return failed


def test_checkov_reports_nothing_on_enclaves_objects_and_only_reasoned_skips_on_the_rest(
    manifests, tmp_path
):
    failed = checkov_failures(manifests, tmp_path)
    enclave = {f"{m['kind']}/{m['metadata']['name']}" for m in manifests if own(m)}
    assert {"Deployment/enclave-audit", "Role/enclave-dask-gateway"} <= enclave
    assert not [f for f in failed if f[1] in enclave]
    skips = yaml.safe_load(SKIPS.read_text())
    skipped = set()
    for entry in skips:
        assert len(entry["reason"]) > 40, entry["check"]
        skipped |= {(entry["check"], obj) for obj in entry["objects"]}
    assert not {obj for _, obj in skipped} & enclave, "Enclave's own objects are never skipped"
    assert failed - skipped == set(), "failing without a reason in checkov_skips.yaml"
    assert skipped - failed == set(), "skipped in checkov_skips.yaml, but no longer failing"


def test_an_existing_workspaces_claim_is_every_workspace_mount(chart, tmp_path, monkeypatch):
    values = institution_values(storage={"workspaces": {"existingClaim": "tre-workspaces"}})
    # The hub's volume is a dependency's value: the chart refuses one on another claim.
    with pytest.raises(helm_python.HelmRenderError, match=r"jupyterhub\.hub\.extraVolumes"):
        render_whole(chart, values)
    hub_volumes = yaml.safe_load((chart / "values.yaml").read_text())["jupyterhub"]["hub"][
        "extraVolumes"
    ]
    for volume in hub_volumes:
        if volume["name"] == "enclave-workspaces":
            volume["persistentVolumeClaim"]["claimName"] = "tre-workspaces"
    values["jupyterhub"]["hub"]["extraVolumes"] = hub_volumes
    manifests = render_whole(chart, values)

    claims = {c["metadata"]["name"] for c in of_kind(manifests, "PersistentVolumeClaim")}
    assert "enclave-workspaces" not in claims
    hub = named(manifests, "Deployment", "hub")["spec"]["template"]["spec"]
    workspace = next(v for v in hub["volumes"] if v["name"] == "enclave-workspaces")
    assert workspace["persistentVolumeClaim"]["claimName"] == "tre-workspaces"
    site = parse_site_config(
        yaml.safe_load(named(manifests, "ConfigMap", "enclave-site")["data"]["site.yaml"]), "site"
    )
    assert site.kubernetes.workspace_claim == "tre-workspaces"
    no_cluster(tmp_path, monkeypatch)
    config = kube_spawner_config(site, seeded_registry(site, tmp_path), tmp_path)
    session = session_pod(config, "alice", "cancer-imaging")
    dask = cluster_settings(
        site.kubernetes,
        "cancer-imaging",
        "alice",
        ("ds-pathology",),
        {
            "environment": {},
            "scheduler_cmd": ["dask-scheduler"],
            **{
                f"{role}_extra_{what}": {}
                for role in ("scheduler", "worker")
                for what in ("pod_config", "container_config", "pod_labels")
            },
        },
    )
    pod_volumes = [
        *session["spec"]["volumes"],
        *dask["scheduler_extra_pod_config"]["volumes"],
        *dask["worker_extra_pod_config"]["volumes"],
    ]
    workspace_claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in pod_volumes
        if v["name"] == "enclave-workspace"
    }
    assert workspace_claims == {"tre-workspaces"}


@pytest.mark.parametrize("release", ["tre-dask-gateway", "tre"])
def test_the_gateways_names_agree_whatever_the_release_is_called(chart, release):
    manifests = render_whole(chart, institution_values(), release=release)
    site = parse_site_config(
        yaml.safe_load(named(manifests, "ConfigMap", "enclave-site")["data"]["site.yaml"]), "site"
    )
    fullname = release if "dask-gateway" in release else f"{release}-dask-gateway"
    traefik = named(manifests, "Service", f"traefik-{fullname}")
    assert urlsplit(site.gateway_url).hostname == traefik["metadata"]["name"]
    assert urlsplit(site.gateway_scheduler_proxy).hostname == traefik["metadata"]["name"]
    assert urlsplit(site.gateway_scheduler_proxy).port == traefik["spec"]["ports"][0]["port"]
    # Enclave's policies select the dask-gateway chart's pods by their instance label.
    instances = {
        d["spec"]["template"]["metadata"]["labels"]["gateway.dask.org/instance"]
        for d in of_kind(manifests, "Deployment")
        if "gateway.dask.org/instance" in d["spec"]["template"]["metadata"]["labels"]
    }
    assert instances == {fullname}
    selected = {
        p["spec"]["podSelector"].get("matchLabels", {}).get("gateway.dask.org/instance")
        for p in of_kind(manifests, "NetworkPolicy")
    } - {None}
    assert selected == {fullname}
    controller = named(manifests, "ConfigMap", f"controller-{fullname}")
    assert f"gateway_instance = '{fullname}'" in controller["data"]["dask_gateway_config.py"]
    assert site.kubernetes.namespace == NAMESPACE
