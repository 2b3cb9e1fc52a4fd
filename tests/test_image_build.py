"""The notebook image, built and started here: Debian's podman builds images/notebook/Dockerfile
FROM a base made with debootstrap from Debian's packages (images/build-here.sh, whose `fetch`
`./bootstrap.sh test` runs before the suite, as the build itself reaches no network). The image
imports enclave, starts each kernel it ships, and runs a session as KubeSpawner's pod runs it,
with downloads off and its events recorded in the audit log."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import jupyterhub
import pytest

from enclave_harness import free_ports
from enclave_hub.core.services import AUDIT_EVENTS_PATH
from enclave_hub.core.site_config import parse_site_config
from enclave_hub.singleuser import CONFIG_DIR
from kube_sessions import kube_spawner_config, no_cluster, seeded_registry, session_pod

ROOT = Path(__file__).parents[1]
BUILD_HERE = ROOT / "images" / "build-here.sh"
IMAGE = "localhost/enclave/notebook:here"
USER, PROJECT = "alice", "genomics"
SITE = {
    "identity": {"issuer": "https://login.example.ac.uk/realms/research"},
    "projects": [{"id": PROJECT, "title": "Genomics", "members": [USER]}],
    "kubernetes": {"session_image": IMAGE, "gpu_session_image": "localhost/enclave/unused:here"},
}
TOKEN = "the-session-token"

# Run inside the image: each kernel spec installed in it (not ipykernel's native one, which
# jupyter_client offers unless told not to, as sessions tell it), started with jupyter_client,
# runs one cell.
RUN_EACH_KERNEL = """
import json
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import start_new_kernel

ran = {}
for name, spec in KernelSpecManager(ensure_native_kernel=False).get_all_specs().items():
    manager, client = start_new_kernel(kernel_name=name, startup_timeout=120)
    outputs = []
    try:
        reply = client.execute_interactive(
            "1 + 1", timeout=120, output_hook=lambda message: outputs.append(message["content"])
        )
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    ran[name] = {
        "language": spec["spec"]["language"],
        "status": reply["content"]["status"],
        "results": [output["data"]["text/plain"] for output in outputs if "data" in output],
    }
