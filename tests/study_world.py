"""A project under review, as the airlock's tests build it: carol's study, with two researchers,
two output checkers and the dataset ds1 (version 3) granted."""

from __future__ import annotations

import json
from pathlib import Path

from enclave_hub.core.registry import Registry

MEMBERS = [
    ("alice", "researcher"),
    ("bob", "researcher"),
    ("erin", "output-checker"),
    ("rose", "output-checker"),
]


def dataset_root(folder: Path) -> Path:
    """A data root holding ds1."""
    data = folder / "data"
    (data / "ds1").mkdir(parents=True)
    (data / "ds1" / "dataset.json").write_text(json.dumps({"title": "Cohort", "version": 3}))
    return data


def seed_study(registry: Registry) -> None:
    registry.create_project("carol", "study", "A study")
    for user, role in MEMBERS:
        registry.add_member("carol", "study", user, role)
    registry.grant("carol", "study", "ds1")
