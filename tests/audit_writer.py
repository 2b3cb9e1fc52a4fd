"""A writer the crash test kills: appends from four threads, printing each acknowledged event.

Usage: python tests/audit_writer.py FOLDER KEY RUN
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from enclave_hub.audit import AuditLog

folder, key, run = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
log = AuditLog(folder, key, interval=0.005)
print_lock = threading.Lock()


def write(thread: int) -> None:
    for n in range(1_000_000):
        event_id = f"{run}-{thread}-{n}"
        log.append({"actor": "writer", "action": "test.event", "target": event_id})
        with print_lock:
            sys.stdout.write(f"ack {event_id}\n")
            sys.stdout.flush()


threads = [threading.Thread(target=write, args=(t,), daemon=True) for t in range(4)]
print("ready", flush=True)
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
