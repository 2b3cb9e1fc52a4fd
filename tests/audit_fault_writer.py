"""A writer run under libfiu's `fiu-run` by the fault test: the audit log as the service runs
it, appending from four threads and printing each acknowledged and each refused event.

Usage: python tests/audit_fault_writer.py FOLDER KEY FINGERPRINT WITNESS COUNT
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from enclave_hub.audit import AuditLog, LogUnwritable


def open_log() -> AuditLog:
    """Open the log as the service does; a fault while opening is retried, as a restart."""
    while True:
        try:
            return AuditLog(Path(folder), Path(key), 0.005, pinned=pinned, witness=Path(witness))
        except (OSError, LogUnwritable):
            time.sleep(0.01)


folder, key, pinned, witness, count = sys.argv[1:6]
log = open_log()
print_lock = threading.Lock()


def write(thread: int) -> None:
    for n in range(int(count)):
        target = f"{thread}-{n}"
        try:
            log.append({"actor": "writer", "action": "test.event", "target": target})
            line = f"ack {target}\n"
        except LogUnwritable as error:
            line = f"refused {error}\n"
        with print_lock:
            sys.stdout.write(line)
            sys.stdout.flush()


threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("done", flush=True)
time.sleep(600)  # killed here, with no orderly close
