"""The demo commons' medical records: a small synthetic OMOP CDM 5.4 that Enclave generates
(fixed seed, so every site gets the same one): 500 persons with an observation period, visits,
conditions, drugs and HbA1c measurements, over a few standard concepts and their hierarchy.

Diabetes comes with metformin soon after its diagnosis for most, and with higher HbA1c values,
so the README's tour has a cohort to count.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

PERSONS = 500
SEED = 0.42
# (concept_id, name, domain, vocabulary, class, code)
CONCEPTS = [
    (201826, "Type 2 diabetes mellitus", "Condition", "SNOMED", "Clinical Finding", "44054006"),
    (
        443732,
        "Disorder due to type 2 diabetes mellitus",
        "Condition",
        "SNOMED",
        "Clinical Finding",
        "313436004",
    ),
    (320128, "Essential hypertension", "Condition", "SNOMED", "Clinical Finding", "59621000"),
    (1503297, "metformin", "Drug", "RxNorm", "Ingredient", "6809"),
    (1308216, "lisinopril", "Drug", "RxNorm", "Ingredient", "29046"),
    (
        3004410,
        "Hemoglobin A1c/Hemoglobin.total in Blood",
        "Measurement",
        "LOINC",
        "Lab Test",
        "4548-4",
    ),
    (9201, "Inpatient Visit", "Visit", "Visit", "Visit", "IP"),
    (9202, "Outpatient Visit", "Visit", "Visit", "Visit", "OP"),
    (8507, "MALE", "Gender", "Gender", "Gender", "M"),
    (8532, "FEMALE", "Gender", "Gender", "Gender", "F"),
    (32817, "EHR", "Type Concept", "Type Concept", "Type Concept", "OMOP4976890"),
]
# (ancestor, descendant, levels): each concept is its own ancestor at level 0.
ANCESTRY = [(c[0], c[0], 0) for c in CONCEPTS] + [(201826, 443732, 1)]
# Random draws are columns, filtered outside their query: DuckDB may move a filter on
# random() itself across a join.
TABLES = {
    "person": """
        SELECT id AS person_id, CASE WHEN random() < 0.5 THEN 8507 ELSE 8532 END
            AS gender_concept_id, year(born) AS year_of_birth, month(born) AS month_of_birth,
            day(born) AS day_of_birth, CAST(born AS TIMESTAMP) AS birth_datetime,
            0 AS race_concept_id, 0 AS ethnicity_concept_id,
            'MRN' || lpad(CAST(id AS VARCHAR), 6, '0') AS person_source_value
        FROM (SELECT range + 1 AS id, DATE '1935-01-01' + CAST(random() * 24000 AS INTEGER)
              AS born FROM range({persons}))""",
    "observation_period": """
        SELECT person_id AS observation_period_id, person_id, DATE '2015-01-01'
            AS observation_period_start_date, DATE '2024-12-31' AS observation_period_end_date,
            32817 AS period_type_concept_id FROM person""",
    "visit_occurrence": """
        SELECT row_number() OVER () AS visit_occurrence_id, person_id,
            CASE WHEN random() < 0.1 THEN 9201 ELSE 9202 END AS visit_concept_id,
            day AS visit_start_date, day AS visit_end_date, 32817 AS visit_type_concept_id
        FROM (SELECT person_id, DATE '2015-01-01' + CAST(random() * 3600 AS INTEGER) AS day
              FROM person, range(6))""",
    "condition_occurrence": """
        SELECT row_number() OVER () AS condition_occurrence_id, person_id,
            concept AS condition_concept_id, day AS condition_start_date,
            32817 AS condition_type_concept_id
        FROM (SELECT person_id, concept, share, random() AS draw,
                DATE '2015-06-01' + CAST(random() * 3000 AS INTEGER) AS day
              FROM person, (VALUES (201826, 0.22), (443732, 0.06), (320128, 0.35))
              c(concept, share))
        WHERE draw < share""",
    "drug_exposure": """
        SELECT row_number() OVER () AS drug_exposure_id, person_id,
            drug AS drug_concept_id, day AS drug_exposure_start_date,
            day + 90 AS drug_exposure_end_date, 32817 AS drug_type_concept_id
        FROM (SELECT c.person_id, CASE WHEN c.condition_concept_id = 320128 THEN 1308216
                ELSE 1503297 END AS drug,
                c.condition_start_date + CAST(random() * 60 AS INTEGER) AS day, random() AS draw
              FROM condition_occurrence c)
        WHERE draw < 0.7""",
    "measurement": """
        SELECT row_number() OVER () AS measurement_id, p.person_id,
            3004410 AS measurement_concept_id,
            DATE '2015-01-01' + CAST(random() * 3600 AS INTEGER) AS measurement_date,
            32817 AS measurement_type_concept_id,
            round(5.0 + random() * 1.5 + CASE WHEN d.person_id IS NULL THEN 0 ELSE 2.5 END, 1)
                AS value_as_number
        FROM person p LEFT JOIN (SELECT DISTINCT person_id FROM condition_occurrence
            WHERE condition_concept_id IN (201826, 443732)) d USING (person_id), range(3)""",
}


def write_demo_records(folder: Path) -> Path:
    """Write the demo CDM's tables (Parquet) into `folder`, made if missing; `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    connection = duckdb.connect()
    connection.execute(f"SELECT setseed({SEED})")
    connection.execute(
        "CREATE TABLE concept AS SELECT * FROM (VALUES "
        + ", ".join(
            f"({i}, '{name}', '{domain}', '{vocabulary}', '{klass}', 'S', '{code}', "
            "DATE '1970-01-01', DATE '2099-12-31')"
            for i, name, domain, vocabulary, klass, code in CONCEPTS
        )
        + ") t(concept_id, concept_name, domain_id, vocabulary_id, concept_class_id, "
        "standard_concept, concept_code, valid_start_date, valid_end_date)"
    )
    connection.execute(
        "CREATE TABLE concept_ancestor AS SELECT * FROM (VALUES "
        + ", ".join(f"({a}, {d}, {n}, {n})" for a, d, n in ANCESTRY)
        + ") t(ancestor_concept_id, descendant_concept_id, min_levels_of_separation, "
        "max_levels_of_separation)"
    )
    for table, query in TABLES.items():
        connection.execute(f"CREATE TABLE {table} AS {query.format(persons=PERSONS)}")
    for table in ("concept", "concept_ancestor", *TABLES):
        connection.execute(f"COPY {table} TO '{folder / table}.parquet' (FORMAT parquet)")
    return folder
