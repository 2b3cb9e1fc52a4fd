"""What a job left, as the job service lists it: every file with its hash, links and pipes named
as what they are, never followed or read."""

from __future__ import annotations

import hashlib
import os

from enclave_hub.jobs.outputs import manifest


def test_files_are_hashed_and_links_and_pipes_are_only_named(tmp_path):
    secret = tmp_path / "elsewhere.txt"
    secret.write_text("not the job's")
    job = tmp_path / "job"
    (job / "plots").mkdir(parents=True)
    (job / "result.csv").write_text("a,b\n1,2\n")
    (job / "plots" / "fig.png").write_bytes(b"\x89PNG")
    (job / "link.txt").symlink_to(secret)
    (job / "linked-folder").symlink_to(tmp_path)
    os.mkfifo(job / "pipe")  # opening it to read would wait for ever
    found = {entry["name"]: entry for entry in manifest(job)}
    assert found["result.csv"] == {
        "name": "result.csv",
        "sha256": hashlib.sha256(b"a,b\n1,2\n").hexdigest(),
        "size": 8,
    }
    assert found["plots/fig.png"]["size"] == 4
    for name in ("link.txt", "linked-folder", "pipe"):
        assert found[name]["sha256"] is None and found[name]["note"] == "not a file", name
    assert sorted(found) == [
        "link.txt",
        "linked-folder",
        "pipe",
        "plots/fig.png",
        "result.csv",
    ]
