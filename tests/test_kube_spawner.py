"""The KubeSpawner configuration of sessions: the pod of a researcher in a project.

The cluster is the one thing mocked (see kube_sessions): the pods are built by KubeSpawner
itself from Enclave's configuration, the project's registry entry and its profile, then
confined by Enclave's modify_pod_hook, exactly as KubeSpawner's start does before it sends them.
"""

from __future__ import annotations

import kubernetes_validate
import pytest
from jupyterhub.spawner import SpawnException

from enclave_hub.core.site_config import parse_site_config
from enclave_hub.kubernetes import PROJECT_LABEL, USER_LABEL
from kube_sessions import kube_spawner_config, no_cluster, seeded_registry, session_pod

SITE = {
    "identity": {"issuer": "https://login.example.ac.uk/realms/research"},
    "sessions": {
        "profiles": {
            "default": {"cpus": 2, "memory": "8GiB"},
            "quiet": {"terminals": "off"},
            "gpu": {
                "cpus": 8,
                "memory": "64GiB",
                "gpus": 1,
                "node_selector": {"nvidia.com/gpu.present": "true"},
                "tolerations": [
                    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                ],
            },
        }
    },
    "projects": [
        {
            "id": "cancer-imaging",
            "title": "Cancer imaging",
            "members": ["alice"],
            "datasets": ["ds-pathology", "ds-ct"],
            "profile": "gpu",
        },
        {"id": "genomics", "title": "Genomics", "members": ["alice", "bob"]},
        {"id": "registry-study", "title": "No terminals", "members": ["bob"], "profile": "quiet"},
    ],
    "kubernetes": {"session_image": "tre/notebook:1", "gpu_session_image": "tre/notebook-gpu:1"},
}


@pytest.fixture
def site():
    return parse_site_config(SITE, "test site")


@pytest.fixture
def spawner_config(site, tmp_path, monkeypatch):
    no_cluster(tmp_path, monkeypatch)
    return kube_spawner_config(site, seeded_registry(site, tmp_path), tmp_path)


def notebook(pod: dict) -> dict:
    (container,) = pod["spec"]["containers"]
    assert container["name"] == "notebook"
    return container


def mounts(pod: dict) -> dict[str, dict]:
    return {m["mountPath"]: m for m in notebook(pod)["volumeMounts"]}


def test_a_researchers_gpu_session_pod_has_the_projects_mounts_limits_and_labels(
    spawner_config,
):
    pod = session_pod(spawner_config, "alice", "cancer-imaging")

    found = mounts(pod)
    assert set(found) == {
        "/home/alice",
        "/project",
        "/tmp",
        "/data/ds-pathology",
        "/data/ds-ct",
    }
    assert found["/home/alice"]["subPath"] == "cancer-imaging/home/alice"
    assert found["/project"]["subPath"] == "cancer-imaging/shared"
    for dataset in ("ds-pathology", "ds-ct"):
        data = found[f"/data/{dataset}"]
        assert data["readOnly"] is True
        assert data["subPath"] == dataset
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["enclave-data"]["persistentVolumeClaim"] == {
        "claimName": "enclave-datasets",
        "readOnly": True,
    }
    assert volumes["enclave-workspace"]["persistentVolumeClaim"]["claimName"] == (
        "enclave-workspaces"
    )
    assert not any("hostPath" in v for v in pod["spec"]["volumes"])

    resources = notebook(pod)["resources"]
    for kind in ("limits", "requests"):
        assert resources[kind]["nvidia.com/gpu"] == "1"
        assert float(resources[kind]["cpu"]) == 8
        assert int(resources[kind]["memory"]) == 64 * 1024**3
    assert notebook(pod)["image"] == "tre/notebook-gpu:1"
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["spec"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]

    labels = pod["metadata"]["labels"]
    assert labels[PROJECT_LABEL] == "cancer-imaging"
    assert labels[USER_LABEL] == "alice"
    # What Zero to JupyterHub's NetworkPolicy for sessions selects.
    assert labels["component"] == "singleuser-server"
    assert labels["app"] == "jupyterhub"
    assert labels["release"] == "enclave"

    env = {e["name"]: e.get("value") for e in notebook(pod)["env"]}
    assert env["ENCLAVE_PROJECT"] == "cancer-imaging"
    assert env["ENCLAVE_AIRLOCK_URL"] == "http://enclave-airlock:8087/services/enclave-airlock/"
    assert env["DASK_GATEWAY__ADDRESS"].startswith("http://traefik-enclave-dask-gateway")
    assert env["JUPYTER_CONFIG_DIR"] == "/etc/enclave/jupyter"
    # Jupyter serves the folder it starts in: the person's home, not the image's WORKDIR.
    assert notebook(pod)["workingDir"] == env["HOME"] == "/home/alice"

    security = notebook(pod)["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsUser"] == 1000
    assert pod["spec"]["automountServiceAccountToken"] is False

    # The manifest KubeSpawner would send is a valid pod for Kubernetes 1.32.
    kubernetes_validate.validate(pod, "1.32.0", strict=True)


