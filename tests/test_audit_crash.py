"""Crash consistency: kill -9 the writer 1,000 times at random points; the log always verifies,
stays consistent with its witness and keeps every event it acknowledged.

The writer is forked from a small fork server that has imported the audit log (no interpreter
start, and none of the test process's memory to copy, so 1,000 lives take well under a
minute): it opens the log as the audit service does (recovery, the pinned key, the witness),
then appends from four threads, signing checkpoints every few milliseconds. Most kills come a
random moment after it has opened the log, the others a random moment after its start (in its
recovery, perhaps). Each acknowledgement goes down a pipe to the test, the observer, which
outlives every kill.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import random
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
LIVES_PER_LOG = 25
OPENED = b"opened"  # the writer's first report: the log is open, recovery done
WRITERS = multiprocessing.get_context("forkserver")
WRITERS.set_forkserver_preload(["enclave_hub.audit"])


def _writer(folder: Path, key: Path, pinned: str, witness: Path, run: int, pipe) -> None:
    """The child's life: open the log, append and report each acknowledgement."""
    log = AuditLog(folder, key, interval=0.002, pinned=pinned, witness=witness)
    pipe.send_bytes(OPENED)

    def write(thread: int) -> None:
        for n in range(EVENTS_PER_THREAD):
            target = f"{run}-{thread}-{n}"
            log.append({"actor": "writer", "action": "test.event", "target": target})
            pipe.send_bytes(target.encode())  # one write, below PIPE_BUF: atomic

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(60)  # done early: wait for the kill


def _life(
    folder: Path, key: Path, pinned: str, witness: Path, run: int, delay: float, opened: bool
) -> set:
    """Fork a writer, kill -9 it `delay` seconds after its start, or after it `opened` the log
    (so that most kills land among its appends whatever the machine's load); return what it
    acknowledged."""
    reports, pipe = WRITERS.Pipe(duplex=False)
    writer = WRITERS.Process(target=_writer, args=(folder, key, pinned, witness, run, pipe))
    writer.start()
    pipe.close()
    acknowledged = []
    if opened:
        with contextlib.suppress(EOFError):  # it died before opening the log
            acknowledged.append(reports.recv_bytes())
    time.sleep(delay)
    writer.kill()
    writer.join()
    with contextlib.suppress(EOFError):
        while True:
            acknowledged.append(reports.recv_bytes())
    reports.close()
    return {report.decode() for report in acknowledged} - {OPENED.decode()}


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
            delay, opened = randomness.uniform(0, 0.015), randomness.random() < 0.75
            acked = _life(folder, key, pinned, witness, run, delay, opened)
            lives_with_acks += bool(acked)
            acknowledged |= acked
        _check(folder, key, pinned, witness, acknowledged, run)
        witnessed += len(read_witnessed(witness))
    assert lives_with_acks > ITERATIONS // 2, "the writers hardly got going"
    assert witnessed > ITERATIONS // 3, "checkpoints were hardly witnessed"
