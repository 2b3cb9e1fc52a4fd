"""`enclave audit ...`: the auditor's verbs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..core.command_line import key_fingerprint
from ..core.site_config import (
    CONFIG_FILE_NAME,
    SiteConfigError,
    default_state_dir,
    site_config,
)
from . import AuditLog, KeyNotTrusted, LogUnwritable, NotConsistent
from .checkpoints import Checkpoint, load_public_key, read_checkpoints
from .evidence import PackError, export_pack, verify_pack
from .query import Filters, parse_time, query
from .verify import verify_log
from .witness import read_witnessed


def _site(args: argparse.Namespace):
    try:
        return site_config(args.config)
    except SiteConfigError as error:
        raise SystemExit(f"enclave: {error}") from None


def _log_folder(args: argparse.Namespace) -> Path:
    if args.log is not None:
        return args.log
    return _site(args).audit_dir


def _anchor(args: argparse.Namespace) -> str | Ed25519PublicKey:
    """The key to trust: the auditor's own copy, a fingerprint, or the site's pinned one;
    never the key beside the log."""
    if args.public_key is not None:
        try:
            return load_public_key(args.public_key)
        except (OSError, ValueError) as error:
            raise SystemExit(f"enclave: --public-key {args.public_key}: {error}") from None
    if args.fingerprint is not None:
        return args.fingerprint
    configured = args.config is not None or (default_state_dir() / CONFIG_FILE_NAME).exists()
    pinned = _site(args).audit.key_fingerprint if configured else None
    if pinned is None:
        raise SystemExit(
            "enclave: the site configuration pins no audit key (audit.key_fingerprint): "
            "start Enclave once to pin it, or pass --fingerprint or --public-key"
        )
    return pinned


def _kept_checkpoints(path: Path | None) -> list[Checkpoint]:
    if path is None:
        return []
    try:
        return read_checkpoints(path)
    except (OSError, ValueError) as error:
        raise SystemExit(f"enclave: --checkpoint {path}: {error}") from None


def _witness_folder(args: argparse.Namespace) -> Path | None:
    if args.witness is not None or args.log is not None:
        return args.witness
    return _site(args).audit.witness_dir


def cmd_verify(args: argparse.Namespace) -> int:
    folder, anchor, witness = _log_folder(args), _anchor(args), _witness_folder(args)
    try:
        witnessed = read_witnessed(witness) if witness else []
    except (OSError, ValueError) as error:
        raise SystemExit(f"enclave: --witness {witness}: {error}") from None
    verdict = verify_log(folder, anchor, _kept_checkpoints(args.checkpoint), witnessed)
    print(
        json.dumps(
            {
                "ok": verdict.ok,
                "records": verdict.records,
                "checkpoints": verdict.checkpoints,
                "witnessed": len(witnessed),
                "first_bad_index": verdict.first_bad,
                "reason": verdict.reason,
            }
        )
    )
    return 0 if verdict.ok else 1


def cmd_rotate_key(args: argparse.Namespace) -> int:
    site = _site(args)
    if site.audit.key_fingerprint is None:
        raise SystemExit(
            "enclave: pin the current key first (audit.key_fingerprint): start Enclave once"
        )
    try:
        log = AuditLog(
            site.audit_dir,
            site.audit_key_path,
            pinned=site.audit.key_fingerprint,
            witness=site.audit.witness_dir,
        )
        try:
            fingerprint = log.rotate_key()
        finally:
            log.close()
    except (KeyNotTrusted, NotConsistent, LogUnwritable, OSError) as error:
        raise SystemExit(f"enclave: the audit key was not rotated: {error}") from None
    print(f"The audit log is now signed by {fingerprint}; the rotation is recorded in it.")
    return 0


def _filters(args: argparse.Namespace) -> Filters:
    try:
        return Filters(
            user=args.user,
            project=args.project,
            dataset=args.dataset,
            type=args.type,
            since=parse_time(args.since) if args.since else None,
            until=parse_time(args.until) if args.until else None,
        )
    except ValueError as error:
        raise SystemExit(f"enclave: {error}") from None


def cmd_query(args: argparse.Namespace) -> int:
    for record in query(_log_folder(args), _filters(args)):
        print(json.dumps(record, sort_keys=True))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    try:
        count = export_pack(_log_folder(args), _anchor(args), _filters(args), args.out)
    except (PackError, OSError, ValueError) as error:
        raise SystemExit(f"enclave: {error}") from None
    print(f"Wrote {count} records with their proofs to {args.out}")
    return 0


def cmd_verify_pack(args: argparse.Namespace) -> int:
    try:
        key = load_public_key(args.public_key) if args.public_key else None
        verdict = verify_pack(args.pack, key)
    except (PackError, OSError, ValueError) as error:
        raise SystemExit(f"enclave: {error}") from None
    result = {
        "ok": verdict.ok,
        "records": verdict.records,
        "tree_size": verdict.tree_size,
        "first_bad_record": verdict.first_bad,
        "reason": verdict.reason,
    }
    print(json.dumps(result))
    return 0 if verdict.ok else 1


def _add_log(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="site configuration (for the log's folder)")
    parser.add_argument("--log", type=Path, help="the log's folder (default: <state>/audit)")


def _add_anchor(parser: argparse.ArgumentParser) -> None:
    trust = parser.add_mutually_exclusive_group()
    trust.add_argument(
        "--fingerprint",
        type=key_fingerprint,
        help="the key to trust, sha256:HEX (default: the site's audit.key_fingerprint)",
    )
    trust.add_argument("--public-key", type=Path, help="the key to trust: your own copy of it")


def _add_filters(parser: argparse.ArgumentParser) -> None:
    _add_log(parser)
    parser.add_argument("--user", help="who acted")
    parser.add_argument("--project")
    parser.add_argument("--dataset")
    parser.add_argument("--type", help="an action, or its family (session matches session.start)")
    parser.add_argument("--since", help="ISO 8601 time, inclusive (UTC unless an offset is given)")
    parser.add_argument("--until", help="ISO 8601 time, exclusive")


def add_audit_verbs(verbs: argparse._SubParsersAction) -> None:
    audit = verbs.add_parser("audit", help="verify and query the audit log")
    audit_verbs = audit.add_subparsers(dest="audit_verb", required=True)
    verify = audit_verbs.add_parser(
        "verify", help="exit 0 only when the whole log verifies; else name the first bad record"
    )
    _add_log(verify)
    _add_anchor(verify)
    verify.add_argument(
        "--checkpoint", type=Path, help="checkpoints kept apart from the log (an auditor's)"
    )
    verify.add_argument(
        "--witness",
        type=Path,
        help="the witness folder whose chain of checkpoints to check (default: the site's "
        "audit.witness_dir, unless --log is given)",
    )
    verify.set_defaults(handler=cmd_verify)
    rotate = audit_verbs.add_parser(
        "rotate-key",
        help="with Enclave stopped: sign the log with a new key, the change signed by the old",
    )
    rotate.add_argument("--config", type=Path, help="site configuration")
    rotate.set_defaults(handler=cmd_rotate_key)
    search = audit_verbs.add_parser("query", help="print the records that match, one JSON a line")
    _add_filters(search)
    search.set_defaults(handler=cmd_query)
    export = audit_verbs.add_parser(
        "export", help="write an evidence pack (records, checkpoint, proofs) that verifies offline"
    )
    _add_filters(export)
    _add_anchor(export)
    export.add_argument("--out", type=Path, required=True, help="a new folder for the pack")
    export.set_defaults(handler=cmd_export)
    check = audit_verbs.add_parser(
        "verify-pack", help="check an evidence pack offline; exit 0 only when it holds"
    )
    check.add_argument("pack", type=Path, help="the pack's folder")
    check.add_argument("--public-key", type=Path, help="the key to trust (default: the pack's)")
    check.set_defaults(handler=cmd_verify_pack)
