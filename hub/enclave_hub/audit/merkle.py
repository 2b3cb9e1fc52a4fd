"""Merkle tree hashing of RFC 9162 (Certificate Transparency 2.0), section 2.1.

Leaves are hashed as SHA-256(0x00 || record) and interior nodes as SHA-256(0x01 || left ||
right). `TreeBuilder` adds leaves one at a time and gives the root of the tree so far in
O(log n), so that a whole log and all its checkpoints verify in one pass.
"""

from __future__ import annotations

import hashlib


def leaf_hash(record: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + record).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = hashlib.sha256(b"").digest()


class TreeBuilder:
    """The roots of perfect subtrees covering the leaves added so far, largest first."""

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[tuple[int, bytes]] = []  # (height, hash)

    def add(self, leaf: bytes) -> None:
        """Add a leaf hash."""
        height, node = 0, leaf
        while self._stack and self._stack[-1][0] == height:
            _, left = self._stack.pop()
            node = node_hash(left, node)
            height += 1
        self._stack.append((height, node))
        self.size += 1

    def root(self) -> bytes:
        """MTH of the leaves added so far."""
        if not self._stack:
            return EMPTY_ROOT
        node = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            node = node_hash(left, node)
        return node


def tree_root(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) computed by the recursive definition (for checking TreeBuilder)."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(tree_root(leaves[:split]), tree_root(leaves[split:]))


def inclusion_proofs(leaves: list[bytes], indexes: list[int]) -> dict[int, list[bytes]]:
    """The audit path (RFC 9162, 2.1.3.1) of each index in the tree of all `leaves`.

    Built level by level: a node without a right sibling moves up unchanged, which gives the
    same tree as the RFC's split at the largest power of two.
    """
    proofs: dict[int, list[bytes]] = {index: [] for index in indexes}
    positions = {index: index for index in indexes}
    level = leaves
    while len(level) > 1:
        for index, position in positions.items():
            sibling = position ^ 1
            if sibling < len(level):
                proofs[index].append(level[sibling])
            positions[index] = position // 2
        pairs = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        level = pairs + ([level[-1]] if len(level) % 2 else [])
    return proofs


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes:
    """The root that a leaf and its audit path imply (RFC 9162, 2.1.3.2); ValueError if none."""
    if index >= size:
        raise ValueError(f"index {index} is beyond the tree's size {size}")
    fn, sn, node = index, size - 1, leaf
    for sibling in path:
        if sn == 0:
            raise ValueError("the audit path is too long")
        if fn % 2 == 1 or fn == sn:
            node = node_hash(sibling, node)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            node = node_hash(node, sibling)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ValueError("the audit path is too short")
    return node
