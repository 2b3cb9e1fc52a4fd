"""Restoring a backup into a new state folder, as on a new machine.

Nothing is written before the whole backup has been checked against its manifest and its keys
opened with the passphrase. The state is put together in a hidden folder beside the one named,
its audit log verified against the pinned key, and the folder takes its name last; the site
configuration written for it keeps the pinned fingerprint. A restore that fails leaves nothing
behind, in the state folder or in the database it was given.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ..core.project_groups import FILE_NAME as PROJECT_GROUPS_FILE
from ..core.site_config import (
    CONFIG_FILE_NAME,
    DEFAULT_STATE_DIR,
    SiteConfig,
    parse_site_config,
    write_site_config,
)
from ..local.hub_files import hub_paths
from . import (
    AIRLOCK_FOLDER,
    AUDIT_FOLDER,
    GROUPS_FILE,
    HUB_FILE,
    KEYS_FILE,
    REGISTRY_FILE,
    SITE_FILE,
    BackupError,
)
from .audit_copy import check_log, check_signing_key
from .database import count_rows, drop_registry, load_registry, present_tables, shown
from .manifest import (
    check_files,
    copy_private,
    private_folder,
    read_manifest,
    sync_tree,
    write_private,
)
from .sealed import read_passphrase, unseal
from .take import key_folders, new_folder

CONFIG_HEADER = "# Enclave site configuration, written by `enclave restore` from {backup}.\n"


def restore_backup(
    folder: Path,
    state_dir: Path,
    database_url: str | None = None,
    config_out: Path | None = None,
    passphrase_file: Path | None = None,
    fingerprint: str | None = None,
    say: Callable[[str], None] = print,
) -> dict:
    """Restore the backup in `folder` into the new state folder `state_dir` (and the empty
    database at `database_url`, else SQLite in the state folder); what it holds."""
    manifest = read_manifest(folder)
    check_files(folder, manifest)
    try:
        old = json.loads((folder / SITE_FILE).read_text())
        pinned, kept = manifest["audit"]["key_fingerprint"], manifest["keys"]
        names, encrypted = kept["names"], kept["kept"] == "encrypted"
        if not isinstance(old, dict):
            raise ValueError("the site configuration is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise BackupError(f"{folder / SITE_FILE} or its manifest is incomplete: {error}") from None
    if fingerprint is not None and fingerprint != pinned:
        raise BackupError(f"--fingerprint {fingerprint}: the backup's site pins {pinned}")
    state_dir = state_dir.absolute()
    site = _new_site(old, state_dir, database_url, folder / SITE_FILE)
    if site.audit.key_fingerprint != pinned:
        raise BackupError(f"{folder / SITE_FILE} does not pin {pinned}, the manifest's key")
    keys = _open_keys(folder, encrypted, passphrase_file, site)
    new_folder(state_dir, "--state-dir")
    config_path = (config_out or state_dir / CONFIG_FILE_NAME).absolute()
    if config_out is not None and (config_out.exists() or not config_path.parent.is_dir()):
        raise BackupError(f"--config-out {config_out}: name a new file in a folder that exists")
    if database_url is not None:
        present = present_tables(database_url)
        if present:
            raise BackupError(
                f"--database-url {shown(database_url)} already holds Enclave's tables "
                f"({', '.join(present)}): restore into an empty database"
            )
    stage = state_dir.parent / f".{state_dir.name}.restoring"
    try:
        stage.parent.mkdir(parents=True, exist_ok=True)
        stage.mkdir(mode=0o700)
    except FileExistsError:
        raise BackupError(
            f"{stage} exists: a restore is under way there, or one was cut short (remove it)"
        ) from None

    def staged(path: Path) -> Path:
        return stage / path.relative_to(state_dir)

    url = database_url or f"sqlite:///{staged(Path(make_url(site.registry_url).database))}"
    filled = False
    try:
        audit = _put_back_files(folder, manifest, site, staged, keys, pinned)
        load_registry(folder / REGISTRY_FILE, url)
        filled = True
        counts = count_rows(url)
        if config_path.is_relative_to(state_dir):
            write_site_config(site, staged(config_path), CONFIG_HEADER.format(backup=folder))
        sync_tree(stage)
        os.replace(stage, state_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if filled and database_url is not None:
            drop_registry(database_url)
        raise
    if not config_path.is_relative_to(state_dir):
        write_site_config(site, config_path, CONFIG_HEADER.format(backup=folder))
    summary = {**counts, "audit_records": audit["records"], "config": str(config_path)}
    _report(manifest, site, summary, [] if keys else names, old, say)
    return summary


def _open_keys(
    folder: Path, encrypted: bool, passphrase_file: Path | None, site: SiteConfig
) -> dict[str, bytes]:
    """The backup's keys, each by its path in the state folder (none if they were left out)."""
    if not encrypted:
        if passphrase_file is not None:
            raise BackupError("--passphrase-file: this backup holds no keys (they were left out)")
        return {}
    if passphrase_file is None:
        raise BackupError("the backup's keys are encrypted: give --passphrase-file")
    keys = unseal(folder / KEYS_FILE, read_passphrase(passphrase_file))
    places = {p.relative_to(site.state_dir).as_posix() for p in key_folders(site)}
    for name in keys:
        parts = PurePosixPath(name).parts
        if len(parts) < 2 or name.startswith("/") or parts[0] not in places or ".." in parts:
            raise BackupError(f"{folder / KEYS_FILE}: {name!r} is not a key's place")
    return keys


