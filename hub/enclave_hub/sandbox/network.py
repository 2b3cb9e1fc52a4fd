"""A sandbox's network: its own namespace, one veth to the host, and nftables that drop by default.

A sandbox is a notebook session or a Dask cluster. Its namespace reaches the host through a
point-to-point veth (IPv4 link-local and IPv6 ULA addresses derived from the sandbox's number).
Its `inet enclave` table lets out only loopback traffic, replies, the hub's API and the site's
allow-list; it lets in only the host's connections to the sandbox's own ports (a session's
server; a scheduler's). Everything else is counted; what goes out is rejected (so that programs
fail at once rather than hang), what comes in is dropped. Nothing inside has any capability in
this namespace, so nothing inside can change the rules.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import subprocess
import threading
from dataclasses import dataclass

from ..core.addresses import IPV4_POOL, IPV6_PREFIX, SESSION_NUMBERS

TABLE = "enclave"
# Blocked destinations, each with its packet count; up to 1024 distinct ones per session.
BLOCKED_SET = "size 1024; flags dynamic; counter;"
# IPv6 neighbour discovery on the session's own link (hop limit 255: never routed). It is how
# the kernel finds the host's address, not traffic of the session, so it is neither blocked
# nor counted as a blocked attempt.
LINK_CONTROL_OUT = "nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert"
LINK_CONTROL_IN = "nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert"


class NetworkError(Exception):
    """A namespace, link or rule could not be made, or no longer holds."""


def run(argv: list[str], stdin: str | None = None) -> str:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NetworkError(f"{' '.join(argv[:6])} failed: {result.stderr.strip()}")
    return result.stdout


@dataclass(frozen=True)
class Endpoint:
    """A host:port a session may connect to."""

    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int

    def rule(self) -> str:
        family = "ip" if self.address.version == 4 else "ip6"
        return f"{family} daddr {self.address} tcp dport {self.port} accept"


@dataclass(frozen=True)
class SessionNetwork:
    """The names and addresses of one session's network, derived from its number."""

    number: int

    def __post_init__(self) -> None:
        if not 0 < self.number < IPV4_POOL.num_addresses // 4:
            raise NetworkError(f"session number {self.number} is outside the address pool")

    @property
    def namespace(self) -> str:
        return f"enclave-s{self.number}"

    @property
    def host_link(self) -> str:
        return f"enc{self.number}h"

    @property
    def session_link(self) -> str:
        return f"enc{self.number}s"

    @property
    def host_ipv4(self) -> ipaddress.IPv4Address:
        return IPV4_POOL.network_address + 4 * self.number + 1

    @property
    def session_ipv4(self) -> ipaddress.IPv4Address:
        return self.host_ipv4 + 1

    @property
    def host_ipv6(self) -> ipaddress.IPv6Address:
        return ipaddress.IPv6Address(f"{IPV6_PREFIX}:{self.number:x}::1")

    @property
    def session_ipv6(self) -> ipaddress.IPv6Address:
        return self.host_ipv6 + 1

    def netns(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv]

    # -- creation, each step undone by the matching removal ------------------------------

    def create_namespace(self) -> None:
        run(["ip", "netns", "add", self.namespace])
        run(self.netns("ip", "link", "set", "lo", "up"))

    def create_link(self) -> None:
        run(
            [
                "ip",
                "link",
                "add",
                self.host_link,
                "type",
                "veth",
                "peer",
                "name",
                self.session_link,
                "netns",
                self.namespace,
            ]
        )
        run(["ip", "addr", "add", f"{self.host_ipv4}/30", "dev", self.host_link])
        run(["ip", "-6", "addr", "add", f"{self.host_ipv6}/64", "dev", self.host_link, "nodad"])
        run(["ip", "link", "set", self.host_link, "up"])
        run(self.netns("ip", "addr", "add", f"{self.session_ipv4}/30", "dev", self.session_link))
        run(
            self.netns(
                "ip",
                "-6",
                "addr",
                "add",
                f"{self.session_ipv6}/64",
                "dev",
                self.session_link,
                "nodad",
            )
        )
        run(self.netns("ip", "link", "set", self.session_link, "up"))
        run(self.netns("ip", "route", "add", "default", "via", str(self.host_ipv4)))
        run(self.netns("ip", "-6", "route", "add", "default", "via", str(self.host_ipv6)))

    def ruleset(self, allowed: list[Endpoint], inbound_ports: tuple[int, ...]) -> str:
        allow = "\n        ".join(endpoint.rule() for endpoint in allowed)
        ports = ", ".join(str(port) for port in inbound_ports)
        # A job's sandbox lets nothing in: no rule at all, since nft refuses an empty set.
        inbound = f"ip saddr {self.host_ipv4} tcp dport {{ {ports} }} accept" if ports else ""
        return f"""
table inet {TABLE} {{
    counter blocked_out {{ }}
    counter blocked_in {{ }}
    set blocked_to4 {{ type ipv4_addr . inet_service; {BLOCKED_SET} }}
    set blocked_to6 {{ type ipv6_addr . inet_service; {BLOCKED_SET} }}
    chain output {{
        type filter hook output priority filter; policy drop;
        oif "lo" accept
        ct state established,related accept
        icmpv6 type {{ {LINK_CONTROL_OUT} }} ip6 hoplimit 255 accept
        icmpv6 type {{ mld-listener-report, mld2-listener-report }} ip6 daddr ff02::/16 accept
        {allow}
        meta nfproto ipv4 meta l4proto {{ tcp, udp }} add @blocked_to4 {{ ip daddr . th dport }}
        meta nfproto ipv6 meta l4proto {{ tcp, udp }} add @blocked_to6 {{ ip6 daddr . th dport }}
        counter name "blocked_out" reject
    }}
    chain input {{
        type filter hook input priority filter; policy drop;
        iif "lo" accept
        ct state established,related accept
        icmpv6 type {{ {LINK_CONTROL_IN} }} ip6 hoplimit 255 accept
        {inbound}
        counter name "blocked_in" drop
    }}
    chain forward {{
        type filter hook forward priority filter; policy drop;
    }}
}}
"""

    def apply_rules(self, allowed: list[Endpoint], inbound_ports: tuple[int, ...]) -> str:
        """Load the table; return the fingerprint that `verify_rules` checks against."""
        run(self.netns("nft", "-f", "-"), stdin=self.ruleset(allowed, inbound_ports))
        return self.rules_fingerprint()

    def rules_fingerprint(self) -> str:
        # Stateless and terse: counters and the blocked destinations recorded change.
        listing = run(self.netns("nft", "--stateless", "--terse", "list", "table", "inet", TABLE))
        return hashlib.sha256(listing.encode()).hexdigest()

    def verify_rules(self, fingerprint: str) -> None:
        """Raise NetworkError unless the table is there exactly as it was loaded."""
        try:
            current = self.rules_fingerprint()
        except NetworkError as error:
            raise NetworkError(f"the firewall of {self.namespace} is missing: {error}") from None
        if current != fingerprint:
            raise NetworkError(f"the firewall of {self.namespace} was altered")

    def blocked_count(self) -> int:
        """Packets dropped so far, out and in."""
        listing = run(self.netns("nft", "list", "counters", "table", "inet", TABLE))
        return sum(int(n) for n in re.findall(r"packets (\d+)", listing))

    def blocked_destinations(self) -> dict[str, int]:
        """Packets dropped so far by destination ("address port", TCP and UDP only)."""
        found: dict[str, int] = {}
        for name in ("blocked_to4", "blocked_to6"):
            listing = json.loads(run(self.netns("nft", "-j", "list", "set", "inet", TABLE, name)))
            for item in listing["nftables"]:
                for element in item.get("set", {}).get("elem", []):
                    address, port = element["elem"]["val"]["concat"]
                    found[f"{address} {port}"] = element["elem"]["counter"]["packets"]
        return found

    # -- removal ---------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.namespace in run(["ip", "netns", "list"]).split()

    def link_exists(self) -> bool:
        probe = subprocess.run(["ip", "link", "show", "dev", self.host_link], capture_output=True)
        return probe.returncode == 0

    def remove_link(self) -> None:
        if self.link_exists():
            run(["ip", "link", "del", self.host_link])

    def remove_namespace(self) -> None:
        if self.exists():
            run(["ip", "netns", "del", self.namespace])


