"""`pip install` of ten common analysis packages: through Enclave's package index, from a session
with no internet, its cache cold and then warm, against pip on the host installing the same
files straight from the upstream index.

The ten and every dependency are resolved once, on the host, for this Python
(`pip install --dry-run --report`), and installed by exact version with `--no-deps`, so that the
three ways install the same files; the site allows exactly those names. Each install goes
into a fresh folder (`--target`) with pip's own cache off, so that only the index serves the
files. The upstream index is the one this host's pip uses by default, asked alone
(`--isolated`: no local wheel folders or other indexes). Cold is one round (the index's cache
is emptied before it); warm and upstream are `--rounds` each, run in turns (best and median).
Peak memory is pip's own (its process's high-water mark), and the package index service's over
the run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from enclave_harness import (
    SessionNotebook,
    make_site_dir,
    require_root,
    start_enclave,
    write_site_config,
)
from enclave_hub.packages.upstream import host_index_url

USER, PROJECT = "bench", "package-bench"
TEN = [
    "lifelines",
    "seaborn",
    "plotly",
    "networkx",
    "tableone",
    "pingouin",
    "statsmodels",
    "openpyxl",
    "tabulate",
    "scikit-learn",
]
# Run by the session's Python (and by the host's for upstream): pip in a child process, timed,
# with its peak memory.
PIP_RUN = """
import json, os, resource, shutil, subprocess, sys, time
target, requirements, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
shutil.rmtree(target, ignore_errors=True)
env = {k: v for k, v in os.environ.items() if k != 'PIP_PREFIX'}  # --target instead
t = time.perf_counter()
subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-cache-dir', '--no-deps',
                '--disable-pip-version-check', '--target', target, '-r', requirements, *extra],
               check=True, env=env)
took = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
shutil.rmtree(target, ignore_errors=True)
print(json.dumps({'seconds': took, 'peak': peak}))
"""


def resolve(index: str, folder: Path) -> list[dict]:
    """The ten and their dependencies, as pip resolves them for this Python from `index`."""
    report = folder / "report.json"
    subprocess.run(
        [
            sys.executable,
            *("-m", "pip", "install", "-q", "--isolated", "--dry-run", "--ignore-installed"),
            *("--index-url", index, "--report", str(report), *TEN),
        ],
        check=True,
    )
    found = json.loads(report.read_text())["install"]
    return [
        {
            "name": item["metadata"]["name"],
            "version": item["metadata"]["version"],
            "url": item["download_info"]["url"],
        }
        for item in found
    ]


def index_service_peak(state_dir: Path) -> int:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"enclave_hub.packages.service" in argv and str(state_dir).encode() in argv:
            status = (entry / "status").read_text().splitlines()
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM"))
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    require_root()
    upstream = host_index_url()
    scratch = Path(tempfile.mkdtemp(prefix="enclave-bench-pip-"))
    pins = resolve(upstream, scratch)
    requirements = "".join(f"{p['name']}=={p['version']}\n" for p in pins)
    (scratch / "requirements.txt").write_text(requirements)
    (scratch / "pip_run.py").write_text(PIP_RUN)
    base = make_site_dir()
    site = {
        "projects": [{"id": PROJECT, "title": "Package benchmark", "members": [USER]}],
        "packages": {"allow": [p["name"] for p in pins], "upstream": upstream},
        "sessions": {"profiles": {"default": {"memory": "8GiB", "cpus": 2}}},
    }
    enclave = start_enclave(write_site_config(base, **site))
    try:
        session = SessionNotebook(enclave, USER, PROJECT, timeout=1800)
        kernel = session.kernel
        kernel.execute(
            "import pathlib\n"
            f"pathlib.Path('pip_run.py').write_text({PIP_RUN!r})\n"
            f"pathlib.Path('requirements.txt').write_text({requirements!r})\n"
        )

        def in_session() -> dict:
            code = (
                "import json, subprocess, sys\n"
                "done = subprocess.run([sys.executable, 'pip_run.py', 'target', "
                "'requirements.txt'], capture_output=True, text=True)\n"
                "print(done.stdout if done.returncode == 0 else json.dumps(done.stderr))\n"
            )
            result = json.loads(kernel.execute(code).strip().splitlines()[-1])
            if isinstance(result, str):
                raise RuntimeError(f"pip in the session failed: {result}")
            return result

        def from_upstream() -> dict:
            done = subprocess.run(
                [
                    sys.executable,
                    *(str(scratch / "pip_run.py"), str(scratch / "target")),
                    *(str(scratch / "requirements.txt"), "--isolated", "--index-url", upstream),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            return json.loads(done.stdout.strip().splitlines()[-1])

        shutil.rmtree(enclave.site.packages_cache_dir, ignore_errors=True)
        enclave.site.packages_cache_dir.mkdir(mode=0o700)
        cold = in_session()
        print(f"cold: {cold}", file=sys.stderr)
        warm, direct = [], []
        for number in range(args.rounds):
            warm.append(in_session())
            direct.append(from_upstream())
            print(f"round {number + 1}: warm {warm[-1]}, upstream {direct[-1]}", file=sys.stderr)
        files = enclave.site.packages_cache_dir.rglob("*")
        cached = sum(f.stat().st_size for f in files if f.is_file())
        service_peak = index_service_peak(enclave.state_dir)
        session.stop()
    finally:
        enclave.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    report(pins, cold, warm, direct, cached, service_peak)


def report(pins, cold, warm, direct, cached: int, service_peak: int) -> None:
    print(
        f"\n{len(TEN)} packages, {len(pins)} files with their dependencies, "
        f"{cached / 2**20:.0f} MiB; index service peak memory {service_peak / 2**20:.0f} MiB"
    )
    print(f"{'':30}{'best s':>8}{'median s':>10}{'pip peak MiB':>14}{'best':>7}{'median':>8}")
    rows = {
        "upstream, straight": direct,
        "Enclave's index, cold": [cold],
        "Enclave's index, warm": warm,
    }
    best_direct = min(r["seconds"] for r in direct)
    median_direct = statistics.median(r["seconds"] for r in direct)
    for name, runs in rows.items():
        best = min(r["seconds"] for r in runs)
        median = statistics.median(r["seconds"] for r in runs)
        peak = max(r["peak"] for r in runs)
        print(
            f"{name:30}{best:8.1f}{median:10.1f}{peak / 2**20:14.0f}"
            f"{best / best_direct:6.2f}x{median / median_direct:7.2f}x"
        )


if __name__ == "__main__":
    main()
