"""Datasets and their objects: where they live, what `dataset.json` says about them, and the
`dataset-id/object-id` references researchers use.

Ids are checked before any path is built, and every path is checked for containment after
links are resolved. The library finds datasets under `$ENCLAVE_DATA` (in a session, `/data`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

# Dataset, object, project and key ids, everywhere in Enclave; always matched whole.
IDENTIFIER_PATTERN = r"[a-z0-9][a-z0-9_-]{0,62}"
IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
MANIFEST = "dataset.json"
SESSION_DATA = "/data"


class CatalogError(ValueError):
    """A bad reference or a dataset or object that is not there; the message says which."""


def check_id(value: object, what: str) -> str:
    """A dataset or object id: 1 to 63 lower-case letters, digits, '-' or '_'."""
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise CatalogError(
            f"{what} {str(value)[:80]!r} is not valid: use 1 to 63 lower-case letters, digits, "
            "'-' or '_', starting with a letter or digit"
        )
    return value


def parse_reference(reference: str) -> tuple[str, str]:
    """`"dataset-id/object-id"` → (dataset id, object id), both checked."""
    if not isinstance(reference, str) or reference.count("/") != 1:
        raise CatalogError(
            f"{str(reference)[:80]!r} is not a reference: use 'dataset-id/object-id'"
        )
    dataset_id, object_id = reference.split("/")
    return check_id(dataset_id, "dataset"), check_id(object_id, "object")


def object_id_for(name: str) -> str:
    """An object id from a source file's stem: lower-cased, other characters replaced by '-'."""
    stem = re.sub(r"[^a-z0-9_-]", "-", name.lower()).strip("-_")[:63]
    return check_id(stem or "object", "object id derived from " + repr(name))


def data_root() -> Path:
    return Path(os.environ.get("ENCLAVE_DATA") or SESSION_DATA)


def contained(folder: Path, name: str) -> Path:
    """`folder/name` after resolving links, refused unless it is directly inside `folder`."""
    base = folder.resolve()
    path = (base / name).resolve()
    if path.parent != base:
        raise CatalogError(f"{name!r} resolves outside {base}")
    return path


@dataclass(frozen=True)
class DataObject:
    """One object of a dataset, as its `dataset.json` entry describes it."""

    dataset: str
    id: str
    kind: str
    path: Path
    entry: dict


class Dataset:
    """A dataset folder and its `dataset.json`."""

    def __init__(self, dataset_id: str, root: Path | None = None):
        self.id = check_id(dataset_id, "dataset")
        self.root = root if root is not None else data_root()
        self.folder = contained(self.root, self.id)
        if not self.folder.is_dir():
            raise CatalogError(f"there is no dataset {self.id!r} in {self.root}")

    @property
    def manifest(self) -> dict:
        path = self.folder / MANIFEST
        if not path.is_file():
            return {"id": self.id, "objects": {}}
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise CatalogError(f"{path} cannot be read: {error}") from None

    @property
    def objects(self) -> dict[str, DataObject]:
        """The dataset's objects by id."""
        return {
            object_id: DataObject(
                self.id, object_id, entry["kind"], contained(self.folder, entry["path"]), entry
            )
            for object_id, entry in sorted(self.manifest.get("objects", {}).items())
        }

    def object(self, object_id: str) -> DataObject:
        check_id(object_id, "object")
        found = self.objects.get(object_id)
        if found is None:
            raise CatalogError(f"dataset {self.id!r} has no object {object_id!r}")
        return found

    def __repr__(self) -> str:
        return f"<Dataset {self.id}: {len(self.objects)} objects>"


# What `datasets(details=True)` leaves out of each object's entry: provenance, not content.
PROVENANCE = ("path", "checksum", "source_files", "deidentification", "tools", "registered_at")


def datasets(root: Path | None = None, details: bool = False) -> list:
    """The datasets this session may read (in a session: those its project is granted), by
    id; with `details`, each as a dict: id, kind and its objects, each with what its entry
    says of its content (kind, format, shape or rows, versions...)."""
    base = root if root is not None else data_root()
    if not base.is_dir():
        return []
    found = sorted(p.name for p in base.iterdir() if p.is_dir() and IDENTIFIER.fullmatch(p.name))
    if not details:
        return found
    described = []
    for dataset_id in found:
        manifest = Dataset(dataset_id, base).manifest
        objects = {
            object_id: {k: v for k, v in entry.items() if k not in PROVENANCE}
            for object_id, entry in sorted(manifest.get("objects", {}).items())
        }
        described.append({"id": dataset_id, "kind": manifest.get("kind"), "objects": objects})
    return described


def dataset(dataset_id: str, root: Path | None = None) -> Dataset:
    return Dataset(dataset_id, root)


def resolve(reference: str, root: Path | None = None) -> DataObject:
    """The object a `dataset-id/object-id` reference names."""
    dataset_id, object_id = parse_reference(reference)
    return Dataset(dataset_id, root).object(object_id)


def locate(reference: str | os.PathLike, kind: str, root: Path | None = None) -> tuple[Path, str]:
    """Where the `kind` of object a `dataset-id/object-id` reference names is stored, and its
    name; a path that exists (or any PathLike) is taken as it is."""
    path = Path(reference)
    if isinstance(reference, os.PathLike) or path.exists():
        return path, path.name.split(".")[0]
    found = resolve(str(reference), root)
    if found.kind != kind:
        raise CatalogError(f"{reference} is a {found.kind}, not a {kind}")
    return found.path, found.id
