"""Genotypes in a real session: a GWAS of a phenotype taken from the project's OMOP records,
joined to the genotypes by pseudonym, runs with sgkit on the project's Dask cluster and agrees
with statsmodels on the same data; vcztools reads the store as bcftools would read a VCF."""

from __future__ import annotations

import pytest

from enclave.genotypes.ingest import ingest_genotypes
from enclave.omop.ingest import ingest_omop
from enclave_harness import run_in_project_session
from enclave_hub.local.demo_genotypes import ASSOCIATED, write_demo_genotypes
from enclave_hub.local.demo_records import PERSONS, write_demo_records

pytestmark = pytest.mark.e2e

USER, PROJECT = "nadia", "gwas-study"
KEY = b"gwas-key-0123456789abcdefghijklm"
IN_SESSION = """
import json, os, subprocess
import numpy as np, sgkit, statsmodels.api as sm
from distributed import get_task_stream
import enclave

client = enclave.dask_client(workers=1)
client.wait_for_workers(1, timeout=120)
cdm = enclave.open_omop("ds-gwas-emr/cdm")
hba1c = dict(cdm.sql(
    "SELECT p.person_source_value, avg(m.value_as_number) FROM measurement m "
    "JOIN person p USING (person_id) WHERE m.measurement_concept_id = 3004410 GROUP BY ALL"
).fetchall())
g = enclave.open_genotypes("ds-gwas-genomes/calls")
g["sample_hba1c"] = ("samples", np.array([hba1c[s] for s in g["sample_id"].values]))
called = ~g["call_genotype_mask"].any("ploidy")
dosage = g["call_genotype"].clip(0).sum("ploidy").where(called)
g["call_dosage"] = dosage.fillna(dosage.mean("samples"))
with get_task_stream(client) as stream:
    gwas = sgkit.gwas_linear_regression(
        g, dosage="call_dosage", covariates=[], traits=["sample_hba1c"]
    ).compute()
beta = gwas["variant_linreg_beta"].values[:, 0]
p = gwas["variant_linreg_p_value"].values[:, 0]
x, y = gwas["call_dosage"].values, gwas["sample_hba1c"].values
fits = [sm.OLS(y, sm.add_constant(row)).fit() for row in x]
reference_beta = np.array([fit.params[1] for fit in fits])
reference_p = np.array([fit.pvalues[1] for fit in fits])
ours = enclave.genotype_stats(g)  # numba functions, compiled in this kernel, as are sgkit's
theirs = sgkit.sample_stats(sgkit.variant_stats(g))
stats_equal = all(
    np.array_equal(ours[name].values, theirs[name].values, equal_nan=True)
    for name in ("variant_allele_frequency", "variant_call_rate", "sample_n_het")
)
cache = os.path.expanduser("~/.cache/numba")
view = subprocess.run(
    ["vcztools", "view", "-H", "-r", "10:112998590", "/data/ds-gwas-genomes/calls.vcz"],
    capture_output=True, text=True, check=True,
).stdout
print(json.dumps({
    "samples": int(g.sizes["samples"]),
    "joined": int(np.isfinite(g["sample_hba1c"].values).sum()),
    "tasks_on_cluster": len(stream.data),
    "workers": sorted({task["worker"] for task in stream.data}),
    "cluster_workers": sorted(client.scheduler_info()["workers"]),
    "beta_difference": float(np.abs(beta - reference_beta).max()),
    "p_difference": float(np.abs(p - reference_p).max()),
    "log_p_difference": float(np.abs(np.log10(p) - np.log10(reference_p)).max()),
    "top": str(gwas["variant_id"].values[p.argmin()]),
    "top_p": float(p.min()),
    "vcztools": view.split("\\t")[:5],
    "numba_cache": sum(len(files) for _, _, files in os.walk(cache)),
    "stats_equal": stats_equal,
}))
"""


def test_a_gwas_of_an_omop_phenotype_runs_on_the_project_cluster_as_statsmodels(enclave, tmp_path):
    root = enclave.site.data_root
    records = write_demo_records(tmp_path / "emr")
    (outcome,) = ingest_omop(records, "ds-gwas-emr", root, KEY, "cdm", False)
    assert outcome.error is None, outcome.error
    source = write_demo_genotypes(records, tmp_path / "genotypes")
    (outcome,) = ingest_genotypes([source], "ds-gwas-genomes", root, KEY, "calls", False)
    assert outcome.error is None, outcome.error

    found = run_in_project_session(
        enclave, USER, PROJECT, ["ds-gwas-emr", "ds-gwas-genomes"], IN_SESSION, profile="genomics"
    )

    assert found["samples"] == found["joined"] == PERSONS, "every sample is a person of the EMR"
    assert found["tasks_on_cluster"] > 0
    assert found["workers"] and set(found["workers"]) <= set(found["cluster_workers"])
    assert found["beta_difference"] < 1e-6
    assert found["p_difference"] < 1e-6 and found["log_p_difference"] < 1e-6
    assert found["top"] == ASSOCIATED[2] and found["top_p"] < 1e-6
    # sgkit's compiled functions are kept in the session's home for its next kernels.
    assert found["numba_cache"] > 0
    assert found["stats_equal"], "enclave.genotype_stats on the cluster equals sgkit's"
    assert found["vcztools"] == ["10", str(ASSOCIATED[1]), *ASSOCIATED[2:]]
