"""Enclave on Kubernetes: the hub's KubeSpawner for project sessions, and what it puts in each
session's pod. The Helm chart in `helm/enclave` deploys it with Zero to JupyterHub.
"""

# Labels on each session's pod, beside those of Zero to JupyterHub (component: singleuser-server).
from ..core.kube_pods import PROJECT_LABEL, USER_LABEL

__all__ = ["PROJECT_LABEL", "USER_LABEL"]
