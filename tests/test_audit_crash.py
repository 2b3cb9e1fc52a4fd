"""Crash consistency: kill -9 the writer at random points; the log always verifies and keeps
every event it acknowledged."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from enclave_hub.audit import AuditLog
from enclave_hub.audit.checkpoints import PUBLIC_KEY_FILE, load_public_key
from enclave_hub.audit.store import read_frames, segments
from enclave_hub.audit.verify import verify_log

WRITER = Path(__file__).with_name("audit_writer.py")
ITERATIONS = 200


def _targets(folder: Path) -> set[str]:
    found = set()
    for segment in segments(folder):
        for item in read_frames(segment):
            assert item.payload is not None, "a damaged frame survived recovery"
            found.add(json.loads(item.payload)["target"])
    return found


def test_killing_the_writer_never_loses_an_acknowledged_event(tmp_path):
    folder, key = tmp_path / "audit", tmp_path / "signing.key"
    randomness = random.Random(20261122)
    acknowledged: set[str] = set()
    for run in range(ITERATIONS):
        writer = subprocess.Popen(
            [sys.executable, str(WRITER), str(folder), str(key), str(run)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout.readline() == "ready\n"
        time.sleep(randomness.uniform(0, 0.05))
        writer.send_signal(signal.SIGKILL)
        output, _ = writer.communicate()
        acknowledged |= {line.split()[1] for line in output.splitlines() if line.startswith("ack")}
        # The restart: opening the log recovers a torn tail (and records that it did).
        AuditLog(folder, key, interval=3600).close()
        verdict = verify_log(folder, load_public_key(folder / PUBLIC_KEY_FILE))
        assert verdict.ok, f"after kill {run}: {verdict.reason}"
        missing = acknowledged - _targets(folder)
        assert not missing, f"after kill {run}: acknowledged events lost: {sorted(missing)[:3]}"
    assert len(acknowledged) > ITERATIONS, "the writers hardly got going"
