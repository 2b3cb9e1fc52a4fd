"""What every pod that runs a project's code has on Kubernetes, sessions and Dask clusters
alike: the labels naming its project and user, and the DNS resolver it asks.

The DNS settings matter under the namespace's default-deny: a pod asks the cluster's DNS
unless told otherwise, and where the site names an allow-list resolver
(`kubernetes.dns_nameservers`), the NetworkPolicies let these pods reach that resolver only.
"""

from __future__ import annotations

from .site_config import KubernetesSettings

PROJECT_LABEL = "enclave/project"
USER_LABEL = "enclave/user"
# As the kubelet writes it for ClusterFirst pods: names of fewer dots are looked up in the
# search path first.
NDOTS = "5"


def project_labels(project: str, user: str) -> dict[str, str]:
    return {PROJECT_LABEL: project, USER_LABEL: user}


def pod_dns(kube: KubernetesSettings) -> dict:
    """The pod spec's `dnsPolicy` and `dnsConfig` (as JSON), or nothing: the cluster's DNS."""
    if not kube.dns_nameservers:
        return {}
    domain = kube.cluster_domain
    return {
        "dnsPolicy": "None",
        "dnsConfig": {
            "nameservers": list(kube.dns_nameservers),
            "searches": [f"{kube.namespace}.svc.{domain}", f"svc.{domain}", domain],
            "options": [{"name": "ndots", "value": NDOTS}],
        },
    }
