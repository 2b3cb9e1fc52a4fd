"""`enclave up` refuses a bad site configuration or a busy port, naming what is wrong."""

from __future__ import annotations

import socket
import subprocess
import sys

import yaml

from enclave_harness import ENCLAVE, make_site_dir, write_site_config


def _up(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ENCLAVE), "up", *args], capture_output=True, text=True, timeout=60)


def test_a_bad_site_configuration_is_refused_naming_the_key():
    base = make_site_dir()
    path = write_site_config(base)
    config = yaml.safe_load(path.read_text())
    config["hub"]["port"] = "eighty"
    config["sessions"]["colour"] = "blue"
    path.write_text(yaml.safe_dump(config))
    result = _up("--config", str(path))
    assert result.returncode != 0
    assert "hub.port" in result.stderr
    assert "sessions.colour: unknown key" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (base / "state").exists(), "nothing is started or written for a bad file"


def test_a_port_in_use_is_named():
    base = make_site_dir()
    path = write_site_config(base)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        result = _up("--config", str(path), "--port", str(busy))
    assert result.returncode != 0
    assert f"port {busy}" in result.stderr
    assert "hub.port" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_port_option_is_named():
    base = make_site_dir()
    result = _up("--config", str(write_site_config(base)), "--port", "70000")
    assert result.returncode != 0
    assert "--port: hub.port" in result.stderr


def _on_loopback(address: str) -> bool:
    listing = subprocess.run(["ip", "-o", "addr", "show", "dev", "lo"], capture_output=True)
    return f" {address}/".encode() in listing.stdout


def test_a_port_held_on_the_hub_address_is_in_use_naming_the_process():
    path = write_site_config(make_site_dir())
    config = yaml.safe_load(path.read_text())
    address, port = config["sessions"]["hub_address"], config["airlock"]["port"]
    subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], check=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_PORT, address, str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "listening"
        result = _up("--config", str(path))
    finally:
        holder.kill()
        holder.wait()
        subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", "lo"], check=True)
    assert result.returncode != 0
    in_use = f"port {port} on {address} (airlock.port, the airlock service) is already in use by"
    assert in_use in result.stderr, result.stderr
    assert f"(pid {holder.pid}); stop what uses it" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_an_address_the_machine_lacks_is_told_apart_from_a_port_in_use():
    provider = {"issuer": "https://login.example.org", "client_id": "enclave"}
    path = write_site_config(make_site_dir(), hub={"bind": "192.0.2.1"}, identity=provider)
    config = yaml.safe_load(path.read_text())
    hub_address, port = config["sessions"]["hub_address"], config["hub"]["port"]
    assert not _on_loopback(hub_address)
    result = _up("--config", str(path))
    assert result.returncode != 0
    assert (
        f"port {port} on 192.0.2.1 (hub.port, the public proxy port) cannot be bound: "
        "192.0.2.1 is not an address of this machine" in result.stderr
    ), result.stderr
    assert "in use" not in result.stderr and "Traceback" not in result.stderr
    # What `enclave up` added before it gave up, it took away again.
    assert not _on_loopback(hub_address)


HOLD_PORT = """
import socket, sys, time
server = socket.socket()
server.bind((sys.argv[1], int(sys.argv[2])))
server.listen()
print("listening", flush=True)
time.sleep(120)
"""


def test_the_development_provider_never_signs_in_for_a_hub_reached_from_outside():
    path = write_site_config(make_site_dir(), hub={"bind": "0.0.0.0"})
    result = _up("--config", str(path))
    assert result.returncode != 0
    assert "hub.bind: 0.0.0.0 is reached from other machines" in result.stderr, result.stderr
    assert "signs anyone in as anyone" in result.stderr
    assert "Traceback" not in result.stderr
