"""Policy tests on the rendered manifests: which pods NetworkPolicies select, where sessions and
Dask pods may connect, GPU requests, and how containers run.

The pods are those a deployment has: the chart's own (rendered), sessions (built by KubeSpawner
from Enclave's configuration, see kube_sessions), Dask schedulers and workers (built by
dask-gateway-server's own Kubernetes controller from the chart's values), and the dependency
charts' pods, by the labels those charts give them.
"""

from __future__ import annotations

import ipaddress

import helm_python
import pytest
import yaml
from dask_gateway_server.backends.kubernetes.backend import KubeClusterConfig
from dask_gateway_server.backends.kubernetes.controller import KubeController

from enclave_hub.core.site_config import parse_site_config
from helm_chart import RELEASE, chart_values, institution_values, merged, named, of_kind, render
from kube_sessions import (
    ZERO_TO_JUPYTERHUB_LABELS,
    kube_spawner_config,
    no_cluster,
    seeded_registry,
    session_pod,
)

GATEWAY = f"{RELEASE}-dask-gateway"
METADATA_SERVER = ipaddress.ip_address("169.254.169.254")
# Pods of the dependency charts, labelled as Zero to JupyterHub 4 and dask-gateway label them.
DEPENDENCY_PODS = {
    "hub": {"component": "hub", **ZERO_TO_JUPYTERHUB_LABELS},
    "proxy": {"component": "proxy", **ZERO_TO_JUPYTERHUB_LABELS},
    **{
        f"dask {component}": {
            "app.kubernetes.io/name": "dask-gateway",
            "app.kubernetes.io/instance": RELEASE,
            "gateway.dask.org/instance": GATEWAY,
            "app.kubernetes.io/component": component,
        }
        for component in ("gateway", "controller", "traefik")
    },
}
# Zero to JupyterHub's own NetworkPolicies select these (hub, proxy, singleuser).
SELECTED_BY_ZERO_TO_JUPYTERHUB = ("hub", "proxy", "session")


@pytest.fixture(scope="module")
def manifests():
    return render(institution_values())


@pytest.fixture(scope="module")
def policies(manifests):
    return of_kind(manifests, "NetworkPolicy")


@pytest.fixture(scope="module")
def site(manifests):
    text = named(manifests, "ConfigMap", "enclave-site")["data"]["site.yaml"]
    return parse_site_config(yaml.safe_load(text), "enclave-site")


@pytest.fixture
def session_pods(site, tmp_path, monkeypatch):
    """A session of each project in the rendered site configuration."""
    no_cluster(tmp_path, monkeypatch)
    config = kube_spawner_config(site, seeded_registry(site, tmp_path), tmp_path)
    return {
        project.id: session_pod(config, project.members[0], project.id) for project in site.projects
    }


def dask_pods() -> dict[str, dict]:
    """A scheduler and a worker as the gateway's controller makes them from the chart's values
    (which the dask-gateway chart passes to KubeClusterConfig)."""
    backend = institution_values()["dask-gateway"]["gateway"]["backend"]
    defaults = chart_values()["dask-gateway"]["gateway"]
    scheduler = defaults["backend"]["scheduler"]
    worker = defaults["backend"]["worker"]
    config = KubeClusterConfig(
        image=f"{backend['image']['name']}:{backend['image']['tag']}",
        scheduler_extra_pod_config=scheduler["extraPodConfig"],
        scheduler_extra_container_config=scheduler["extraContainerConfig"],
        worker_extra_pod_config=worker["extraPodConfig"],
        worker_extra_container_config=worker["extraContainerConfig"],
    )
    controller = KubeController(gateway_instance=GATEWAY, api_url="http://api:8000/api")
    return {
        "dask scheduler": controller.make_pod("tre", "c1", config, is_worker=False),
        "dask worker": controller.make_pod("tre", "c1", config, is_worker=True),
    }


def rendered_pods(manifests) -> dict[str, dict]:
    return {d["metadata"]["name"]: d["spec"]["template"] for d in of_kind(manifests, "Deployment")}


