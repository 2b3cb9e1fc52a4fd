"""Policy tests on the whole chart, rendered with the upstream charts of ../shared/charts: which
pods NetworkPolicies select, and where every pod may connect (network_simulation), GPU requests,
and how containers run.

The pods are those a deployment has: the charts' own (their Deployments, rendered), sessions
(built by KubeSpawner from Enclave's configuration, see kube_sessions), and the scheduler and
workers of two Dask clusters (built by dask-gateway's own controller from the configuration
Enclave's gateway gives a cluster, with each cluster's own NetworkPolicy as the gateway makes
it). The cluster is the one thing not here: kube_sessions says how KubeSpawner runs without it.
"""

from __future__ import annotations

import ipaddress

import helm_python
import kubernetes_validate
import pytest
import yaml
from dask_gateway_server.backends.kubernetes.backend import KubeClusterConfig
from dask_gateway_server.backends.kubernetes.controller import KubeController
from dask_gateway_server.utils import FrozenAttrDict
from traitlets.config import Config

from enclave_hub.core.site_config import parse_site_config
from enclave_hub.core.site_secrets import SECRET_NAMES, Secrets
from enclave_hub.dask import kube_config
from enclave_hub.dask.cluster_pods import cluster_network_policy, cluster_settings
from enclave_hub.hub_config import add_enclave_services
from helm_chart import (
    NAMESPACE,
    RELEASE,
    chart_values,
    institution_values,
    merged,
    named,
    of_kind,
    render,
)
from kube_sessions import kube_spawner_config, no_cluster, seeded_registry, session_pod
from network_simulation import Pod, allowed, matches, pod_of

GATEWAY = f"{RELEASE}-dask-gateway"
METADATA_SERVER = "169.254.169.254"
INTERNET = ("203.0.113.9", "8.8.8.8", "1.1.1.1")
CLUSTER_DNS = Pod("kube-dns", "kube-system", {"k8s-app": "kube-dns"})
RESOLVER = Pod("allow-list resolver", "tre-dns", {"app": "allowlist-resolver"})
DASK_PORTS = (8786, 8787, 8788, 40000)  # scheduler, dashboard, gateway API, a worker's


@pytest.fixture(scope="module")
def site(manifests):
    text = named(manifests, "ConfigMap", "enclave-site")["data"]["site.yaml"]
    return parse_site_config(yaml.safe_load(text), "enclave-site")


@pytest.fixture(scope="module")
def clusters(site):
    """Two Dask clusters of different projects: their pods and their own policies."""
    environ = {
        kube_config.SITE_VARIABLE: yaml.safe_dump(site.model_dump(mode="json")),
        kube_config.HUB_TOKEN_VARIABLE: "hub-token",
        kube_config.AUDIT_TOKEN_VARIABLE: "audit-token",
    }
    config = Config()
    kube_config.configure(config, environ)
    controller = KubeController(
        gateway_instance=GATEWAY, api_url=f"http://api-{GATEWAY}.{NAMESPACE}:8000/api"
    )
    found = {}
    for name, project, user, datasets in (
        ("c1", "cancer-imaging", "alice", ("ds-pathology",)),
        ("c2", "genomics", "bob", ()),
    ):
        defaults = KubeClusterConfig(config=config).to_dict()
        settings = {
            **defaults,
            **cluster_settings(site.kubernetes, project, user, datasets, defaults),
        }
        spec = FrozenAttrDict(settings)
        owner = {
            "apiVersion": "gateway.dask.org/v1alpha1",
            "kind": "DaskCluster",
            "metadata": {"name": name, "uid": f"uid-{name}"},
        }
        policy = {**cluster_network_policy(name, GATEWAY, owner)}
        policy["metadata"] = {**policy["metadata"], "namespace": NAMESPACE}
        found[name] = {
            "scheduler": controller.make_pod(NAMESPACE, name, spec, is_worker=False),
            "worker": controller.make_pod(NAMESPACE, name, spec, is_worker=True),
            "policy": policy,
        }
    return found


