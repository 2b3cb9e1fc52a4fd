"""How soon a job runs: submit-to-running of a job against the start of a session.

In one real `enclave up`, in turns, each round from nothing running but the submitting session:

- a session's start: from the hub API's POST of the server to the server answering (the hub's
  `ready`), as a researcher waits for it; the session's sandbox and Jupyter server included;
- a job's start, with the project's slot free: from `enclave.submit_job` in the session to the
  job service marking it running (its `started_at` less its `created_at`, the service's own
  clock), and to the first line of the job's own code (a script that writes `time.time()`),
  which adds the sandbox's Python start.

The job service's peak memory over the run is printed too. Best and median of `--rounds`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from enclave_harness import (
    HubAPI,
    Kernel,
    SessionNotebook,
    make_site_dir,
    require_root,
    start_enclave,
    write_site_config,
)

USER, PROJECT = "bench", "job-bench"
OTHER = "job-bench-sessions"  # the project whose session starts are timed
SCRIPT = "import pathlib, time\npathlib.Path('first-line').write_text(repr(time.time()))\n"
SUBMIT = (
    "import enclave, json, pathlib, time\n"
    f"pathlib.Path('first.py').write_text({SCRIPT!r})\n"
    "t = time.time()\n"
    "job = enclave.submit_job('first.py')\n"
    "done = enclave.wait_for_job(job['id'], timeout=120, every=0.2)\n"
    "print(json.dumps({'submitted': t, 'job': done}))\n"
)


def _moment(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def job_round(kernel: Kernel, workspace: Path) -> dict:
    result = json.loads(kernel.execute(SUBMIT).strip().splitlines()[-1])
    job = result["job"]
    assert job["status"] == "succeeded", job
    first_line = float((workspace / "jobs" / str(job["id"]) / "first-line").read_text())
    return {
        "running": _moment(job["started_at"]) - _moment(job["created_at"]),
        "first_line": first_line - result["submitted"],
    }


def session_round(api: HubAPI) -> float:
    started = time.monotonic()
    assert api.start_session(USER, OTHER).status_code in (201, 202)
    api.wait_until_ready(USER, OTHER)
    took = time.monotonic() - started
    api.stop_session(USER, OTHER)
    return took


def peak_memory(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def job_service_pid(state_dir: Path) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"enclave_hub.jobs.service" in argv and str(state_dir).encode() in b" ".join(argv):
                return int(entry.name)
    raise RuntimeError("the job service is not running")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    require_root()
    base = make_site_dir()
    projects = [
        {"id": PROJECT, "title": "Job benchmark", "members": [USER]},
        {"id": OTHER, "title": "Session benchmark", "members": [USER]},
    ]
    enclave = start_enclave(write_site_config(base, projects=projects))
    try:
        session = SessionNotebook(enclave, USER, PROJECT, timeout=300)
        kernel, api = session.kernel, session.api
        workspace = enclave.site.sessions.workspace_root / PROJECT / "shared"
        jobs, sessions = [], []
        for number in range(args.rounds):
            jobs.append(job_round(kernel, workspace))
            sessions.append(session_round(api))
            took = f"job {jobs[-1]}, session {sessions[-1]:.2f}"
            print(f"round {number + 1}: {took}", file=sys.stderr)
        service_memory = peak_memory(job_service_pid(enclave.state_dir))
        session.stop()
    finally:
        enclave.stop()
    report(jobs, sessions, service_memory)


def report(jobs: list[dict], sessions: list[float], service_memory: int) -> None:
    rows = {
        "session start (to ready)": sessions,
        "job: submit to running": [j["running"] for j in jobs],
        "job: submit to its first line": [j["first_line"] for j in jobs],
    }
    print(f"\n{len(sessions)} rounds; job service peak memory {service_memory / 2**20:.0f} MiB")
    print(f"{'':34}{'best (s)':>10}{'median (s)':>12}")
    for name, values in rows.items():
        print(f"{name:34}{min(values):10.2f}{statistics.median(values):12.2f}")
    session = statistics.median(sessions)
    for name in list(rows)[1:]:
        ratio = statistics.median(rows[name]) / session
        print(f"{name}: {ratio:.2f}x a session's start (medians)")


if __name__ == "__main__":
    main()