def has_address(address: ipaddress.IPv4Address) -> bool:
    """Whether loopback carries `address`."""
    listing = run(["ip", "-o", "-4", "addr", "show", "dev", "lo"])
    return f" {address}/" in listing


def add_hub_address(address: ipaddress.IPv4Address) -> None:
    """Give the host the hub's address (on loopback): the one host address sessions reach.

    Packets from a session's veth to it are delivered locally; nothing is routed onwards.
    """
    run(["ip", "addr", "replace", f"{address}/32", "dev", "lo"])


def remove_hub_address(address: ipaddress.IPv4Address) -> None:
    if has_address(address):
        run(["ip", "addr", "del", f"{address}/32", "dev", "lo"])


_reserved: set[int] = set()
_reserving = threading.Lock()


def numbers_in_use() -> set[int]:
    """The sandbox numbers that a namespace or a link on this machine carries."""
    namespaces = run(["ip", "netns", "list"])
    links = run(["ip", "-brief", "link"])
    taken = {int(n) for n in re.findall(r"^enclave-s(\d+)\b", namespaces, re.MULTILINE)}
    return taken | {int(n) for n in re.findall(r"^enc(\d+)h\b", links, re.MULTILINE)}


def reserve_session_number(numbers: range = SESSION_NUMBERS) -> int:
    """The lowest number in `numbers` that no namespace or link on this machine uses.

    Numbers handed out here stay reserved in this process until released, so sandboxes that
    are built at the same time get different ones.
    """
    taken = numbers_in_use()
    with _reserving:
        number = next(n for n in numbers if n not in taken | _reserved)
        _reserved.add(number)
    return number


def release_session_number(number: int) -> None:
    with _reserving:
        _reserved.discard(number)