@pytest.fixture(scope="module")
def policies(manifests, clusters):
    """Every NetworkPolicy in the release's namespace: the charts' and the clusters'."""
    rendered = [
        {**p, "metadata": {**p["metadata"], "namespace": NAMESPACE}}
        for p in of_kind(manifests, "NetworkPolicy")
    ]
    return rendered + [c["policy"] for c in clusters.values()]


@pytest.fixture(scope="module")
def session_pods(site, tmp_path_factory):
    """A session of each project in the rendered site configuration."""
    folder = tmp_path_factory.mktemp("sessions")
    with pytest.MonkeyPatch.context() as monkeypatch:
        no_cluster(folder, monkeypatch)
        config = kube_spawner_config(site, seeded_registry(site, folder), folder)
        return {
            project.id: session_pod(config, project.members[0], project.id)
            for project in site.projects
        }


@pytest.fixture(scope="module")
def pods(manifests, session_pods, clusters) -> dict[str, Pod]:
    found = {
        d["metadata"]["name"]: pod_of(d["metadata"]["name"], NAMESPACE, d["spec"]["template"])
        for d in of_kind(manifests, "Deployment")
    }
    for project, pod in session_pods.items():
        found[f"session {project}"] = pod_of(f"session {project}", NAMESPACE, pod)
    for name, cluster in clusters.items():
        for role in ("scheduler", "worker"):
            found[f"{name} {role}"] = pod_of(f"{name} {role}", NAMESPACE, cluster[role])
    return found


def specs(manifests, session_pods, clusters) -> dict[str, dict]:
    return {
        **{
            d["metadata"]["name"]: d["spec"]["template"]["spec"]
            for d in of_kind(manifests, "Deployment")
        },
        **{f"session {p}": pod["spec"] for p, pod in session_pods.items()},
        **{f"{n} {r}": c[r]["spec"] for n, c in clusters.items() for r in ("scheduler", "worker")},
    }


def test_every_pod_is_selected_by_a_network_policy_of_its_own(manifests, policies, pods):
    deny = named(manifests, "NetworkPolicy", "enclave-default-deny")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    assert {"hub", "proxy", "enclave-audit", f"api-{GATEWAY}", "c1 worker"} <= set(pods)
    own = [p for p in policies if p["spec"]["podSelector"]]
    for name, pod in pods.items():
        assert any(matches(p["spec"]["podSelector"], pod.labels) for p in own), name


def test_every_pod_reaches_its_dns_resolver(manifests, session_pods, clusters, policies, pods):
    spec_of = specs(manifests, session_pods, clusters)
    researchers = {n for n in pods if n.startswith(("session", "c1", "c2"))}
    for name, pod in pods.items():
        spec = spec_of[name]
        if spec.get("dnsPolicy") == "None":
            assert spec["dnsConfig"]["nameservers"] == ["10.96.0.53"], name
            resolver = RESOLVER
        else:
            assert name not in researchers, f"{name} would ask the cluster's DNS"
            resolver = CLUSTER_DNS
        for protocol in ("UDP", "TCP"):
            assert allowed(policies, pod, resolver, 53, protocol), (name, protocol)
        if name in researchers:
            # Researchers' code asks the allow-list resolver alone.
            assert not allowed(policies, pod, CLUSTER_DNS, 53, "UDP"), name


def test_nothing_reaches_the_internet_or_the_metadata_server(policies, pods):
    for name, pod in pods.items():
        for port in (80, 443, 53):
            assert not allowed(policies, pod, METADATA_SERVER, port), (name, port)
            for address in INTERNET:
                assert not allowed(policies, pod, address, port), (name, address, port)
    for policy in policies:
        for rule in policy["spec"].get("egress") or []:
            assert rule.get("to"), f"{policy['metadata']['name']}: a rule to anywhere"
            for peer in rule["to"]:
                if "ipBlock" in peer:
                    network = ipaddress.ip_network(peer["ipBlock"]["cidr"])
                    assert network.prefixlen >= 16, policy["metadata"]["name"]
                    assert ipaddress.ip_address(METADATA_SERVER) not in network


