"""NetworkPolicy, simulated: whether one pod may open a connection to another pod or address.

Kubernetes' rules, as a CNI applies them: a pod that no policy of its namespace selects for a
direction is open in that direction; one that some policy selects is allowed only what one of
their rules allows; a connection needs the source's egress and the destination's ingress.
Selectors with matchLabels and matchExpressions, namespace selectors, ipBlocks with except,
named ports (by the pod's container ports). Traffic within one pod never leaves it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

NAMESPACE_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: dict = field(hash=False)
    ports: dict = field(default_factory=dict, hash=False)  # container port names -> numbers
    address: str = "10.244.0.1"


def pod_of(name: str, namespace: str, template: dict) -> Pod:
    """A pod from its manifest or a Deployment's pod template."""
    ports = {
        port["name"]: port["containerPort"]
        for container in template["spec"]["containers"]
        for port in container.get("ports") or []
        if "name" in port
    }
    return Pod(name, namespace, dict(template["metadata"].get("labels") or {}), ports)


def matches(selector: dict, labels: dict) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        found = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not found:
            return False
    return True


def _peer_matches(peer: dict, policy_namespace: str, target: Pod | str) -> bool:
    if "ipBlock" in peer:
        if isinstance(target, Pod):
            return False  # pods' addresses are never in the narrow blocks these policies name
        address = ipaddress.ip_address(target)
        block = peer["ipBlock"]
        excepted = any(address in ipaddress.ip_network(e) for e in block.get("except", []))
        return address in ipaddress.ip_network(block["cidr"]) and not excepted
    if not isinstance(target, Pod):
        return False
    if "namespaceSelector" in peer:
        if not matches(peer["namespaceSelector"], {NAMESPACE_LABEL: target.namespace}):
            return False
    elif target.namespace != policy_namespace:
        return False
    return matches(peer.get("podSelector") or {}, target.labels)


def _port_matches(entries: list | None, port: int, protocol: str, pod: Pod | None) -> bool:
    if not entries:
        return True
    for entry in entries:
        if entry.get("protocol", "TCP") != protocol:
            continue
        number = entry.get("port")
        if isinstance(number, str):
            number = pod.ports.get(number) if pod else None
        if number is None and "port" not in entry:
            return True
        end = entry.get("endPort", number)
        if number is not None and number <= port <= end:
            return True
    return False


def _allowed_by(policies, pod: Pod, direction: str, other, port, protocol) -> bool:
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and direction in p["spec"].get("policyTypes", ["Ingress"])
        and matches(p["spec"]["podSelector"], pod.labels)
    ]
    if not selecting:
        return True
    rules_key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    # A port is the destination's: named ports are resolved on the destination pod.
    destination = other if direction == "Egress" else pod
    for policy in selecting:
        for rule in policy["spec"].get(rules_key) or []:
            peers = rule.get(peers_key)
            if peers and not any(_peer_matches(p, pod.namespace, other) for p in peers):
                continue
            if _port_matches(
                rule.get("ports"),
                port,
                protocol,
                destination if isinstance(destination, Pod) else None,
            ):
                return True
    return False


def allowed(policies, source: Pod, target: Pod | str, port: int, protocol: str = "TCP") -> bool:
    """Whether `source` may connect to `target` (a pod, or an address outside the cluster)."""
    if target == source:
        return True
    if not _allowed_by(policies, source, "Egress", target, port, protocol):
        return False
    if isinstance(target, Pod):
        return _allowed_by(policies, target, "Ingress", source, port, protocol)
    return True
