"""The R kernel in a real session: it starts in the sandbox, reads what a Python analysis of
the same session wrote (Parquet, through the library's tables, and CSV) and an OMOP table by
SQL, writes its own output, and sends it to the airlock; its cells are recorded in the audit
log as Python's are.

The project `r-study` (conftest.py) has one researcher, rita, and the two demo checkers."""

from __future__ import annotations

import pytest

from enclave_harness import Kernel, SessionNotebook
from enclave_hub.audit.query import records

pytestmark = pytest.mark.e2e

PROJECT = "r-study"


@pytest.fixture(scope="module")
def rita(enclave):
    notebook = SessionNotebook(enclave, "rita", PROJECT)
    yield notebook
    notebook.stop()


def test_r_reads_a_python_output_is_recorded_and_exports_through_the_airlock(enclave, rita):
    rita.run(
        "import json, pathlib, pandas as pd\n"
        "pd.DataFrame({'site': ['leeds', 'york'], 'n': [12, 40]}).to_parquet('counts.parquet')\n"
        "pd.DataFrame({'site': ['leeds', 'york'], 'region': ['north', 'north']})"
        ".to_csv('regions.csv', index=False)\n"
        "pathlib.Path('cdm').mkdir()\n"
        "pd.DataFrame({'person_id': [1, 2, 3], 'year_of_birth': [1950, 1950, 1971]})"
        ".to_parquet('cdm/person.parquet')\n"
        "print(json.dumps({}))\n"
    )
    r = Kernel(rita.url, rita.token, timeout=180, name="enclave-r")
    try:
        r.wait_ready()
        cell = (
            "suppressPackageStartupMessages(library(dplyr))\n"
            "regions <- data.table::fread('regions.csv')\n"
            "t <- enclave_table('counts.parquet') %>% mutate(share = n / sum(n)) %>% "
            "inner_join(regions, by = 'site')\n"
            "born <- enclave_query('SELECT count(*) AS n FROM person WHERE year_of_birth < 1960', "
            "omop = 'cdm')\n"
            "dir.create('results', showWarnings = FALSE)\n"
            "data.table::fwrite(t, 'results/shares.csv')\n"
            "req <- enclave$request_export(list('results/shares.csv'), "
            "justification = 'shares by site, from R')\n"
            "cat(R.version$language, sum(t$n), nrow(t), born$n, req$status, '\\n')\n"
        )
        printed = r.execute(cell).split()
    finally:
        r.close()
    assert printed == ["R", "52", "2", "2", "in-review"], printed
    recorded = [
        x
        for x in records(enclave.state_dir / "audit")
        if x["action"] == "cell.execute" and x.get("actor") == "rita"
    ]
    assert any("enclave_table('counts.parquet')" in x.get("code", "") for x in recorded)
