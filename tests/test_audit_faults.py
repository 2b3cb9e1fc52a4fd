"""Storage faults under the audit store: fsync fails, then the power is cut.

Real faults first: libfiu's `fiu-run` (Debian's fiu-utils) makes the writer process's fsync
calls fail at random, and the writer is then killed with no orderly close. The power cut
cannot be had from a real disk here, so it is simulated by `FaultyDisk`, which stands in for
the store's write, fsync and ftruncate (`FileOps`) and otherwise does the real calls on real
files. It models Linux after a failed fsync: the pages written since the last good fsync are
marked clean and never reach the disk, even if a later fsync on the same file succeeds; a
power cut leaves each file as its last good fsync made it.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from enclave_hub.audit import AuditLog
from enclave_hub.audit.query import records
from enclave_hub.audit.store import AuditStore, FileOps, LogUnwritable, read_frames, segments
from enclave_hub.audit.verify import verify_log
from enclave_hub.audit.witness import read_witnessed
from enclave_hub.core.audit_key import key_fingerprint, load_or_create_signing_key


class FaultyDisk(FileOps):
    """Real calls, with fsync failing on demand and a power cut that keeps only what the
    last good fsync of each file made durable."""

    def __init__(self) -> None:
        self.failing = 0  # how many of the next fsyncs fail with EIO
        self.always_fail = False
        self.durable: dict[Path, bytes] = {}
        self.lost_from: dict[Path, int] = {}  # where pages dropped at a failed fsync begin

    @staticmethod
    def _path(fd: int) -> Path:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))

    def fsync(self, fd: int) -> None:
        path = self._path(fd)
        if self.always_fail or self.failing:
            self.failing = max(0, self.failing - 1)
            self.lost_from.setdefault(path, len(self.durable.get(path, b"")))
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        os.fsync(fd)
        content = path.read_bytes()
        lost = self.lost_from.get(path, len(content))
        self.durable[path] = content[:lost] + bytes(max(0, len(content) - lost))

    def ftruncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)
        path = self._path(fd)
        if self.lost_from.get(path, length) >= length:
            self.lost_from.pop(path, None)  # the dropped pages are cut off the file too
        self.durable[path] = self.durable.get(path, b"")[:length]

    def power_cut(self, folder: Path) -> None:
        for segment in segments(folder):
            segment.write_bytes(self.durable.get(segment, b""))
        self.lost_from.clear()


FAULT_WRITER = Path(__file__).with_name("audit_fault_writer.py")


def test_real_fsync_faults_then_kill_9_keep_every_acknowledged_event(tmp_path):
    fiu_run = shutil.which("fiu-run")
    assert fiu_run, "needs fiu-run, from Debian's fiu-utils (./bootstrap.sh test installs it)"
    folder, key, witness = tmp_path / "audit", tmp_path / "signing.key", tmp_path / "witness"
    pinned = key_fingerprint(load_or_create_signing_key(key).public_key())
    faults = "enable_random name=posix/io/sync/fsync,probability=0.05"
    command = [fiu_run, "-x", "-c", faults, sys.executable, str(FAULT_WRITER)]
    command += [str(folder), str(key), pinned, str(witness), "150"]
    writer = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    lines = []
    for line in writer.stdout:
        if line == "done\n":
            break
        lines.append(line)
    writer.send_signal(signal.SIGKILL)
    writer.communicate()
    acknowledged = {line.split()[1] for line in lines if line.startswith("ack ")}
    refused = [line for line in lines if line.startswith("refused ")]
    assert refused and len(acknowledged) + len(refused) == 600
    AuditLog(folder, key, 3600, pinned=pinned, witness=witness).close()  # the restart
    verdict = verify_log(folder, pinned, witnessed=read_witnessed(witness))
    assert verdict.ok, verdict.reason
    found = list(records(folder))
    assert acknowledged <= {r.get("target") for r in found}
    recorded = [r for r in found if r["action"] == "audit.fault"]
    assert recorded and all(r["outcome"] == "recovered" and r["reason"] for r in recorded)


def _writers(store: AuditStore, disk: FaultyDisk, acknowledged: set[int], refused: list[str]):
    """Four threads appending 200 events each while fsync fails now and then."""
    lock = threading.Lock()

    def write(thread: int) -> None:
        for n in range(200):
            if thread == 0 and n % 40 == 20:
                disk.failing = 1
            try:
                seq = store.append({"actor": "writer", "action": "test.event", "target": f"{n}"})
            except LogUnwritable as error:
                with lock:
                    refused.append(str(error))
                continue
            with lock:
                acknowledged.add(seq)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _verified(folder: Path) -> list[dict]:
    verdict = verify_log(folder, Ed25519PrivateKey.generate().public_key())  # no checkpoints
    assert verdict.ok, verdict.reason
    return list(records(folder))


@pytest.mark.parametrize("segment_bytes", [1 << 26, 4096])
def test_eio_on_fsync_then_a_power_cut_keeps_every_acknowledged_event(tmp_path, segment_bytes):
    folder, disk = tmp_path / "audit", FaultyDisk()
    store = AuditStore(folder, segment_bytes, disk)
    acknowledged: set[int] = set()
    refused: list[str] = []
    _writers(store, disk, acknowledged, refused)
    store.append({"actor": "writer", "action": "test.event", "target": "last"})
    store.close()
    assert refused and all("Input/output error" in reason for reason in refused)
    disk.power_cut(folder)  # everything not made durable by a good fsync is gone
    AuditStore(folder, segment_bytes).close()  # the restart
    found = _verified(folder)
    kept = {r["seq"]: r for r in found}
    assert acknowledged <= set(kept), f"lost: {sorted(acknowledged - set(kept))[:5]}"
    faults = [r for r in found if r["action"] == "audit.fault"]
    assert faults and {r["reason"] for r in faults} == {"Input/output error"}
    assert len(faults) == len({r["prev"] for r in faults})
    assert found[-1]["target"] == "last"


def test_nothing_is_accepted_until_the_segment_is_checked_again(tmp_path):
    folder, disk = tmp_path / "audit", FaultyDisk()
    store = AuditStore(folder, ops=disk)
    first = store.append({"actor": "alice", "action": "login", "outcome": "ok"})
    disk.always_fail = True
    for attempt in range(3):  # the reopened segment's own fsync fails too: still refused
        with pytest.raises(LogUnwritable, match="Input/output error"):
            store.append({"actor": "alice", "action": "session.start", "target": f"{attempt}"})
    disk.always_fail = False
    after = store.append({"actor": "alice", "action": "session.start", "target": "after"})
    store.close()
    disk.power_cut(folder)
    AuditStore(folder).close()
    found = _verified(folder)
    assert [r["action"] for r in found] == ["login", "audit.fault", "session.start"]
    assert (first, after) == (0, 2)
    first_end = next(read_frames(folder / "000000000000.seg")).end
    assert found[1]["detail"] == {"kept_bytes": first_end}, "cut back to the durable end"


def test_a_segment_that_lost_acknowledged_records_stays_refused(tmp_path):
    folder, disk = tmp_path / "audit", FaultyDisk()
    store = AuditStore(folder, ops=disk)
    store.append({"actor": "alice", "action": "login", "outcome": "ok"})
    store.append({"actor": "alice", "action": "logout"})
    disk.failing = 1
    with pytest.raises(LogUnwritable, match="Input/output error"):
        store.append({"actor": "alice", "action": "login", "outcome": "ok"})
    (segment,) = segments(folder)
    with segment.open("r+b") as damaged:  # a disk that lost what it had acknowledged
        damaged.seek(40)
        damaged.write(bytes(16))
    for _ in range(2):
        with pytest.raises(LogUnwritable, match="does not hold the 2 records acknowledged"):
            store.append({"actor": "alice", "action": "login", "outcome": "ok"})
    store.close()


def test_a_store_that_fails_to_open_lets_go_of_the_log(tmp_path):
    """Its torn tail cut, the store cannot record the cut on a failing disk: the open fails,
    and a retry in the same process (a service restarting its log) opens the log."""
    folder, disk = tmp_path / "audit", FaultyDisk()
    AuditStore(folder).close()
    (segment,) = segments(folder)
    with segment.open("ab") as torn:
        torn.write(b"\x40\x00\x00\x00half a frame")
    disk.always_fail = True
    with pytest.raises(LogUnwritable, match="Input/output error"):
        AuditStore(folder, ops=disk)
    AuditStore(folder).close()
    assert [r["outcome"] for r in _verified(folder)] == ["torn-tail-truncated"]


def test_a_log_that_fails_to_open_lets_go_of_its_store(tmp_path):
    folder, key = tmp_path / "audit", tmp_path / "signing.key"
    AuditLog(folder, key).close()
    good = key.read_bytes()
    key.write_bytes(b"not a key")
    with pytest.raises(ValueError, match="PEM"):
        AuditLog(folder, key)
    key.write_bytes(good)
    AuditLog(folder, key).close()
