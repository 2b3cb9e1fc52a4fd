"""Enclave's Dask gateway on Kubernetes, as the chart deploys it: the gateway configuration file
rendered by the real dask-gateway chart (with Enclave's values), executed by the real
dask-gateway-server with Enclave's classes, in the environment its Deployment gives it.

Mocked: the Kubernetes API client (kube_api: objects in memory; nothing reaches a cluster).
Stood in for, on loopback: the hub's REST API and the audit service's ingest, which the
gateway calls over HTTP; they answer as JupyterHub 6 and Enclave's audit service answer (the
real ones are in the end-to-end tests), and their addresses, with an SQLite registry in place
of the institution's PostgreSQL server, replace those of the rendered site configuration.
Everything else is real: the rendered configuration, SessionAuthenticator, Enclave's backend
on dask-gateway's KubeBackend, its limits, and the pods dask-gateway's own controller makes
from the cluster object the gateway created.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import aiohttp
import kubernetes_validate
import pytest
import yaml
from aiohttp import web
from dask_gateway_server.app import DaskGateway
from dask_gateway_server.backends.kubernetes.controller import KubeController
from dask_gateway_server.utils import FrozenAttrDict

import kube_api
from enclave_harness import free_port
from enclave_hub.core.kube_pods import PROJECT_LABEL, USER_LABEL
from enclave_hub.core.services import AUDIT_EVENTS_PATH
from enclave_hub.core.site_config import parse_site_config
from helm_chart import NAMESPACE, institution_values, named, render_whole, whole_chart
from kube_sessions import seeded_registry

PROJECTS = [
    {
        "id": "cancer-imaging",
        "title": "Cancer imaging",
        "members": ["alice"],
        "datasets": ["ds-pathology", "ds-ct"],
        "profile": "gpu",
    },
    {"id": "genomics", "title": "Genomics", "members": ["alice"]},
]
# The hub's /user answers, as JupyterHub 6 gives them for a person's own API token and for the
# tokens of alice's two sessions (a notebook server's token: its server's scope, no tokens!).
PERSON = {
    "kind": "user",
    "name": "alice",
    "scopes": [
        "access:servers!user=alice",
        "tokens!user=alice",
        "read:users!user=alice",
        "access:services!service=dask-gateway",
    ],
}


def session_model(project: str) -> dict:
    return {
        "kind": "user",
        "name": "alice",
        "scopes": [
            f"access:servers!server=alice/{project}",
            "users:activity!user=alice",
            "access:services!service=dask-gateway",
        ],
    }


TOKENS = {
    "person-token": PERSON,
    "imaging-session": session_model("cancer-imaging"),
    "genomics-session": session_model("genomics"),
}


class HubAndAudit:
    """The hub's REST API and the audit service's ingest, on one loopback port."""

    def __init__(self):
        self.events: list[dict] = []
        self.running = {"cancer-imaging", "genomics"}  # alice's sessions
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/hub/api/user", self.user)
        app.router.add_get("/hub/api/users", self.users)
        app.router.add_post(AUDIT_EVENTS_PATH, self.event)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def user(self, request):
        token = request.headers.get("Authorization", "").removeprefix("token ")
        if token not in TOKENS:
            raise web.HTTPForbidden()
        return web.json_response(TOKENS[token])

    async def users(self, request):
        servers = {p: {"state": {"session_id": f"run-{p}"}} for p in sorted(self.running)}
        return web.json_response([{"name": "alice", "servers": servers}])

    async def event(self, request):
        self.events.append(await request.json())
        return web.json_response({"seq": len(self.events)}, status=201)


def gateway_environment(manifests, stand_ins: HubAndAudit, folder: Path) -> dict[str, str]:
    """The gateway Deployment's environment, its references resolved in the rendered objects
    (the database's password is the institution's Secret, not rendered)."""
    (container,) = named(manifests, "Deployment", "api-enclave-dask-gateway")["spec"]["template"][
        "spec"
    ]["containers"]
    environ = {}
    for variable in container["env"]:
        source = variable["valueFrom"]
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            environ[variable["name"]] = named(manifests, "ConfigMap", ref["name"])["data"][
                ref["key"]
            ]
        elif ref := source["secretKeyRef"]:
            if ref["name"] == "enclave-database":
                environ[variable["name"]] = "not-used"
                continue
            data = named(manifests, "Secret", ref["name"])["data"][ref["key"]]
            environ[variable["name"]] = base64.b64decode(data).decode()
    site = yaml.safe_load(environ["ENCLAVE_SITE"])
    site["registry"]["database_url"] = f"sqlite:///{folder / 'registry.sqlite'}"
    site["data_root"] = str(folder / "data")
    site["kubernetes"]["hub_url"] = stand_ins.url
    site["kubernetes"]["audit_url"] = stand_ins.url
    environ["ENCLAVE_SITE"] = yaml.safe_dump(site)
    # The hub seeds the registry when it starts.
    seeded_registry(parse_site_config(site, "ENCLAVE_SITE"), folder)
    return environ


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    chart = whole_chart(tmp_path_factory.mktemp("chart"))
    return render_whole(chart, institution_values(site={"projects": PROJECTS}))


async def call(session, method, path, token, **kwargs):
    async with session.request(
        method, path, headers={"Authorization": f"jupyterhub {token}"}, **kwargs
    ) as reply:
        body = await reply.json() if reply.content_type == "application/json" else None
        return reply.status, body, reply.reason


def test_the_rendered_gateway_is_enclaves_for_sessions_projects_and_pods(
    manifests, tmp_path, monkeypatch
):
    config_map = named(manifests, "ConfigMap", "api-enclave-dask-gateway")
    config_file = tmp_path / "dask_gateway_config.py"
    config_file.write_text(config_map["data"]["dask_gateway_config.py"])
    cluster = kube_api.install(tmp_path, monkeypatch)
    stand_ins = HubAndAudit()
    for name, value in gateway_environment(manifests, stand_ins, tmp_path).items():
        monkeypatch.setenv(name, value)
    port = free_port()

    async def scenario():
        await stand_ins.start()
        gateway = DaskGateway()
        gateway.initialize(
            ["--config", str(config_file), f"--DaskGateway.address=127.0.0.1:{port}"]
        )
        await gateway.setup()
        try:
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
                return await exercise(http, gateway.backend, cluster, stand_ins)
        finally:
            await gateway.cleanup()
            await stand_ins.runner.cleanup()

    created = asyncio.run(scenario())
    check_pods(created)


async def exercise(http, backend, cluster, stand_ins) -> dict:
    # A person's own token is refused, however wide its scopes.
    status, body, reason = await call(http, "POST", "/api/v1/clusters/", "person-token", json={})
    assert status == 403, (status, body)
    assert "notebook session" in (body or {}).get("error", reason)

    # A session's token starts a cluster of that session, and its start is recorded first.
    status, body, _ = await call(http, "POST", "/api/v1/clusters/", "imaging-session", json={})
    assert status == 201, body
    name = body["name"]
    namespace, object_name = name.split(".")
    assert namespace == NAMESPACE
    obj = cluster.custom[name]
    assert obj["spec"]["username"] == "alice/cancer-imaging"
    # It asks from the start for the profile's default workers; its scheduler too.
    default_workers = backend.limits_of(backend.project_of(obj["spec"]["username"])[1])
    assert obj["spec"]["replicas"] == default_workers.default_workers
    scheduler_cmd = obj["spec"]["config"]["scheduler_cmd"]
    assert scheduler_cmd[-2:] == ["--preload", "enclave_hub.dask.scheduler_start"]

    # Workers past the project's limits are refused before anything is made.
    status, body, reason = await call(
        http,
        "POST",
        "/api/v1/clusters/",
        "imaging-session",
        json={"cluster_options": {"workers": 9}},
    )
    assert status == 422, body
    assert "Starting with 9 workers refused" in (body or {}).get("error", reason)
    assert list(cluster.custom) == [name]
    (start,) = [e for e in stand_ins.events if e["action"] == "dask.cluster.start"]
    assert start["target"] == name
    assert start["project"] == "cancer-imaging"
    assert start["session"] == "run-cancer-imaging"

    # Clusters belong to the session: alice's other session sees none of them.
    status, listed, _ = await call(http, "GET", "/api/v1/clusters/", "genomics-session")
    assert (status, listed) == (200, {})
    status, listed, _ = await call(http, "GET", "/api/v1/clusters/", "imaging-session")
    assert set(listed) == {name}
    status, _, _ = await call(http, "GET", f"/api/v1/clusters/{name}", "genomics-session")
    assert status == 403

    # Its own NetworkPolicy, owned by its DaskCluster (garbage-collected with it).
    (policy,) = cluster.network_policies
    assert policy["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
    assert policy["spec"]["podSelector"]["matchLabels"]["gateway.dask.org/cluster"] == object_name

    # Running (as the controller would report it), it refuses a scale past the project's limit.
    cluster.secrets[f"{namespace}.dask-credentials-{object_name}"] = credentials()
    cluster.set_status(
        name,
        {
            "phase": "Running",
            "service": f"dask-{object_name}",
            "credentials": f"dask-credentials-{object_name}",
        },
    )
    for _ in range(100):
        if name in backend.clusters and backend.clusters[name].status.name == "RUNNING":
            break
        await asyncio.sleep(0.05)
    status, body, reason = await call(
        http, "POST", f"/api/v1/clusters/{name}/scale", "imaging-session", json={"count": 5}
    )
    assert status == 409
    message = (body or {}).get("error", reason)
    assert "project cancer-imaging may use per cluster (4 workers" in message, message
    built = cluster.custom[name]

    # The cluster lives as long as its session: once the hub runs it no more, it is stopped,
    # and its stop, when the controller reports it, is recorded with the reason.
    stand_ins.running.remove("cancer-imaging")
    await backend.watch.check()
    assert cluster.custom[name]["spec"]["active"] is False
    cluster.set_status(name, {"phase": "Stopped", "completionTime": "2026-01-01T01:00:00Z"})
    for _ in range(100):
        stops = [e for e in stand_ins.events if e["action"] == "dask.cluster.stop"]
        if stops:
            break
        await asyncio.sleep(0.05)
    (stop,) = stops
    assert (stop["target"], stop["outcome"]) == (name, "stopped")
    assert stop["reason"] == "its session stopped"
    return built


def credentials():
    from kubernetes_asyncio.client import V1Secret

    encoded = {
        k: base64.b64encode(v).decode()
        for k, v in {"dask.crt": b"cert", "dask.pem": b"key", "api-token": b"token"}.items()
    }
    return V1Secret(data=encoded)


def check_pods(obj: dict) -> None:
    """The scheduler and worker pods dask-gateway's controller makes of the cluster object."""
    controller = KubeController(
        gateway_instance="enclave-dask-gateway",
        api_url="http://api-enclave-dask-gateway.tre:8000/api",
    )
    config = FrozenAttrDict(obj["spec"]["config"])
    name = obj["metadata"]["name"]
    scheduler = controller.make_pod(NAMESPACE, name, config, is_worker=False)
    worker = controller.make_pod(NAMESPACE, name, config, is_worker=True)

    assert scheduler["spec"]["containers"][0]["args"][:2] == ["dask", "scheduler"]
    worker_args = worker["spec"]["containers"][0]["args"]
    assert worker_args[:3] == ["dask", "worker", f"tls://dask-{name}.{NAMESPACE}:8786"]
    # The gpu profile's Dask limits (the site's defaults): 1 core and 2 GiB a worker.
    assert worker["spec"]["containers"][0]["resources"]["limits"] == {
        "cpu": "1.000",
        "memory": str(2 * 1024**3),
    }
    assert worker_args[worker_args.index("--memory-limit") + 1] == str(2 * 1024**3)
    assert "--dg-idle-timeout" in scheduler["spec"]["containers"][0]["args"]
    idle = scheduler["spec"]["containers"][0]["args"]
    assert idle[idle.index("--dg-idle-timeout") + 1] == "1800.0"
    for pod in (scheduler, worker):
        spec = pod["spec"]
        (container,) = spec["containers"]
        labels = pod["metadata"]["labels"]
        assert labels[PROJECT_LABEL] == "cancer-imaging"
        assert labels[USER_LABEL] == "alice"
        assert labels["gateway.dask.org/cluster"] == name
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["image"].startswith("registry.example.ac.uk/enclave/notebook:0.1.0@")
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        for dataset in ("ds-ct", "ds-pathology"):
            assert mounts[f"/data/{dataset}"]["readOnly"] is True
            assert mounts[f"/data/{dataset}"]["subPath"] == dataset
        assert mounts["/project"]["subPath"] == "cancer-imaging/shared"
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["enclave-data"]["persistentVolumeClaim"] == {
            "claimName": "tre-datasets",
            "readOnly": True,
        }
        # The site's resolver, under the namespace's default-deny.
        assert spec["dnsPolicy"] == "None"
        assert spec["dnsConfig"]["nameservers"] == ["10.96.0.53"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["ENCLAVE_PROJECT"] == "cancer-imaging"
        pod["metadata"]["name"] = pod["metadata"].get("name") or "dask-worker-x"
        kubernetes_validate.validate(pod, "1.32.0", strict=True)
