"""What the auditor's console makes of records: every field beyond the columns shown as a
detail, and repeats in a row folded into one row with their count."""

from __future__ import annotations

from enclave_hub.audit.console import details, grouped


def _blocked(seq: int, time: float) -> dict:
    return {
        "seq": seq,
        "time": time,
        "actor": "alice",
        "action": "network.blocked",
        "target": "dns example.org",
        "session": "s1",
        "hash": f"h{seq}",
        "prev": f"h{seq - 1}",
        "count": 1,
    }


def test_details_show_every_field_beyond_the_columns():
    record = {
        "seq": 7,
        "time": 1.0,
        "actor": "carol",
        "action": "project.member.add",
        "target": "project trial",
        "member": "erin",
        "role": "output-checker",
        "detail": {"files": ["a.csv", "b.csv"], "revision": 2, "comment": None},
        "hash": "x",
        "prev": "y",
    }
    assert details(record) == [
        ("member", "erin"),
        ("role", "output-checker"),
        ("files", "a.csv, b.csv"),
        ("revision", "2"),
    ]


def test_repeats_in_a_row_are_one_row_with_their_count():
    newest_first = [
        {**_blocked(9, 90.0), "target": "dns other.org"},
        _blocked(8, 80.0),
        _blocked(7, 70.0),
        _blocked(6, 60.0),
        {**_blocked(5, 50.0), "action": "cell.execute", "code": "1 + 1"},
        _blocked(4, 40.0),
    ]
    rows = grouped(newest_first)
    assert [(r["seq"], r["repeats"]) for r in rows] == [(9, 1), (8, 3), (5, 1), (4, 1)]
    assert rows[1]["time"] == 80.0 and rows[1]["first_time"] == 60.0
    assert ("repeats", "3") not in details(rows[1])
