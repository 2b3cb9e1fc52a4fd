"""A package index standing in for the internet's, on this machine: real wheels built here,
served as a PEP 503 simple index over HTTP, with every path asked of it logged.

- `enclave-demo-util` 1.0, and `enclave-demo-stats` 1.0, which needs it;
- `enclave-extra` 0.3, for a request an admin approves;
- `enclave-secret-name` 9.9, which no project is allowed: the index must never ask for it;
- `enclave-unhashed` 0.1, listed without its SHA-256.
"""

from __future__ import annotations

import base64
import hashlib
import html
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PACKAGES = {
    "enclave-demo-util": ("1.0", [], "def double(x):\n    return 2 * x\n"),
    "enclave-demo-stats": (
        "1.0",
        ["enclave-demo-util>=1.0"],
        "from enclave_demo_util import double\n\n\ndef twice_sum(values):\n"
        "    return double(sum(values))\n",
    ),
    "enclave-extra": ("0.3", [], "ANSWER = 42\n"),
    "enclave-secret-name": ("9.9", [], "LEAKED = True\n"),
    "enclave-unhashed": ("0.1", [], "UNCHECKED = True\n"),
}
UNHASHED = {"enclave-unhashed"}


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(folder: Path, name: str, version: str, requires: list[str], code: str) -> Path:
    """A pure-Python wheel of one module, with its metadata and RECORD."""
    module = name.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    files = {
        f"{module}.py": code.encode(),
        f"{info}/METADATA": metadata.encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: enclave-tests\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},{_digest(data)},{len(data)}\n" for path, data in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    path = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, data in files.items():
            wheel.writestr(member, data)
    return path


@dataclass
class PackageUpstream:
    """The running index: its URL, its wheels, and the paths it was asked for."""

    url: str
    wheels: dict[str, Path]
    asked: list[str] = field(default_factory=list)

    def asked_about(self, name: str) -> list[str]:
        return [path for path in self.asked if name in path or name.replace("-", "_") in path]


def serve_upstream(folder: Path) -> tuple[PackageUpstream, ThreadingHTTPServer]:
    wheels = {name: build_wheel(folder, name, *spec) for name, spec in PACKAGES.items()}
    upstream = PackageUpstream("", wheels)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            upstream.asked.append(self.path)
            parts = [p for p in self.path.split("/") if p]
            if len(parts) == 2 and parts[0] == "simple" and parts[1] in wheels:
                wheel = wheels[parts[1]]
                sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
                fragment = "" if parts[1] in UNHASHED else f"#sha256={sha}"
                body = (
                    f'<!DOCTYPE html><html><body><a href="../../files/{wheel.name}{fragment}">'
                    f"{html.escape(wheel.name)}</a></body></html>"
                ).encode()
                self._send(200, "text/html", body)
            elif len(parts) == 2 and parts[0] == "files":
                found = next((w for w in wheels.values() if w.name == parts[1]), None)
                if found is None:
                    self._send(404, "text/plain", b"no such file")
                else:
                    self._send(200, "application/octet-stream", found.read_bytes())
            else:
                self._send(404, "text/plain", b"not found")

        def _send(self, status: int, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    upstream.url = f"http://127.0.0.1:{server.server_address[1]}/simple/"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return upstream, server
