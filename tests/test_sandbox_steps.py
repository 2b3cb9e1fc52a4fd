"""The sandbox on its own: a failure after any creation step leaves nothing, and the firewall
check fails closed. Real namespaces, links, nftables and cgroups (needs root)."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest

from enclave_harness import make_site_dir, require_root
from enclave_hub.sandbox import (
    Endpoint,
    Limits,
    SandboxError,
    SessionSandbox,
    SessionSpec,
    reserve_session_number,
)


def _sandbox() -> SessionSandbox:
    require_root()
    return SessionSandbox(
        SessionSpec(
            number=reserve_session_number(),
            uid=299999,
            gid=199999,
            inbound_ports=(8888,),
            allowed=(Endpoint(ipaddress.ip_address("169.254.250.1"), 8081),),
            host_names=(),
            limits=Limits(memory_bytes=256 * 2**20, cpus=0.5, pids=32),
            files_dir=make_site_dir() / "sandbox",
        )
    )


def _traces(box: SessionSandbox) -> list[str]:
    """Whatever of the sandbox the host still shows, looked up independently of its code."""
    found = box.leftovers()
    mount_points = {line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()}
    if f"/run/netns/{box.network.namespace}" in mount_points:
        found.append("netns mount")
    links = subprocess.run(["ip", "-brief", "link"], capture_output=True, text=True).stdout
    if box.network.host_link in links.split():
        found.append("veth")
    return found


@pytest.mark.parametrize("failing_after", ["namespace", "link", "firewall", "cgroup", "files"])
def test_a_failure_after_any_step_leaves_nothing(failing_after):
    box = _sandbox()
    steps = {step.name: step for step in box.steps}
    real = steps[failing_after].make

    def make_then_fail():
        real()
        raise RuntimeError(f"injected failure after {failing_after}")

    box.steps[box.steps.index(steps[failing_after])] = steps[failing_after].__class__(
        failing_after, make_then_fail, steps[failing_after].undo
    )
    with pytest.raises(SandboxError, match=f"injected failure after {failing_after}"):
        box.create()
    assert _traces(box) == []


def test_a_complete_sandbox_is_removed_completely():
    box = _sandbox()
    box.create()
    assert len(box.leftovers()) == 4
    box.destroy()
    assert _traces(box) == []


def test_a_missing_or_altered_firewall_fails_the_check():
    box = _sandbox()
    box.create()
    try:
        box.verify(box.firewall_fingerprint)
        namespace = box.network.namespace
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                namespace,
                "nft",
                "add",
                "rule",
                "inet",
                "enclave",
                "output",
                "accept",
            ],
            check=True,
        )
        with pytest.raises(SandboxError, match="was altered"):
            box.verify(box.firewall_fingerprint)
        subprocess.run(
            ["ip", "netns", "exec", namespace, "nft", "delete", "table", "inet", "enclave"],
            check=True,
        )
        with pytest.raises(SandboxError, match="is missing"):
            box.verify(box.firewall_fingerprint)
    finally:
        box.destroy()


def _weights() -> tuple[int, dict[str, int]]:
    """The sandboxes' parent cgroup's CPU weight, and each sandbox's, read independently."""
    v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    parent = Path("/sys/fs/cgroup/enclave" if v2 else "/sys/fs/cgroup/cpu/enclave")
    setting = "cpu.weight" if v2 else "cpu.shares"
    children = {c.name: int((c / setting).read_text()) for c in parent.iterdir() if c.is_dir()}
    return int((parent / setting).read_text()), children


def test_the_sandboxes_weigh_together_what_each_weighs():
    # Under one parent of one process's weight, busy sessions starved beside the hub.
    one = 100 if Path("/sys/fs/cgroup/cgroup.controllers").exists() else 1024
    boxes = [_sandbox(), _sandbox()]
    try:
        for box in boxes:
            box.create()
        parent, children = _weights()
        assert [children[box.cgroup.name] for box in boxes] == [one, one]
        assert parent == sum(children.values())
        # Prepared ahead of demand, a sandbox weighs next to nothing until it is taken.
        boxes[0].cgroup.set_idle(True)
        idle_parent, children = _weights()
        assert children[boxes[0].cgroup.name] <= one / 100
        assert idle_parent == sum(children.values()) < parent
        boxes[0].cgroup.set_idle(False)
        boxes.pop().destroy()
        parent, children = _weights()
        assert parent == sum(children.values()) and children[boxes[0].cgroup.name] == one
    finally:
        for box in boxes:
            box.destroy()