def test_no_pod_reaches_another_clusters_dask_pods(policies, pods):
    members = {name: name.split()[0] for name in pods if name.startswith(("c1 ", "c2 "))}
    for source_name, source in pods.items():
        for target_name, cluster in members.items():
            if members.get(source_name) == cluster:
                continue
            reachable = {p for p in DASK_PORTS if allowed(policies, source, pods[target_name], p)}
            if not source_name.startswith(("c1", "c2")) and "scheduler" in target_name:
                # The platform's designed links: Traefik to the TLS port (routed by SNI), the
                # gateway to its API and dashboard, which it serves to the owning session.
                designed = {f"traefik-{GATEWAY}": {8786}, f"api-{GATEWAY}": {8787, 8788}}
                assert reachable == designed.get(source_name, set()), (source_name, target_name)
            else:
                assert not reachable, (source_name, target_name, reachable)
    # Within a cluster, the scheduler and its workers reach one another on any port.
    for cluster in ("c1", "c2"):
        scheduler, worker = pods[f"{cluster} scheduler"], pods[f"{cluster} worker"]
        assert allowed(policies, worker, scheduler, 8786)
        assert allowed(policies, scheduler, worker, 40000)


def test_no_dashboard_route_but_the_gateways_for_the_session(policies, pods, clusters):
    scheduler = pods["c1 scheduler"]
    reaching = {
        name
        for name, pod in pods.items()
        if not name.startswith("c1") and allowed(policies, pod, scheduler, 8787)
    }
    assert reaching == {f"api-{GATEWAY}"}
    # Sessions reach Dask only through Traefik, which has no way to a dashboard.
    assert not allowed(policies, pods[f"traefik-{GATEWAY}"], scheduler, 8787)
    session = pods["session cancer-imaging"]
    assert allowed(policies, session, pods[f"traefik-{GATEWAY}"], 8000)
    assert not allowed(policies, session, scheduler, 8786)
    # The per-cluster policy is a valid object for Kubernetes 1.32.
    kubernetes_validate.validate(clusters["c1"]["policy"], "1.32.0", strict=True)


def test_the_hub_keeps_its_idle_culler_which_reaches_its_api(manifests, policies, pods):
    hub_values = yaml.safe_load(
        __import__("base64").b64decode(named(manifests, "Secret", "hub")["data"]["values.yaml"])
    )
    assert hub_values["cull"]["enabled"] is True
    # Zero to JupyterHub's configuration has the culler as a service of the hub's own pod,
    # calling http://localhost:8081/hub/api; Enclave's configuration adds to it.
    culler = {
        "name": "jupyterhub-idle-culler",
        "command": ["python3", "-m", "jupyterhub_idle_culler"],
    }
    role = {"name": "jupyterhub-idle-culler", "services": ["jupyterhub-idle-culler"]}
    config = Config()
    config.JupyterHub.services = [culler]
    config.JupyterHub.load_roles = [role]
    secrets = Secrets(**{name: "x" * 64 for name in SECRET_NAMES})
    site = parse_site_config(
        yaml.safe_load(named(manifests, "ConfigMap", "enclave-site")["data"]["site.yaml"]), "site"
    )
    add_enclave_services(config.JupyterHub, site, secrets)
    names = [s["name"] for s in config.JupyterHub.services]
    assert names[0] == "jupyterhub-idle-culler"
    assert {"dask-gateway", "enclave-audit", "enclave-registry"} <= set(names)
    assert config.JupyterHub.load_roles[0] == role
    hub = pods["hub"]
    assert allowed(policies, hub, hub, 8081)  # within its own pod