def selects(policy: dict, labels: dict) -> bool:
    selector = policy["spec"]["podSelector"]
    assert not selector.get("matchExpressions"), "only matchLabels are used"
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


def egress_rules(policies, labels) -> list[dict]:
    rules = []
    for policy in policies:
        if selects(policy, labels) and "Egress" in policy["spec"]["policyTypes"]:
            rules += policy["spec"].get("egress", [])
    return rules


def may_reach_the_internet(rule: dict) -> str | None:
    """Why `rule` lets a pod out of the cluster, or None."""
    if not rule.get("to"):
        return "a rule without peers allows every destination"
    for peer in rule["to"]:
        block = peer.get("ipBlock")
        if block is None:
            continue  # pods of the cluster, chosen by their labels
        network = ipaddress.ip_network(block["cidr"])
        if network.prefixlen < (16 if network.version == 4 else 48):
            return f"{network} is wider than an allow-list entry"
        if METADATA_SERVER in network:
            return f"{network} holds the cloud metadata server"
    return None


def test_every_pod_is_selected_by_a_network_policy_of_its_own(manifests, policies, session_pods):
    deny = named(manifests, "NetworkPolicy", "enclave-default-deny")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    pods = {
        **{name: pod["metadata"]["labels"] for name, pod in rendered_pods(manifests).items()},
        **{f"session {p}": pod["metadata"]["labels"] for p, pod in session_pods.items()},
        **{name: pod["metadata"]["labels"] for name, pod in dask_pods().items()},
        **DEPENDENCY_PODS,
    }
    assert {"enclave-registry", "enclave-audit", "enclave-airlock"} <= set(pods)
    own_policies = [p for p in policies if p["spec"]["podSelector"]]
    for name, labels in pods.items():
        selecting = [p["metadata"]["name"] for p in own_policies if selects(p, labels)]
        assert selecting, f"no NetworkPolicy of its own selects the pod {name}"


def test_no_session_or_dask_pod_may_egress_to_the_internet(policies, session_pods):
    pods = {
        **{f"session {p}": pod for p, pod in session_pods.items()},
        **dask_pods(),
    }
    for name, pod in pods.items():
        rules = egress_rules(policies, pod["metadata"]["labels"])
        assert rules, f"{name}: selected by no egress policy"
        for rule in rules:
            assert may_reach_the_internet(rule) is None, (name, rule)
    # Zero to JupyterHub's own policy for sessions adds no egress of its own making.
    hub_chart = chart_values()["jupyterhub"]
    for component in (hub_chart["singleuser"], hub_chart["hub"], hub_chart["proxy"]["chp"]):
        policy = component["networkPolicy"]
        assert policy["enabled"] is True
        assert not any(policy["egressAllowRules"].values())
        assert policy["egressAllowRules"]["nonPrivateIPs"] is False
        assert not policy.get("egress")


def test_sessions_reach_the_allow_list_the_dns_resolver_and_enclaves_services_only(policies):
    labels = {"component": "singleuser-server", **ZERO_TO_JUPYTERHUB_LABELS}
    rules = egress_rules(policies, labels)
    cidrs = {p["ipBlock"]["cidr"] for r in rules for p in r["to"] if "ipBlock" in p}
    assert cidrs == {"10.30.0.8/32"}  # the mirror of the example institution
    dns = [r for r in rules if {"port": 53, "protocol": "UDP"} in r.get("ports", [])]
    (resolver,) = [peer for rule in dns for peer in rule["to"]]
    assert resolver["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "tre-dns"
    }
    assert resolver["podSelector"]["matchLabels"] == {"app": "allowlist-resolver"}
    components = {
        p["podSelector"]["matchLabels"].get("app.kubernetes.io/component")
        for r in rules
        for p in r["to"]
        if "podSelector" in p and "namespaceSelector" not in p
    }
    assert components == {"audit", "airlock", "packages", "traefik"}


