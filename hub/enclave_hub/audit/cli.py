"""`enclave audit ...`: the auditor's verbs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..core.site_config import site_config
from .checkpoints import PUBLIC_KEY_FILE, Checkpoint, load_public_key, read_checkpoints
from .evidence import PackError, export_pack, verify_pack
from .query import Filters, parse_time, query
from .verify import verify_log


def _log_folder(args: argparse.Namespace) -> Path:
    if args.log is not None:
        return args.log
    return site_config(args.config).audit_dir


def _kept_checkpoints(path: Path | None) -> list[Checkpoint]:
    if path is None:
        return []
    try:
        return read_checkpoints(path)
    except (OSError, ValueError) as error:
        raise SystemExit(f"enclave: --checkpoint {path}: {error}") from None


def cmd_verify(args: argparse.Namespace) -> int:
    folder = _log_folder(args)
    key_path = args.public_key or folder / PUBLIC_KEY_FILE
    try:
        public_key = load_public_key(key_path)
    except (OSError, ValueError) as error:
        raise SystemExit(f"enclave: cannot read the audit public key {key_path}: {error}") from None
    verdict = verify_log(folder, public_key, _kept_checkpoints(args.checkpoint))
    print(
        json.dumps(
            {
                "ok": verdict.ok,
                "records": verdict.records,
                "checkpoints": verdict.checkpoints,
                "first_bad_index": verdict.first_bad,
                "reason": verdict.reason,
            }
        )
    )
    return 0 if verdict.ok else 1


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
        count = export_pack(_log_folder(args), _filters(args), args.out)
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


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="site configuration (for the log's folder)")
    parser.add_argument("--log", type=Path, help="the log's folder (default: <state>/audit)")
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
    verify.add_argument("--config", type=Path, help="site configuration (for the log's folder)")
    verify.add_argument("--log", type=Path, help="the log's folder (default: <state>/audit)")
    verify.add_argument("--checkpoint", type=Path, help="checkpoints kept apart from the log")
    verify.add_argument("--public-key", type=Path, help="default: audit.pub in the log folder")
    verify.set_defaults(handler=cmd_verify)
    search = audit_verbs.add_parser("query", help="print the records that match, one JSON a line")
    _add_filters(search)
    search.set_defaults(handler=cmd_query)
    export = audit_verbs.add_parser(
        "export", help="write an evidence pack (records, checkpoint, proofs) that verifies offline"
    )
    _add_filters(export)
    export.add_argument("--out", type=Path, required=True, help="a new folder for the pack")
    export.set_defaults(handler=cmd_export)
    check = audit_verbs.add_parser(
        "verify-pack", help="check an evidence pack offline; exit 0 only when it holds"
    )
    check.add_argument("pack", type=Path, help="the pack's folder")
    check.add_argument("--public-key", type=Path, help="the key to trust (default: the pack's)")
    check.set_defaults(handler=cmd_verify_pack)
