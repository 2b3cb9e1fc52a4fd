"""The airlock's automatic checks, on real files: disclosure control of tables, notebooks,
archives (traversal, bombs), refused and flagged file types, and the checks' own process."""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import pandas as pd

from enclave.pseudonyms import Pseudonymizer
from enclave_hub.airlock.checks import Rules
from enclave_hub.airlock.checks.files import OUTPUT, SUPPORTING, check_files
from enclave_hub.airlock.checks.runner import run_checks

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DICOM_FILE = next((SHARED / "dicom").rglob("*.dcm"), None) or SHARED / "slides" / "boxes_0.dcm"
RULES = Rules()


def report(tmp_path: Path, name: str, content: bytes | str, role: str = OUTPUT) -> dict:
    """The checks' report of one file of that name and content."""
    return reports(tmp_path, [(name, content, role)])[0]


def reports(
    tmp_path: Path, files: list[tuple[str, bytes | str, str]], rules: Rules = RULES
) -> list[dict]:
    entries = []
    for number, (name, content, role) in enumerate(files):
        path = tmp_path / f"blob-{number}"
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        entries.append((name, path, role))
    return [r.as_dict() for r in check_files(entries, rules)]


def rules_of(found: dict, outcome: str) -> list[str]:
    return [f["rule"] for f in found["findings"] if f["outcome"] == outcome]


def messages(found: dict) -> str:
    return " | ".join(f["message"] for f in found["findings"])


# -- tables ----------------------------------------------------------------------------------


def test_a_table_whose_cells_are_all_ten_or_more_passes(tmp_path):
    found = report(tmp_path, "results/by_site.csv", "site,n\nleeds,12\nyork,40\n")
    assert found["kind"] == "table" and found["outcome"] == "pass", found


def test_a_cell_of_nine_fails_naming_the_cell(tmp_path):
    found = report(tmp_path, "by_site.csv", "site,n\nleeds,12\nyork,9\n")
    assert found["outcome"] == "fail"
    assert rules_of(found, "fail") == ["minimum-cell-count"]
    assert "site=york n=9" in messages(found) and "minimum of 10" in messages(found)


def test_a_zero_cell_is_flagged_not_failed(tmp_path):
    found = report(tmp_path, "by_site.csv", "site,n\nleeds,12\nyork,0\n")
    assert found["outcome"] == "flag" and rules_of(found, "flag") == ["zero-cell"]


def test_a_cross_tabulation_of_whole_numbers_is_checked_cell_by_cell(tmp_path):
    table = "sex,smoker,non_smoker\nF,25,31\nM,14,3\n"
    found = report(tmp_path, "crosstab.tsv", table.replace(",", "\t"))
    assert found["outcome"] == "fail"
    assert "non_smoker=3" in messages(found)


def test_suppressed_cells_written_as_text_are_accepted(tmp_path):
    found = report(tmp_path, "by_site.csv", "site,n\nleeds,12\nyork,<10\n")
    assert found["outcome"] == "pass", messages(found)


def test_parquet_and_every_sheet_of_a_workbook_are_checked(tmp_path):
    frame = pd.DataFrame({"group": ["a", "b"], "count": [15, 4]})
    parquet = io.BytesIO()
    frame.to_parquet(parquet)
    assert report(tmp_path, "t.parquet", parquet.getvalue())["outcome"] == "fail"
    workbook = io.BytesIO()
    with pd.ExcelWriter(workbook, engine="openpyxl") as writer:
        frame.assign(count=[15, 20]).to_excel(writer, sheet_name="fine", index=False)
        frame.to_excel(writer, sheet_name="small", index=False)
    found = report(tmp_path, "t.xlsx", workbook.getvalue())
    assert found["outcome"] == "fail"
    assert "sheet 'small': 1 cell(s) below" in messages(found)
    assert "sheet 'fine': 2 cell(s) of counts pass" in messages(found)


def test_identifier_columns_fail_and_long_tables_are_flagged(tmp_path):
    found = report(tmp_path, "rows.csv", "patient_id,n\nP1,12\n")
    assert "identifiers" in rules_of(found, "fail")
    long = "group,n\n" + "".join(f"g{i},{20 + i}\n" for i in range(1500))
    assert rules_of(report(tmp_path, "long.csv", long), "flag") == ["row-level"]


def test_dominance_fails_with_the_contributors_of_a_magnitude_table(tmp_path):
    table = "region,n,mean_cost\nnorth,20,1500.0\nsouth,30,900.0\n"
    contributors = "region,total,top1,top2\nnorth,30000,26000,1000\nsouth,27000,3000,2000\n"
    found, supporting = reports(
        tmp_path,
        [
            ("out/costs.csv", table, OUTPUT),
            ("out/costs.contributors.csv", contributors, SUPPORTING),
        ],
    )
    assert found["outcome"] == "fail" and rules_of(found, "fail") == ["dominance"]
    assert "total=30000" in messages(found)
    assert supporting["outcome"] == "pass" and "never released" in messages(supporting)


