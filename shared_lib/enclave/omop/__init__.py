"""Electronic medical records as the OMOP Common Data Model 5.4: ingested and de-identified
(`ingest`), read through DuckDB or Dask (`reading`), and cohorts built on them (`cohorts`).

    cdm = enclave.open_omop("ds-emr/cdm")
    enclave.omop.Cohort(cdm, "condition_occurrence", enclave.omop.concept_set(cdm, [201826]))
"""

from .cohorts import Cohort, concept_set
from .reading import dask_tables, open_omop

__all__ = ["Cohort", "concept_set", "dask_tables", "open_omop"]