print(json.dumps(ran))
"""

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def image() -> str:
    """The notebook image, built from this checkout (podman reuses the layers it already has
    for the same sources); a build that fails fails the tests."""
    result = subprocess.run([BUILD_HERE, "build"], capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-8000:]
        pytest.fail(f"images/build-here.sh build failed:\n{output}", pytrace=False)
    return IMAGE


def podman_run(*arguments: str, stdin: str | None = None) -> str:
    """`podman run --rm ARGUMENTS` (images/build-here.sh run); its output."""
    result = subprocess.run(
        [BUILD_HERE, "run", "--rm", *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_enclave_imports_in_the_image(image):
    printed = podman_run(
        "--network=none",
        "--read-only",
        image,
        "python3",
        "-I",
        "-c",
        "import enclave, enclave_hub; print(enclave.__file__, enclave_hub.__file__)",
    )
    # Installed from the source into the image's Python, not editable as in .venv.
    site_packages = "/usr/local/lib/python3.11/site-packages"
    assert printed.split() == [
        f"{site_packages}/enclave/__init__.py",
        f"{site_packages}/enclave_hub/__init__.py",
    ]


def test_each_kernel_the_image_ships_starts_and_runs_a_cell(image):
    printed = podman_run(
        "-i",
        "--network=none",
        "--read-only",
        "--tmpfs=/home/researcher:mode=1777",
        image,
        "python3",
        "-I",
        "-",
        stdin=RUN_EACH_KERNEL,
    )
    ran = json.loads(printed.splitlines()[-1])
    # Enclave's kernels (the GPU one is the GPU image's) and Debian's IRkernel's own spec; the
    # spec of ipykernel's python3 is removed.
    assert sorted(ran) == ["enclave-python", "enclave-r", "ir"]
    expected = {"python": ["2"], "R": ["[1] 2"]}
    for name, cell in ran.items():
        assert cell["status"] == "ok", (name, cell)
        assert cell["results"] == expected[cell["language"]], (name, cell)


class HubAndAudit(BaseHTTPRequestHandler):
    """What a session asks of the hub (who a token's owner is, its activity) and of the audit
    service (recording an event), on loopback; the events it was sent are kept."""

    events: ClassVar[list[dict]] = []

    def do_GET(self):
        if self.path == "/hub/api":
            self._reply(200, {"version": jupyterhub.__version__})
        elif self.path == "/hub/api/user" and self._token_is_the_sessions():
            scope = f"access:servers!server={USER}/{PROJECT}"
            self._reply(200, {"kind": "user", "name": USER, "scopes": [scope], "groups": []})
        else:
            self._reply(404, {})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == AUDIT_EVENTS_PATH and self._token_is_the_sessions():
            self.events.append(body)
            self._reply(201, {"seq": len(self.events)})
        elif self.path == f"/hub/api/users/{USER}/activity":
            self._reply(200, {})
        else:
            self._reply(404, {})

    def _token_is_the_sessions(self) -> bool:
        return self.headers.get("Authorization") == f"token {TOKEN}"

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-JupyterHub-Version", jupyterhub.__version__)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *arguments) -> None:
        pass


@pytest.fixture
def hub_and_audit() -> Iterator[tuple[str, list[dict]]]:
    (port,) = free_ports(1)
    server = ThreadingHTTPServer(("127.0.0.1", port), HubAndAudit)
    HubAndAudit.events = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}", HubAndAudit.events
    server.shutdown()
    server.server_close()


def pod_as_podman_arguments(pod: dict, folder: Path, hub_given: dict[str, str]) -> list[str]:
    """The notebook container of the pod as `podman run` arguments: its user, its security
    context, its volumes (a claim's subPath as a folder of `folder`, an emptyDir as a tmpfs),
    its environment with what the hub gives each start, and its command."""
    (container,) = pod["spec"]["containers"]
    context = pod["spec"]["securityContext"]
    uid, gid = context["runAsUser"], context["runAsGroup"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"] == {"drop": ["ALL"]}
    arguments = [
        f"--user={uid}:{gid}",
        "--read-only",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
    ]
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    for mount in container["volumeMounts"]:
        if "emptyDir" in volumes[mount["name"]]:
            arguments.append(f"--tmpfs={mount['mountPath']}:mode=1777")
            continue
        source = folder / mount["name"] / mount.get("subPath", "")
        source.mkdir(parents=True, exist_ok=True)
        os.chown(source, uid, gid)
        read_only = ":ro" if mount.get("readOnly") else ""
        arguments.append(f"--volume={source}:{mount['mountPath']}{read_only}")
    environment = {variable["name"]: variable["value"] for variable in container["env"]}
    arguments += [f"--env={name}={value}" for name, value in (environment | hub_given).items()]
    return [*arguments, container["image"], *container.get("command", []), *container["args"]]


def test_a_session_runs_in_the_image_as_its_pod_does_with_downloads_off_and_recording_on(
    image, hub_and_audit, tmp_path, monkeypatch
):
    hub, events = hub_and_audit
    no_cluster(tmp_path, monkeypatch)
    site = parse_site_config(SITE, "test site")
    config = kube_spawner_config(site, seeded_registry(site, tmp_path), tmp_path)
    pod = session_pod(config, USER, PROJECT)
    # What the hub gives each start (its token, OAuth client and URL prefix) and where the
    # session finds the hub and the audit service: here, the stand-in on loopback.
    (port,) = free_ports(1)
    prefix = f"/user/{USER}/{PROJECT}/"
    hub_given = {
        "JUPYTERHUB_API_TOKEN": TOKEN,
        "JPY_API_TOKEN": TOKEN,
        "JUPYTERHUB_CLIENT_ID": f"jupyterhub-user-{USER}-{PROJECT}",
        "JUPYTERHUB_SERVICE_PREFIX": prefix,
        "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}/",
        "JUPYTERHUB_API_URL": f"{hub}/hub/api",
        "JUPYTERHUB_ACTIVITY_URL": f"{hub}/hub/api/users/{USER}/activity",
        "ENCLAVE_AUDIT_URL": hub,
    }
    started = subprocess.run(
        [
            BUILD_HERE,
            "run",
            "--detach",
            "--network=host",
            *pod_as_podman_arguments(pod, tmp_path, hub_given),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    session = httpx.Client(
        base_url=f"http://127.0.0.1:{port}{prefix}",
        headers={"Authorization": f"token {TOKEN}"},
        timeout=30,
    )
    try:
        wait_until_serving(session, container)

        # Downloads off: JupyterLab's download and export commands, from the image's Jupyter
        # configuration, and the server's download route.
        lab = session.get("lab")
        assert lab.status_code == 200
        page_config = json.loads(
            re.search(r'<script id="jupyter-config-data"[^>]*>(.*?)</script>', lab.text, re.S)[1]
        )
        configured = json.loads((CONFIG_DIR / "labconfig" / "page_config.json").read_text())
        off = {name for name, disabled in configured["disabledExtensions"].items() if disabled}
        assert "@jupyterlab/filebrowser-extension:download" in off
        assert off <= set(page_config["disabledExtensions"])
        csv = {"type": "file", "format": "text", "content": "site,n\nleeds,12\n"}
        assert session.put("api/contents/results.csv", json=csv).status_code == 201
        download = session.get("files/results.csv", params={"download": "1"})
        assert download.status_code == 403 and "through the airlock" in download.text

        # Only Enclave's kernels are offered, and a kernel started is recorded, as the file was.
        assert sorted(session.get("api/kernelspecs").json()["kernelspecs"]) == [
            "enclave-python",
            "enclave-r",
        ]
        kernel = session.post("api/kernels", json={"name": "enclave-python"})
        assert kernel.status_code == 201
        wanted = [
            {"action": "file.save", "target": "results.csv", "outcome": "ok"},
            {"action": "kernel.start", "target": kernel.json()["id"], "outcome": "ok",
             "note": "enclave-python"},
        ]  # fmt: skip
        deadline = time.monotonic() + 60
        while not all(event in events for event in wanted) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert all(event in events for event in wanted), events
    finally:
        session.close()
        logs = subprocess.run(["podman", "logs", container], capture_output=True, text=True)
        print(logs.stdout + logs.stderr)
        subprocess.run(["podman", "rm", "--force", container], capture_output=True)


def wait_until_serving(session: httpx.Client, container: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if session.get("api/status").status_code == 200:
                return
        except httpx.TransportError:
            pass
        state = subprocess.run(
            ["podman", "inspect", "--format", "{{.State.Running}}", container],
            capture_output=True,
            text=True,
        )
        assert state.stdout.strip() == "true", "the session's container stopped"
        time.sleep(0.5)
    pytest.fail("the session did not answer within 120 s")