def test_the_p_ratio_rule_fails_when_the_rest_is_too_small(tmp_path):
    # With the default 90% share, any p-ratio case is dominated too; under a 95% share the top
    # two (94.5%) pass dominance, but the rest (55) is below 10% of the largest (600).
    contributors = "total,top1,top2\n1000,600,345\n"
    found, _ = reports(
        tmp_path,
        [
            ("spend.csv", "n,total_spend\n12,1000\n", OUTPUT),
            ("spend.contributors.csv", contributors, SUPPORTING),
        ],
        Rules(dominance_share=0.95),
    )
    assert rules_of(found, "fail") == ["p-ratio"]


def test_a_magnitude_table_without_contributors_is_flagged(tmp_path):
    found = report(tmp_path, "costs.csv", "region,n,mean_cost\nnorth,20,1500.5\n")
    assert found["outcome"] == "flag" and rules_of(found, "flag") == ["magnitudes"]


def test_a_file_that_is_not_a_table_fails_clearly(tmp_path):
    found = report(tmp_path, "t.parquet", b"not parquet at all")
    assert found["outcome"] == "fail" and "cannot be read as a table" in messages(found)


# -- notebooks -------------------------------------------------------------------------------


def notebook(outputs: list) -> str:
    cell = {"cell_type": "code", "source": "df.head()", "metadata": {}, "outputs": outputs}
    return json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def test_a_notebook_with_outputs_fails_and_a_cleared_one_passes(tmp_path):
    shown = [{"output_type": "stream", "name": "stdout", "text": "P1 1971-02-03"}]
    found = report(tmp_path, "analysis.ipynb", notebook(shown))
    assert found["outcome"] == "fail" and rules_of(found, "fail") == ["notebook-outputs"]
    assert report(tmp_path, "analysis.ipynb", notebook([]))["outcome"] == "pass"


# -- archives --------------------------------------------------------------------------------


