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