def test_a_project_without_gpus_gets_the_cpu_image_its_own_datasets_and_no_gpu(spawner_config):
    pod = session_pod(spawner_config, "bob", "genomics")

    assert notebook(pod)["image"] == "tre/notebook:1"
    for kind in ("limits", "requests"):
        assert "nvidia.com/gpu" not in notebook(pod)["resources"].get(kind, {})
    assert not any(path.startswith("/data") for path in mounts(pod))
    assert mounts(pod)["/home/bob"]["subPath"] == "genomics/home/bob"
    assert "enclave-data" not in {v["name"] for v in pod["spec"]["volumes"]}
    assert pod["metadata"]["labels"][PROJECT_LABEL] == "genomics"


def test_a_non_member_gets_no_pod(spawner_config):
    with pytest.raises(SpawnException) as refused:
        session_pod(spawner_config, "bob", "cancer-imaging")
    assert refused.value.status_code == 403
    assert "not a member of project 'cancer-imaging'" in str(refused.value)


def test_the_hook_undoes_any_later_setting_that_would_widen_a_session(spawner_config):
    """Settings an institution's own hub.extraConfig or singleuser values might add, each an
    attempt to reach the node, write the data, or run as root: the hook has the last word."""
    kube = spawner_config.EnclaveKubeSpawner
    kube.volumes = [
        {"name": "node-root", "hostPath": {"path": "/"}},
        {"name": "all-data", "persistentVolumeClaim": {"claimName": "enclave-datasets"}},
        {"name": "scratch", "emptyDir": {}},
    ]
    kube.volume_mounts = [
        {"name": "node-root", "mountPath": "/host"},
        {"name": "all-data", "mountPath": "/data"},
        {"name": "all-data", "mountPath": "/home/alice/everything"},
        {"name": "scratch", "mountPath": "/scratch"},
    ]
    kube.privileged = True
    kube.allow_privilege_escalation = True
    kube.extra_pod_config = {"hostNetwork": True, "hostPID": True}
    kube.init_containers = [
        {"name": "as-root", "image": "busybox", "securityContext": {"runAsUser": 0}}
    ]

    pod = session_pod(spawner_config, "alice", "cancer-imaging")

    assert not any("hostPath" in v for v in pod["spec"]["volumes"])
    containers = [*pod["spec"]["initContainers"], *pod["spec"]["containers"]]
    assert not any(m["name"] == "all-data" for c in containers for m in c["volumeMounts"] or [])
    found = mounts(pod)
    assert "/host" not in found
    assert "/home/alice/everything" not in found
    assert found["/scratch"]["name"] == "scratch"  # harmless settings are kept
    assert all(m.get("readOnly") for path, m in found.items() if path.startswith("/data"))
    assert not pod["spec"].get("hostNetwork")
    assert not pod["spec"].get("hostPID")
    for container in containers:
        security = container["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["privileged"] is False
        assert security["allowPrivilegeEscalation"] is False
        assert "runAsUser" not in security


def test_the_session_server_runs_isolated_and_records_or_refuses_terminals_by_profile(
    spawner_config,
):
    recorded = notebook(session_pod(spawner_config, "bob", "genomics"))
    command = [*recorded.get("command", []), *recorded["args"]]
    assert command[:4] == ["python3", "-I", "-m", "jupyterhub.singleuser"]
    assert "--ServerApp.terminals_enabled=True" in command
    assert "--ServerApp.contents_manager_class=enclave_hub.singleuser.contents.ShowingContents" in (
        command
    )
    assert any("script-src 'self' 'unsafe-eval'" in arg for arg in command)
    off = notebook(session_pod(spawner_config, "bob", "registry-study"))
    arguments = off["args"]
    assert "--ServerApp.terminals_enabled=False" in arguments
    extensions = next(a for a in arguments if a.startswith("--ServerApp.jpserver_extensions="))
    assert "'enclave_hub.singleuser.terminals': False" in extensions
    assert "'jupyter_server_terminals': False" in extensions
