"""Merkle tree hashing of RFC 9162 (Certificate Transparency 2.0), section 2.1.

Leaves are hashed as SHA-256(0x00 || record) and interior nodes as SHA-256(0x01 || left ||
right). `TreeBuilder` adds leaves one at a time and gives the root of any prefix and the
consistency proof (2.1.4) between two sizes in O(log n), so that a whole log, its checkpoints
and its witnessed checkpoints verify in one pass.
"""

from __future__ import annotations

import hashlib


def leaf_hash(record: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + record).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = hashlib.sha256(b"").digest()


class TreeBuilder:
    """Every perfect subtree of the leaves added so far, level by level (32 bytes a node).

    Keeping the levels costs twice the leaves' hashes and gives the root of any prefix, and
    the consistency proof between any two sizes, in O(log n).
    """

    def __init__(self) -> None:
        self.size = 0
        self._levels: list[bytearray] = [bytearray()]  # level h: aligned subtrees of 2**h leaves

    def add(self, leaf: bytes) -> None:
        """Add a leaf hash."""
        self._levels[0] += leaf
        self.size += 1
        height, count = 0, self.size
        while count % 2 == 0:
            level = self._levels[height]
            node = node_hash(bytes(level[-64:-32]), bytes(level[-32:]))
            height, count = height + 1, count // 2
            if height == len(self._levels):
                self._levels.append(bytearray())
            self._levels[height] += node

    def _subtree(self, start: int, size: int) -> bytes:
        """MTH(D[start:start+size]), where `start` is a multiple of a power of two >= size."""
        height = size.bit_length() - 1
        if size == 1 << height:
            index = start >> height
            return bytes(self._levels[height][32 * index : 32 * index + 32])
        split = 1 << height
        return node_hash(self._subtree(start, split), self._subtree(start + split, size - split))

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first `size` leaves (all of them by default)."""
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ValueError(f"the tree holds {self.size} leaves, not {size}")
        return self._subtree(0, size) if size else EMPTY_ROOT

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        """PROOF(old, D[new]) of RFC 9162, 2.1.4.1: the old tree is a prefix of the new."""
        new = self.size if new is None else new
        if not 0 <= old <= new <= self.size:
            raise ValueError(f"no consistency proof from size {old} to {new}")
        if old == 0 or old == new:
            return []
        return self._subproof(old, 0, new, True)

    def _subproof(self, m: int, start: int, n: int, whole: bool) -> list[bytes]:
        if m == n:
            return [] if whole else [self._subtree(start, n)]
        k = 1 << ((n - 1).bit_length() - 1)
        if m <= k:
            return [*self._subproof(m, start, k, whole), self._subtree(start + k, n - k)]
        return [*self._subproof(m - k, start + k, n - k, False), self._subtree(start, k)]


def consistent(old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]) -> bool:
    """Whether `proof` shows the tree (old, old_root) a prefix of (new, new_root): RFC 9162,
    2.1.4.2."""
    if old > new:
        return False
    if old == new:
        return not proof and old_root == new_root
    if old == 0:
        return not proof
    if not proof:
        return False
    path = [old_root, *proof] if old & (old - 1) == 0 else list(proof)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for node in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(node, fr), node_hash(node, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, node)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == new_root and sn == 0


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
