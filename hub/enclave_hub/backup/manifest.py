"""A backup's manifest: what the folder holds, each file's size and SHA-256, checked before
anything of it is restored; and the private files and folders both sides write."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path, PurePosixPath

from . import MANIFEST_FILE, BackupError

FORMAT = "enclave-backup/1"
CHUNK = 1024 * 1024


def private_folder(path: Path) -> Path:
    """`path`, made with any folder above it that is missing, each of the owner's only."""
    if not path.is_dir():
        private_folder(path.parent)
        path.mkdir(mode=0o700, exist_ok=True)
    return path


def write_private(path: Path, data: bytes) -> None:
    """A new file of the owner's only, written whole and synced."""
    private_folder(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def copy_private(source: Path, target: Path) -> None:
    """Copy a file to a new private file, synced."""
    private_folder(target.parent)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with source.open("rb") as given, os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(given, out, CHUNK)
        out.flush()
        os.fsync(out.fileno())


def copy_tree(source: Path, target: Path) -> None:
    """Copy a folder's regular files (links are not followed) into private files and folders."""
    for path in sorted(source.rglob("*")):
        if path.is_file() and not path.is_symlink():
            copy_private(path, target / path.relative_to(source))


def sync_tree(folder: Path) -> None:
    """fsync every folder under `folder`, so that the files' names are durable too."""
    for path in [folder, *sorted(p for p in folder.rglob("*") if p.is_dir())]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def describe(path: Path) -> dict:
    """A file's size and SHA-256."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as given:
        while chunk := given.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": digest.hexdigest()}


def describe_folder(folder: Path) -> dict[str, dict]:
    """Every file under `folder` (the manifest aside), by its path relative to it."""
    return {
        path.relative_to(folder).as_posix(): describe(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path != folder / MANIFEST_FILE
    }


def _own_digest(manifest: dict) -> str:
    """The SHA-256 of the manifest without it, so that damage to the manifest shows too."""
    rest = {key: value for key, value in manifest.items() if key != "sha256"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()


def write_manifest(folder: Path, manifest: dict) -> None:
    manifest = {"format": FORMAT, **manifest}
    manifest["sha256"] = _own_digest(manifest)
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    write_private(folder / MANIFEST_FILE, text.encode())


def read_manifest(folder: Path) -> dict:
    """The manifest of the backup in `folder`; BackupError if there is none or it is not one."""
    path = folder / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise BackupError(f"{path} is missing: {folder} is not a backup") from None
    except (OSError, ValueError) as error:
        raise BackupError(f"{path} cannot be read as a backup's manifest: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path}: not a manifest of this kind of backup (format {FORMAT})")
    if manifest.get("sha256") != _own_digest(manifest):
        raise BackupError(f"{path} is damaged: its SHA-256 is not the one it records")
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(entry, dict) and {"size", "sha256"} <= set(entry) for entry in files.values()
    ):
        raise BackupError(f"{path}: 'files' must give each file's size and sha256")
    for name in files:
        parts = PurePosixPath(name).parts
        if not parts or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise BackupError(f"{path}: {name!r} is not a path inside the backup")
    return manifest


def check_files(folder: Path, manifest: dict) -> None:
    """Every file the manifest lists is there with its size and SHA-256; else BackupError
    naming the first that is not."""
    for name, expected in sorted(manifest["files"].items()):
        path = folder / name
        if not path.is_file() or path.is_symlink():
            raise BackupError(f"{path} is missing from the backup")
        found = describe(path)
        if found["size"] != expected["size"]:
            raise BackupError(
                f"{path} is damaged: {found['size']} bytes where the manifest says "
                f"{expected['size']}"
            )
        if found["sha256"] != expected["sha256"]:
            raise BackupError(f"{path} is damaged: its SHA-256 is not the manifest's")
