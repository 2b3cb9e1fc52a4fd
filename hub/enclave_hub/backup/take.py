"""Taking a backup of a deployment, running or stopped.

What is read in what order keeps the copy whole while the deployment runs: the database
first (one snapshot), then the airlock's files it refers to, the audit log last. Every change
is recorded in the audit log before it is committed, so every change in the backup's database
has its record in the backup's log. The backup is written into a hidden folder beside the one
named and takes that name only once its log has verified and its manifest is written.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ..airlock.store import AirlockStore
from ..core.project_groups import FILE_NAME as PROJECT_GROUPS_FILE
from ..core.site_config import SiteConfig
from ..core.site_secrets import secrets_dir
from ..datasets_cli import DEID_KEYS_FOLDER
from ..local.hub_files import hub_paths
from . import (
    AIRLOCK_FOLDER,
    AUDIT_FOLDER,
    ENCRYPT,
    GROUPS_FILE,
    HUB_FILE,
    KEYS_FILE,
    OMIT,
    REGISTRY_FILE,
    SITE_FILE,
    BackupError,
)
from .audit_copy import check_signing_key, copy_log
from .database import copy_sqlite, dump_registry, shown
from .manifest import (
    copy_private,
    copy_tree,
    describe_folder,
    sync_tree,
    write_manifest,
    write_private,
)
from .sealed import seal


def key_folders(site: SiteConfig) -> list[Path]:
    """The state folder's folders of keys: the secrets, the audit signing key, the
    de-identification keys."""
    state = site.state_dir
    return [secrets_dir(state), site.audit_key_path.parent, state / DEID_KEYS_FOLDER]


def key_files(site: SiteConfig) -> dict[str, Path]:
    """Every key file, by its path in the state folder (drafts being written left out)."""
    found = {}
    for folder in key_folders(site):
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink() and not path.name.startswith("."):
                found[path.relative_to(site.state_dir).as_posix()] = path
    return found


def new_folder(path: Path, what: str) -> None:
    """`path` may be made: it is missing, or an empty folder."""
    if path.is_symlink() or (path.exists() and (not path.is_dir() or any(path.iterdir()))):
        raise BackupError(f"{what} {path} is not empty: name a new or empty folder")


def take_backup(
    site: SiteConfig,
    folder: Path,
    keys: str,
    passphrase: bytes | None = None,
    say: Callable[[str], None] = print,
) -> dict:
    """Back the deployment of `site` up into `folder`; its manifest. `keys` is ENCRYPT (with
    `passphrase`) or OMIT."""
    pinned = site.audit.key_fingerprint
    if pinned is None:
        raise BackupError(
            "the site configuration pins no audit key (audit.key_fingerprint), which the "
            "backup's log is verified against: start Enclave once to pin it"
        )
    if keys == ENCRYPT and passphrase is None:
        raise BackupError("--keys encrypt needs --passphrase-file")
    folder = folder.absolute()
    new_folder(folder, "the backup folder")
    stage = folder.parent / f".{folder.name}.partial"
    try:
        stage.parent.mkdir(parents=True, exist_ok=True)
        stage.mkdir(mode=0o700)
    except FileExistsError:
        raise BackupError(
            f"{stage} exists: a backup is being written there, or one was cut short (remove it)"
        ) from None
    except OSError as error:
        raise BackupError(f"{stage}: {error.strerror}") from None
    try:
        manifest = _fill(site, stage, pinned, keys, passphrase, say)
        write_manifest(stage, manifest)
        sync_tree(stage)
        os.replace(stage, folder)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    say(f"Backup written to {folder}: {len(manifest['files'])} files.")
    return manifest


def _fill(
    site: SiteConfig, stage: Path, pinned: str, keys: str, passphrase: bytes | None, say
) -> dict:
    url = site.registry_url
    counts, released = dump_registry(url, stage / REGISTRY_FILE, stage)
    say(f"Database {shown(url)}: {sum(counts.values())} rows of {len(counts)} tables.")
    hub_database = hub_paths(site)["database"]
    if hub_database.is_file():
        copy_sqlite(hub_database, stage / HUB_FILE)
        say(f"Hub database {hub_database}: copied.")
    groups = site.state_dir / PROJECT_GROUPS_FILE
    if groups.is_file():
        copy_private(groups, stage / GROUPS_FILE)
    airlock = _copy_airlock(site.airlock_dir, stage / AIRLOCK_FOLDER, released, say)
    audit = copy_log(site.audit_dir, stage / AUDIT_FOLDER, pinned, site.audit.witness_dir)
    say(f"Audit log {site.audit_dir}: {audit['records']} records, verified against {pinned}.")
    kept = _keep_keys(site, stage, pinned, keys, passphrase, say)
    data = site.model_dump(mode="json", exclude_none=True)
    if site.registry.database_url is not None:
        data["registry"]["database_url"] = shown(site.registry.database_url)
    write_private(stage / SITE_FILE, (json.dumps(data, indent=2) + "\n").encode())
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": {"state_dir": str(site.state_dir), "database": shown(url)},
        "registry": {"tables": counts},
        "airlock": airlock,
        "audit": audit,
        "keys": kept,
        "files": describe_folder(stage),
    }


def _copy_airlock(source: Path, target: Path, released: list[dict], say) -> dict:
    """The snapshots (written once, never changed) and the outboxes of the requests the
    database says are released (each appears whole); unfinished uploads are left out."""
    if not source.is_dir():
        return {"snapshots": 0, "outboxes": 0}
    store = AirlockStore(source)
    snapshots = sorted(p for p in store.blobs.iterdir() if p.is_file() and not p.is_symlink())
    for blob in snapshots:
        copy_private(blob, target / blob.relative_to(source))
    outboxes = 0
    for request in released:
        outbox = store.outbox(request["requester"], request["id"])
        if outbox.is_dir():
            copy_tree(outbox, target / outbox.relative_to(source))
            outboxes += 1
        else:
            say(f"Warning: released request {request['id']} has no outbox at {outbox}.")
    say(f"Airlock {source}: snapshots {len(snapshots)}, released outboxes {outboxes}.")
    return {"snapshots": len(snapshots), "outboxes": outboxes}


def _keep_keys(
    site: SiteConfig, stage: Path, pinned: str, keys: str, passphrase: bytes | None, say
) -> dict:
    files = key_files(site)
    if keys == OMIT:
        say(f"Keys left out ({len(files)} files): keep them apart from this backup.")
        return {"kept": "omitted", "names": sorted(files)}
    contents = {name: path.read_bytes() for name, path in files.items()}
    audit_key_folder = site.audit_key_path.parent.relative_to(site.state_dir).as_posix()
    signing = {n: d for n, d in contents.items() if n.startswith(f"{audit_key_folder}/")}
    if signing:
        check_signing_key(stage / AUDIT_FOLDER, pinned, signing)
    write_private(stage / KEYS_FILE, seal(contents, passphrase))
    say(f"Keys ({len(files)} files): encrypted with the passphrase into {KEYS_FILE}.")
    return {"kept": "encrypted", "file": KEYS_FILE, "names": sorted(files)}
