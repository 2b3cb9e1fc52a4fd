"""`enclave backup DIR` and `enclave restore DIR`: the operator's verbs."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path

from ..core.command_line import key_fingerprint
from ..core.site_config import site_config
from . import ENCRYPT, OMIT, BackupError
from .sealed import read_passphrase

BACKUP_HELP = """\
Copy a deployment's state into DIR (a new or empty folder), consistently while it runs:
the registry's database (one read transaction), the hub's database (SQLite's online backup),
the audit log with its signed checkpoints (verified against the pinned key before the backup
counts), the airlock's snapshots and released outboxes, the project groups, and the site
configuration; with a manifest of every file's SHA-256. The keys (secrets/, audit-key/,
deid-keys/) are encrypted with a passphrase (--keys encrypt --passphrase-file FILE) or left
out (--keys omit): choose one. Left out, as no restore needs them: logs/ (component and
session logs), run/ (a running `enclave up`'s processes), the package index's cache (fetched
again), the airlock's unfinished uploads. Not in the state folder, so not here: the
workspaces and the data root (back them up as files) and the audit witness (kept apart on
purpose). The backup holds personal data (usernames, the audit log): keep it as the state
folder is kept."""

RESTORE_HELP = """\
Restore the backup in DIR into a new, empty state folder (--state-dir), as on a new machine:
every file is checked against the manifest first (a damaged one is named and nothing is
written), the keys are opened with --passphrase-file, the audit log is verified against the
pinned key, the database is restored into --database-url (an empty database) or SQLite in the
state folder, and a site configuration for the new folder is written (keeping the pinned key's
fingerprint), then a summary printed."""


@contextlib.contextmanager
def _file_errors() -> Iterator[None]:
    """A file that cannot be read or written (a full disk, say) as one line naming it."""
    try:
        yield
    except OSError as error:
        raise BackupError(f"{error.filename or 'a file'}: {error.strerror or error}") from None


def cmd_backup(args: argparse.Namespace) -> int:
    if args.keys == OMIT and args.passphrase_file is not None:
        raise BackupError("--passphrase-file goes with --keys encrypt; --keys omit keeps no keys")
    if args.keys == ENCRYPT and args.passphrase_file is None:
        raise BackupError("--keys encrypt needs --passphrase-file FILE")
    from .take import take_backup  # it reads the deployment's databases: slow to import

    passphrase = read_passphrase(args.passphrase_file) if args.passphrase_file else None
    with _file_errors():
        take_backup(site_config(args.config), args.folder, args.keys, passphrase)
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from .restore import restore_backup  # it reads the hub's settings: slow to import

    with _file_errors():
        restore_backup(
            args.folder,
            args.state_dir,
            database_url=args.database_url,
            config_out=args.config_out,
            passphrase_file=args.passphrase_file,
            fingerprint=args.fingerprint,
        )
    return 0


def add_backup_verbs(verbs: argparse._SubParsersAction) -> None:
    backup = verbs.add_parser(
        "backup",
        help="copy a deployment's state into a folder, while it runs",
        description=BACKUP_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    backup.add_argument("folder", type=Path, metavar="DIR", help="a new or empty folder")
    backup.add_argument("--config", type=Path, help="site configuration file (YAML)")
    backup.add_argument(
        "--keys",
        choices=(ENCRYPT, OMIT),
        required=True,
        help="encrypt the keys with the passphrase, or leave them out (keep them apart)",
    )
    backup.add_argument(
        "--passphrase-file", type=Path, help="a file holding the passphrase (12 characters or more)"
    )
    backup.set_defaults(handler=cmd_backup)

    restore = verbs.add_parser(
        "restore",
        help="restore a backup into a new state folder",
        description=RESTORE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    restore.add_argument("folder", type=Path, metavar="DIR", help="the backup's folder")
    restore.add_argument(
        "--state-dir", type=Path, required=True, help="the new state folder (missing or empty)"
    )
    restore.add_argument(
        "--database-url",
        help="an empty database to restore into, postgresql+psycopg://USER:PASSWORD@HOST/DB "
        "(default: SQLite in the new state folder)",
    )
    restore.add_argument(
        "--config-out",
        type=Path,
        help="where to write the new site configuration (default: <state-dir>/enclave.yaml)",
    )
    restore.add_argument(
        "--passphrase-file", type=Path, help="the passphrase of the backup's encrypted keys"
    )
    restore.add_argument(
        "--fingerprint",
        type=key_fingerprint,
        help="the audit key you trust, sha256:HEX: the restore is refused unless the backup "
        "pins it (default: the key the backup's site configuration pins)",
    )
    restore.set_defaults(handler=cmd_restore)