def test_sessions_reach_the_allow_list_the_resolver_and_enclaves_services_only(policies, pods):
    session = pods["session cancer-imaging"]
    assert allowed(policies, session, "10.30.0.8", 443)  # the mirror of the example institution
    assert not allowed(policies, session, "10.30.0.8", 22)
    reachable = {
        name
        for name, pod in pods.items()
        if name != "session cancer-imaging"
        and any(
            allowed(policies, session, pod, port) for port in (8000, 8081, 8082, 8087, 8089, 8888)
        )
    }
    # The proxy too, as every browser does: the public way to the hub's pages.
    assert reachable == {
        "hub",
        "proxy",
        "enclave-audit",
        "enclave-airlock",
        "enclave-packages",
        f"traefik-{GATEWAY}",
    }


def test_the_hub_goes_out_only_to_the_identity_provider_the_api_the_database_and_enclave(
    policies, pods
):
    hub = pods["hub"]
    for address, port in (
        ("192.0.2.10", 443),
        ("10.0.0.1", 6443),
        ("10.0.0.1", 443),
        ("10.20.0.15", 5432),
    ):
        assert allowed(policies, hub, address, port), (address, port)
    assert not allowed(policies, hub, "10.0.0.1", 5432)
    assert not allowed(policies, hub, "10.20.0.16", 5432)


@pytest.mark.parametrize(
    ("values", "named_key"),
    [
        ({"network": {"sessionEgress": [{"cidr": "0.0.0.0/0", "ports": [443]}]}}, "sessionEgress"),
        ({"network": {"sessionEgress": [{"cidr": "0.0.0.0/1", "ports": [443]}]}}, "sessionEgress"),
        ({"network": {"sessionEgress": [{"cidr": "::/0", "ports": [443]}]}}, "sessionEgress"),
        ({"network": {"identityProvider": {"cidrs": ["0.0.0.0/0"]}}}, "identityProvider"),
        ({"network": {"dns": {"nameservers": []}}}, "network.dns.nameservers"),
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
        ({"dask-gateway": {"gateway": {"auth": {"type": "jupyterhub"}}}}, "gateway.auth"),
        ({"dask-gateway": {"traefik": {"dashboard": True}}}, "traefik.dashboard"),
        ({"dask-gateway": {"traefik": {"additionalArguments": []}}}, "additionalArguments"),
        (
            {"dask-gateway": {"rbac": {"traefik": {"serviceAccountName": None}}}},
            "rbac.traefik.serviceAccountName",
        ),
    ],
)
def test_values_that_would_open_the_enclave_are_refused_by_name(values, named_key):
    # The chart's own settings for its dependencies, with the attempt laid over them.
    attempt = institution_values(**values)
    for dependency in ("jupyterhub", "dask-gateway"):
        if dependency in values:
            base = merged(chart_values()[dependency], institution_values()[dependency])
            attempt[dependency] = merged(base, values[dependency])
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


def test_containers_run_as_non_root_without_privilege_escalation(manifests, session_pods, clusters):
    """Enclave's pods, sessions and Dask pods; the dependencies' are in helm/README.md."""
    enclave = {
        d["metadata"]["name"]
        for d in of_kind(manifests, "Deployment")
        if d["metadata"]["name"].startswith("enclave-")
    }
    assert len(enclave) == 5
    for name, spec in specs(manifests, session_pods, clusters).items():
        if not (name in enclave or name.startswith(("session", "c1", "c2"))):
            continue
        pod_context = spec.get("securityContext", {})
        assert spec.get("automountServiceAccountToken") is False, name
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            context = container.get("securityContext", {})
            non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
            assert non_root is True, (name, container["name"])
            assert context.get("runAsUser", pod_context.get("runAsUser")) != 0, name
            assert context.get("allowPrivilegeEscalation") is False, (name, container["name"])
            assert not context.get("privileged"), name
            assert context.get("capabilities", {}).get("drop") == ["ALL"], name
    hub = named(manifests, "Deployment", "hub")["spec"]["template"]["spec"]
    (hub_container,) = hub["containers"]
    assert hub_container["securityContext"]["runAsNonRoot"] is True
    assert hub_container["securityContext"]["allowPrivilegeEscalation"] is False
    assert hub_container["securityContext"]["readOnlyRootFilesystem"] is True
