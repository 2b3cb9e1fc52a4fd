"""Crash consistency: kill -9 the writer 1,000 times at random points; the log always verifies,
stays consistent with its witness and keeps every event it acknowledged.

The writer is a child forked from the test (no interpreter start, so 1,000 lives take
seconds): it opens the log as the audit service does (recovery, the pinned key, the witness),
then appends from four threads, signing checkpoints every few milliseconds. Each
acknowledgement goes down a pipe to the test, the observer, which outlives every kill.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from pathlib import Path

from enclave_hub.audit import AuditLog
from enclave_hub.audit.store import read_frames, segments
from enclave_hub.audit.verify import verify_log
from enclave_hub.audit.witness import read_witnessed
from enclave_hub.core.audit_key import key_fingerprint, load_or_create_signing_key

ITERATIONS = 1000
EVENTS_PER_THREAD = 6
LIVES_PER_LOG = 100


def _writer(folder: Path, key: Path, pinned: str, witness: Path, run: int, pipe: int) -> None:
    """The child's life: open the log, append and report each acknowledgement."""
    log = AuditLog(folder, key, interval=0.002, pinned=pinned, witness=witness)

    def write(thread: int) -> None:
        for n in range(EVENTS_PER_THREAD):
            target = f"{run}-{thread}-{n}"
            log.append({"actor": "writer", "action": "test.event", "target": target})
            os.write(pipe, f"{target}\n".encode())  # one write, below PIPE_BUF: atomic

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(60)  # done early: wait for the kill


def _life(folder: Path, key: Path, pinned: str, witness: Path, run: int, delay: float) -> set:
    """Fork a writer, kill -9 it after `delay` seconds; return what it acknowledged."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the writer
        try:
            os.close(read_end)
            _writer(folder, key, pinned, witness, run, write_end)
        finally:
            os._exit(0)
    os.close(write_end)
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as reports:
        return set(reports.read().decode().split())


def _targets(folder: Path) -> set[str]:
    found = set()
    for segment in segments(folder):
        for item in read_frames(segment):
            assert item.payload is not None, "a damaged frame survived recovery"
            found.add(json.loads(item.payload).get("target"))
    return found


def _check(folder: Path, key: Path, pinned: str, witness: Path, acknowledged: set, run: int):
    AuditLog(folder, key, interval=3600, pinned=pinned, witness=witness).close()  # a restart
    verdict = verify_log(folder, pinned, witnessed=read_witnessed(witness))
    assert verdict.ok, f"after kill {run}: {verdict.reason}"
    missing = acknowledged - _targets(folder)
    assert not missing, f"after kill {run}: acknowledged events lost: {sorted(missing)[:3]}"


def test_killing_the_writer_never_loses_an_acknowledged_event(tmp_path):
    key = tmp_path / "signing.key"
    pinned = key_fingerprint(load_or_create_signing_key(key).public_key())
    randomness = random.Random(20261207)
    lives_with_acks = witnessed = 0
    for log_number in range(
        ITERATIONS // LIVES_PER_LOG
    ):  # a new log now and then keeps lives short
        folder, witness = tmp_path / f"audit-{log_number}", tmp_path / f"witness-{log_number}"
        acknowledged: set[str] = set()
        for life in range(LIVES_PER_LOG):
            run = log_number * LIVES_PER_LOG + life
            acked = _life(folder, key, pinned, witness, run, randomness.uniform(0, 0.04))
            lives_with_acks += bool(acked)
            acknowledged |= acked
        _check(folder, key, pinned, witness, acknowledged, run)
        witnessed += len(read_witnessed(witness))
    assert lives_with_acks > ITERATIONS // 3, "the writers hardly got going"
    assert witnessed > ITERATIONS // 3, "checkpoints were hardly witnessed"