def test_the_hub_goes_out_only_to_the_identity_provider_the_api_the_database_and_enclave(
    policies,
):
    rules = egress_rules(policies, DEPENDENCY_PODS["hub"])
    cidrs = {p["ipBlock"]["cidr"] for r in rules for p in r["to"] if "ipBlock" in p}
    assert cidrs == {"192.0.2.10/32", "192.0.2.11/32", "10.0.0.1/32", "10.20.0.15/32"}
    for rule in rules:
        assert may_reach_the_internet(rule) is None, rule


@pytest.mark.parametrize(
    ("values", "named_key"),
    [
        ({"network": {"sessionEgress": [{"cidr": "0.0.0.0/0", "ports": [443]}]}}, "sessionEgress"),
        ({"network": {"sessionEgress": [{"cidr": "0.0.0.0/1", "ports": [443]}]}}, "sessionEgress"),
        ({"network": {"sessionEgress": [{"cidr": "::/0", "ports": [443]}]}}, "sessionEgress"),
        ({"network": {"identityProvider": {"cidrs": ["0.0.0.0/0"]}}}, "identityProvider"),
        (
            {
                "jupyterhub": {
                    "singleuser": {"networkPolicy": {"egressAllowRules": {"nonPrivateIPs": True}}}
                }
            },
            "egressAllowRules.nonPrivateIPs",
        ),
        ({"jupyterhub": {"singleuser": {"networkPolicy": {"enabled": False}}}}, "enabled"),
        (
            {"jupyterhub": {"hub": {"networkPolicy": {"egress": [{"to": []}]}}}},
            "networkPolicy.egress",
        ),
        (
            {"jupyterhub": {"singleuser": {"cloudMetadata": {"blockWithIptables": True}}}},
            "blockWithIptables",
        ),
    ],
)
def test_values_that_would_open_the_enclave_are_refused_by_name(values, named_key):
    # The chart's own settings for Zero to JupyterHub, with the attempt laid over them.
    attempt = institution_values(**values)
    if "jupyterhub" in values:
        attempt["jupyterhub"] = merged(chart_values()["jupyterhub"], values["jupyterhub"])
    with pytest.raises(helm_python.HelmRenderError, match=named_key.replace(".", r"\.")):
        render(attempt)


def test_gpu_profiles_request_nvidia_gpus(site, session_pods):
    gpu_profiles = {name for name, p in site.sessions.profiles.items() if p.gpus}
    assert gpu_profiles == {"gpu"}
    tested = 0
    for project in site.projects:
        profile = site.sessions.profiles[project.profile]
        (container,) = session_pods[project.id]["spec"]["containers"]
        resources = container["resources"]
        if profile.gpus:
            tested += 1
            assert resources["limits"]["nvidia.com/gpu"] == str(profile.gpus)
            assert resources["requests"]["nvidia.com/gpu"] == str(profile.gpus)
            assert container["image"] == site.kubernetes.gpu_session_image
        else:
            assert "nvidia.com/gpu" not in resources.get("limits", {})
    assert tested


def containers_of(pod_spec: dict) -> list[dict]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def test_containers_run_as_non_root_without_privilege_escalation(manifests, session_pods):
    pods = {
        **{name: pod["spec"] for name, pod in rendered_pods(manifests).items()},
        **{f"session {p}": pod["spec"] for p, pod in session_pods.items()},
        **{name: pod["spec"] for name, pod in dask_pods().items()},
    }
    for name, spec in pods.items():
        pod_context = spec.get("securityContext", {})
        assert spec.get("automountServiceAccountToken") is False, name
        for container in containers_of(spec):
            context = container.get("securityContext", {})
            non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
            assert non_root is True, (name, container["name"])
            assert context.get("runAsUser", pod_context.get("runAsUser")) != 0, name
            assert context.get("allowPrivilegeEscalation") is False, (name, container["name"])
            assert not context.get("privileged"), name
            assert context.get("capabilities", {}).get("drop") == ["ALL"], name
    hub = chart_values()["jupyterhub"]["hub"]
    context = hub["containerSecurityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] != 0
    assert context["allowPrivilegeEscalation"] is False
