"""The checksum a registered object carries: sha256 over each file's path and content."""

from __future__ import annotations

import hashlib

from enclave.registration import tree_digest


def _by_hand(files: dict[str, bytes]) -> str:
    digests = {name: hashlib.sha256(content).hexdigest() for name, content in files.items()}
    lines = "".join(f"{name}\0{digests[name]}\n" for name in sorted(files))
    return "sha256:" + hashlib.sha256(lines.encode()).hexdigest()


def test_a_folders_digest_covers_every_files_path_and_content(tmp_path):
    files = {f"store/{n % 7}/{n}": bytes([n]) * (n * 997) for n in range(40)}
    files["store/.zattrs"] = b"{}"
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    assert tree_digest(tmp_path) == _by_hand(files)

    (tmp_path / "store/3/10").write_bytes(b"\x0b" * 9970)
    assert tree_digest(tmp_path) != _by_hand(files), "one byte of one file changed"
    (tmp_path / "store/3/10").write_bytes(files["store/3/10"])
    (tmp_path / "store/3/10").rename(tmp_path / "store/3/11b")
    assert tree_digest(tmp_path) != _by_hand(files), "one file renamed"