def zip_of(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def test_a_zip_of_tables_is_expanded_and_each_member_checked(tmp_path):
    archive = zip_of({"a.csv": b"g,n\nx,12\n", "b.csv": b"g,n\nx,3\n", "run.py": b"print(1)\n"})
    found = report(tmp_path, "results.zip", archive)
    assert found["kind"] == "archive" and found["outcome"] == "fail"
    failed = [f["message"] for f in found["findings"] if f["outcome"] == "fail"]
    assert failed == ["b.csv: 1 cell(s) below the minimum of 10: g=x n=3"]
    assert "3 member(s) expanded safely" in messages(found)


def test_a_zip_with_a_parent_folder_entry_is_refused(tmp_path):
    found = report(tmp_path, "results.zip", zip_of({"../../etc/cron.d/x": b"* * * * * root"}))
    assert found["outcome"] == "fail" and "outside the archive" in messages(found)


def test_a_zip_bomb_is_refused_before_it_is_expanded(tmp_path):
    bomb = zip_of({"zeros.csv": b"0" * (64 * 1024 * 1024)})
    assert len(bomb) < 1024 * 1024
    found = report(tmp_path, "results.zip", bomb)
    assert found["outcome"] == "fail" and "archive bomb" in messages(found)


def test_a_zip_whose_sizes_lie_is_refused_while_expanding(tmp_path):
    honest = zip_of({"data.txt": b"x" * 200_000}, zipfile.ZIP_STORED)
    # Claim a small size in both headers: the member still expands to 200 kB.
    lying = honest.replace((200_000).to_bytes(4, "little"), (2_000).to_bytes(4, "little"))
    assert lying != honest
    found = report(tmp_path, "results.zip", lying)
    assert found["outcome"] == "fail" and "refused" in messages(found)


def test_tar_links_nested_archives_and_too_many_members_are_refused(tmp_path):
    def tar_of(*infos: tuple[tarfile.TarInfo, bytes]) -> bytes:
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:gz") as archive:
            for info, content in infos:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
        return out.getvalue()

    link = tarfile.TarInfo("shadow")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
    assert "is a link" in messages(report(tmp_path, "r.tar.gz", tar_of((link, b""))))
    nested = tarfile.TarInfo("inner.zip")
    found = report(tmp_path, "r.tgz", tar_of((nested, zip_of({"a.txt": b"a"}))))
    assert "archive inside the archive" in messages(found)
    many = [(tarfile.TarInfo(f"f{i}.py"), b"x = 1\n") for i in range(RULES.max_archive_members + 1)]
    assert "more than" in messages(report(tmp_path, "r.tar.gz", tar_of(*many)))


# -- file types ------------------------------------------------------------------------------


def test_dicom_is_refused_whatever_its_name(tmp_path):
    content = DICOM_FILE.read_bytes()
    for name in ("scan.dcm", "innocent.csv"):
        found = report(tmp_path, name, content)
        assert found["kind"] == "dicom" and found["outcome"] == "fail", found
        assert "DICOM files are refused" in messages(found)


def test_slides_are_refused_and_a_single_image_is_flagged(tmp_path):
    svs = report(tmp_path, "slide.svs", (SHARED / "slides" / "small.svs").read_bytes())
    assert svs["outcome"] == "fail" and "whole-slide" in messages(svs)
    pyramid = report(tmp_path, "figure.tiff", (SHARED / "slides" / "boxes.tiff").read_bytes())
    assert pyramid["outcome"] == "fail" and "whole-slide" in messages(pyramid)
    png = b"\x89PNG\r\n\x1a\n" + bytes(100)
    assert report(tmp_path, "figure.png", png)["outcome"] == "flag"


def test_data_files_and_unknown_binaries_are_refused_and_code_passes(tmp_path):
    assert report(tmp_path, "cells.h5ad", b"\x89HDF\r\n\x1a\n")["outcome"] == "fail"
    assert report(tmp_path, "blob.bin", os.urandom(4096))["outcome"] == "fail"
    assert report(tmp_path, "model.py", "import numpy\n")["outcome"] == "pass"
    assert report(tmp_path, "notes.txt", "the model converged\n")["outcome"] == "flag"


def test_a_file_over_the_size_limit_fails(tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"a,n\n" + b"x,12\n" * 100)
    small_rules = Rules(max_file_size=100)
    found = check_files([("big.csv", big, OUTPUT)], small_rules)[0]
    assert found.outcome == "fail" and "more than the limit of 100" in found.findings[0].message


# -- the checks' own process -----------------------------------------------------------------


def test_the_checks_run_in_their_own_process_as_nobody(tmp_path):
    table = tmp_path / "snapshot"
    table.write_bytes(b"site,n\nleeds,12\nyork,9\n")
    table.chmod(0o600)
    found = run_checks([("t.csv", table, OUTPUT)], RULES, timeout=60, memory=4 * 1024**3)
    assert found[0]["outcome"] == "fail" and "york" in found[0]["findings"][0]["message"]


def test_checks_that_run_out_of_memory_fail_every_file_clearly(tmp_path):
    table = tmp_path / "snapshot"
    table.write_bytes(b"site,n\n" + b"leeds,12\n" * 10)
    found = run_checks([("t.csv", table, OUTPUT)], RULES, timeout=60, memory=64 * 1024**2)
    assert found[0]["outcome"] == "fail"
    assert "the checks stopped with an error" in found[0]["findings"][0]["message"]


def test_checks_past_their_time_fail_every_file(tmp_path):
    # 20 million rows take seconds to parse; the checks get one.
    table = tmp_path / "snapshot"
    with table.open("wb") as out:
        out.write(b"g,n\n")
        for _ in range(200):
            out.write(b"x,12\n" * 100_000)
    rules = Rules(max_file_size=1024**3)
    found = run_checks([("t.csv", table, OUTPUT)], rules, timeout=1, memory=8 * 1024**3)
    assert found[0]["outcome"] == "fail"
    assert "did not finish within" in found[0]["findings"][0]["message"]


# -- person ids ------------------------------------------------------------------------------


def test_person_pseudonyms_cannot_leave_in_any_kind_of_file(tmp_path):
    """The commons' pseudonyms join a person across projects, so no output may carry them:
    not a table (CSV, or Parquet, whose compressed bytes hide them), not code, not a file in an
    archive; found past the first block of a large file too, its line named."""
    people = [Pseudonymizer(b"airlock-check-key" * 2).patient(f"P{i}") for i in range(3)]
    table = pd.DataFrame({"person": people, "n": [12, 15, 11]})
    parquet = io.BytesIO()
    table.to_parquet(parquet, compression="zstd")
    filler = "x" * 99 + "\n"
    long_text = filler * 20_000 + f"seen: {people[0]}\n"
    cases = {
        "counts.csv": table.to_csv(index=False),
        "counts.parquet": parquet.getvalue(),
        "cohort.py": f"keep = {people!r}\n",
        "notes.txt": long_text,
        "results.zip": zip_of({"ids.csv": table.to_csv(index=False).encode()}),
    }
    found = {name: report(tmp_path, name, content) for name, content in cases.items()}
    for name, result in found.items():
        assert result["outcome"] == "fail", name
        assert "person-ids" in rules_of(result, "fail"), (name, result["findings"])
    assert "holds 3 person pseudonym(s) of the commons, the first on line 2" in messages(
        found["counts.csv"]
    )
    assert "column(s) person: person ids stay in the enclave" in messages(found["counts.parquet"])
    assert "the first on line 20001" in messages(found["notes.txt"])
    lookalike = "ENC0123 is not one; nor is enc0123456789abcdef nor ENC0123456789ABCDE\n"
    assert "person-ids" not in rules_of(report(tmp_path, "notes.txt", lookalike), "fail")
