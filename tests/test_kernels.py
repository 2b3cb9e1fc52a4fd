"""The sessions' kernel specs: installed with the environment's own Python, the GPU one only
where a GPU is, the R one where R is; each starts a kernel that runs Enclave's library, and R
reads Parquet written by Python with its columns' types."""

from __future__ import annotations

import json
import shutil
import sys
from datetime import date

import pandas as pd
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from enclave_hub.kernels import (
    GPU_KERNEL,
    R_KERNEL,
    has_gpu,
    has_r,
    install_kernels,
    kernel_specs,
)


def test_enclave_ships_a_python_kernel_a_gpu_one_and_an_r_one():
    assert set(kernel_specs()) == {"enclave-python", GPU_KERNEL, R_KERNEL}


@pytest.mark.parametrize("gpu", [False, True])
def test_kernels_are_installed_with_the_environments_python(tmp_path, gpu):
    written = install_kernels(tmp_path, sys.executable, gpu=gpu, r=True)
    names = {folder.name for folder in written}
    assert names == {"enclave-python", R_KERNEL} | ({GPU_KERNEL} if gpu else set())
    for folder in written:
        assert folder.parent == tmp_path / "share" / "jupyter" / "kernels"
        spec = json.loads((folder / "kernel.json").read_text())
        assert spec["metadata"]["enclave"]["gpu"] is (folder.name == GPU_KERNEL)
        if folder.name == R_KERNEL:
            assert spec["env"]["ENCLAVE_PYTHON"] == sys.executable
            assert (folder / "enclave.R").is_file()
        else:
            assert spec["argv"][0] == sys.executable
    assert R_KERNEL not in {f.name for f in install_kernels(tmp_path / "no-r", "py", gpu, r=False)}


def test_r_is_found_where_debian_installs_it(tmp_path):
    assert has_r(libraries=(tmp_path,)) is False
    (tmp_path / "IRkernel").mkdir()
    assert has_r(libraries=(tmp_path,)) is (shutil.which("R") is not None)


def run_cell(tmp_path, name: str, code: str) -> str:
    """Start the installed kernel `name`, run `code`, return what it printed."""
    install_kernels(tmp_path, sys.executable, gpu=True, r=True)
    specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "share" / "jupyter" / "kernels")])
    assert name in specs.find_kernel_specs()
    manager = KernelManager(kernel_name=name, kernel_spec_manager=specs)
    manager.start_kernel()
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=120)
        outputs = []
        reply = client.execute_interactive(
            code,
            timeout=120,
            output_hook=lambda message: outputs.append(message["content"].get("text", "")),
        )
        assert reply["content"]["status"] == "ok", reply["content"]
        return "".join(outputs)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


@pytest.mark.parametrize("name", ["enclave-python", GPU_KERNEL])
def test_each_installed_python_kernel_starts_and_runs_enclaves_library(tmp_path, name):
    printed = run_cell(
        tmp_path,
        name,
        "import os, enclave; print(enclave.__name__, os.environ.get('MPLBACKEND'), "
        "os.environ.get('SGKIT_DISABLE_NUMBA_CACHE'))",
    )
    assert printed.split() == ["enclave", "module://matplotlib_inline.backend_inline", "0"]


def test_the_r_kernel_reads_a_python_analysis_parquet_with_its_types(tmp_path):
    assert has_r(), "R and IRkernel are installed by bootstrap.sh (images/session-packages.txt)"
    table = pd.DataFrame(
        {
            "person": pd.array([1, None, 3], dtype="Int64"),
            "site": ["leeds", "", "NA"],
            "seen": pd.to_datetime(["2020-01-01 10:00:00", "2021-06-01 00:00:00", None]),
            "born": [date(1950, 1, 2), date(1960, 3, 4), None],
            "score": [1.5, None, 2.0],
            "case": [True, False, None],
        }
    )
    table.to_parquet(tmp_path / "scores.parquet")
    (tmp_path / "omop").mkdir()  # a CDM store: a Parquet file per table
    persons = {"person_id": [1, 2, 3], "year_of_birth": [1950, 1950, 1971]}
    pd.DataFrame(persons).to_parquet(tmp_path / "omop" / "person.parquet")
    printed = run_cell(
        tmp_path,
        R_KERNEL,
        "suppressPackageStartupMessages({library(dplyr); library(data.table)})\n"
        f"t <- enclave_table('{tmp_path / 'scores.parquet'}')\n"
        "cat(paste(names(t), sapply(t, function(c) class(c)[1]), sep = ':'), '\\n')\n"
        "cat(sum(is.na(t$person)), sum(is.na(t$site)), t$site[2] == '', "
        "format(t$seen[1], '%H:%M', tz = 'UTC'), format(max(t$born, na.rm = TRUE)), '\\n')\n"
        "cat(t %>% filter(case) %>% nrow(), enclave$`__name__`, '\\n')\n"
        "born <- enclave_query('SELECT year_of_birth, count(*) AS n FROM person GROUP BY 1 "
        f"ORDER BY 1', omop = '{tmp_path / 'omop'}')\n"
        "cat(born$year_of_birth, born$n, class(born$n), '\\n')\n",
    )
    classes, values, used, counted = printed.strip().splitlines()
    assert classes.split() == [
        "person:numeric",
        "site:character",
        "seen:POSIXct",
        "born:Date",
        "score:numeric",
        "case:logical",
    ]
    # NA only where Python had None: the empty text stays empty, the text "NA" stays text.
    assert values.split() == ["1", "0", "TRUE", "10:00", "1960-03-04"]
    assert used.split() == ["1", "enclave"]
    assert counted.split() == ["1950", "1971", "2", "1", "numeric"]


def test_the_gpu_kernel_goes_where_the_sandbox_would_give_a_gpu(tmp_path):
    assert has_gpu(tmp_path) is False
    (tmp_path / "nvidia0").touch()
    assert has_gpu(tmp_path) is False  # no driver control device: the sandbox refuses it too
    (tmp_path / "nvidiactl").touch()
    assert has_gpu(tmp_path) is True
