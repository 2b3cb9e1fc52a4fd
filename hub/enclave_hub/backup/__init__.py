"""`enclave backup` and `enclave restore`: a deployment's state, copied consistently while it
runs, and put back into a new state folder (on this machine or another).

A backup is a folder of:

- `manifest.json`: every file of the backup with its size and SHA-256, the audit log's size
  and last signed checkpoint, the pinned key's fingerprint, the time (`manifest.py`);
- `site.json`: the site configuration (the database's password left out);
- `registry.jsonl`: the deployment's database (projects, memberships, dataset grants,
  identities, applications, package allowances, jobs, and the airlock's requests, reviews and
  releases), row by row from one read transaction (`database.py`);
- `hub.sqlite`: the hub's own database (users, their sessions, tokens), by SQLite's online
  backup;
- `audit/`: the audit log, segment by segment, cut to whole records and verified against the
  pinned key (`audit_copy.py`);
- `airlock/`: the snapshots the checkers reviewed and the released outboxes;
- `project-groups.json`: the project groups' ids, which own the projects' shared folders;
- `keys.sealed`: the secrets, the audit signing key and the de-identification keys, encrypted
  with a key derived from the operator's passphrase (`sealed.py`), unless they were left out.

`take.py` writes one, `restore.py` puts one back, `cli.py` holds the two verbs.
"""

from __future__ import annotations

MANIFEST_FILE = "manifest.json"
SITE_FILE = "site.json"
REGISTRY_FILE = "registry.jsonl"
HUB_FILE = "hub.sqlite"
AUDIT_FOLDER = "audit"
AIRLOCK_FOLDER = "airlock"
GROUPS_FILE = "project-groups.json"
KEYS_FILE = "keys.sealed"
ENCRYPT, OMIT = "encrypt", "omit"  # what a backup does with the secrets and keys


class BackupError(Exception):
    """A backup or a restore that cannot be done; the message names the file or the option.
    Nothing is left half-written."""
