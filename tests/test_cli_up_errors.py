"""`enclave up` refuses a bad site configuration or a busy port, naming what is wrong."""

from __future__ import annotations

import socket
import subprocess

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