def _new_site(old: dict, state_dir: Path, database_url: str | None, source: Path) -> SiteConfig:
    """The old site's configuration, its state now in `state_dir`: the log, the airlock
    store and (by default) the database under it. The witness is left out: see _report."""
    data = copy.deepcopy(old)
    old_state = Path(data.get("state_dir", DEFAULT_STATE_DIR))
    data["state_dir"] = str(state_dir)
    data.setdefault("audit", {}).pop("log_dir", None)
    data["audit"].pop("witness_dir", None)
    data.setdefault("airlock", {}).pop("store_dir", None)
    data.setdefault("registry", {}).pop("database_url", None)
    if database_url is not None:
        try:
            kind = make_url(database_url).get_backend_name()
        except ArgumentError:
            kind = ""
        if kind not in ("sqlite", "postgresql"):
            raise BackupError(
                f"--database-url {shown(database_url) if kind else database_url!r}: not a "
                "sqlite:/// or postgresql+psycopg:// URL"
            )
        data["registry"]["database_url"] = database_url
    cache = (data.get("packages") or {}).get("cache_dir")
    if cache is not None and Path(cache).is_relative_to(old_state):
        del data["packages"]["cache_dir"]  # a cache: made anew under the new state folder
    return parse_site_config(data, str(source))


def _copy_listed(folder: Path, listed: dict, part: str, target: Path) -> None:
    """The files the manifest lists under `part` of the backup, into `target`."""
    private_folder(target)
    for name in listed:
        if name.startswith(f"{part}/"):
            copy_private(folder / name, target / name.removeprefix(f"{part}/"))


def _put_back_files(
    folder: Path, manifest: dict, site: SiteConfig, staged, keys: dict[str, bytes], pinned: str
) -> dict:
    """The files of the state folder, into the staged folder; what the restored log holds."""
    listed = manifest["files"]
    log = staged(site.audit_dir)
    _copy_listed(folder, listed, AUDIT_FOLDER, log)
    audit = check_log(log, pinned, [], "the restored audit log")
    _copy_listed(folder, listed, AIRLOCK_FOLDER, staged(site.airlock_dir))
    if HUB_FILE in listed:
        copy_private(folder / HUB_FILE, staged(hub_paths(site)["database"]))
    if GROUPS_FILE in listed:
        copy_private(folder / GROUPS_FILE, staged(site.state_dir / PROJECT_GROUPS_FILE))
    signing_folder = site.audit_key_path.parent.relative_to(site.state_dir).as_posix()
    signing = {n: d for n, d in keys.items() if n.startswith(f"{signing_folder}/")}
    if signing:
        check_signing_key(log, pinned, signing)
    for name, data in keys.items():
        write_private(staged(site.state_dir / name), data)
    return audit


# What becomes of a deployment without each folder of keys (`take.key_folders`, in order).
WITHOUT_KEYS = (
    "or let `enclave up` make new ones: sessions and sign-ins start over",
    "the audit service signs with no other key",
    "ingests with another key give other pseudonyms",
)


def _report(
    manifest: dict, site: SiteConfig, summary: dict, left_out: list[str], old: dict, say
) -> None:
    state_dir, pinned = site.state_dir, site.audit.key_fingerprint
    say(f"Restored the backup of {manifest.get('created', '?')} into {state_dir}:")
    say(
        f"  projects {summary['projects']}, members {summary['members']}, grants "
        f"{summary['grants']}, releases {summary['releases']}, audit records "
        f"{summary['audit_records']} (verified against {pinned})"
    )
    say(f"  site configuration: {summary['config']} (enclave up --config {summary['config']})")
    if left_out:
        places = [p.relative_to(state_dir).as_posix() for p in key_folders(site)]
        why = dict(zip(places, WITHOUT_KEYS, strict=True))
        say("  The backup left these keys out; put them back before `enclave up`:")
        for place, reason in why.items():
            names = [n.removeprefix(f"{place}/") for n in left_out if n.startswith(f"{place}/")]
            if names:
                say(f"    {state_dir / place}/: {', '.join(names)}  ({reason})")
    witness = (old.get("audit") or {}).get("witness_dir")
    if witness:
        say(
            f"  The old site's witness ({witness}) is not in the new configuration: it may have "
            "seen records after this backup, and the audit service refuses a log that does not "
            "extend what its witness saw. Set audit.witness_dir to a new folder on another "
            "volume, and keep the old one."
        )
