"""The privacy part of the command line, registered by :mod:`fastprep.cli`
with one call each: prep's privacy flags (:func:`add_prep_flags`), how they
become settings (:func:`settings_changes`) and ``fastprep forget``
(:func:`add_forget_command`)."""

from __future__ import annotations

import argparse
import sys

from fastprep.pipeline.settings import REDACT_KINDS


def add_prep_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("privacy")
    group.add_argument(
        "--no-redact",
        action="append",
        choices=(*REDACT_KINDS, "all"),
        default=[],
        help="keep this kind in written captions (repeatable; default: all redacted)",
    )
    group.add_argument(
        "--redact-column",
        action="append",
        default=None,
        help="text column to redact (default: caption)",
    )
    group.add_argument("--account-column", default=None, help="account/user id column")
    group.add_argument(
        "--opt-out-accounts", default=None, help="file of opted-out account ids, one a line"
    )
    group.add_argument(
        "--accounts",
        default=None,
        help="accounts table (Parquet/CSV/JSON lines) for account.<field> rules",
    )
    group.add_argument(
        "--blur-faces",
        nargs="?",
        const="blur",
        choices=("blur", "pixelate"),
        default=None,
        help="obfuscate detected faces (needs fastprep[faces])",
    )
    group.add_argument(
        "--absolute-sources",
        action="store_true",
        help="write source paths as read (default: relative)",
    )


def _read_lines(path: str | None) -> list[str]:
    if path is None:
        return []
    with open(path, encoding="utf-8") as f:
        return [line.split("#")[0].strip() for line in f if line.split("#")[0].strip()]


def settings_changes(args: argparse.Namespace) -> dict:
    """The PrepSettings fields the privacy flags set."""
    off = set(args.no_redact or [])
    accounts = _read_lines(args.opt_out_accounts)
    return {
        "redact": () if "all" in off else tuple(k for k in REDACT_KINDS if k not in off),
        "redact_columns": tuple(args.redact_column or ("caption",)),
        "account_column": args.account_column,
        "opt_out_accounts": tuple(accounts),
        "accounts": args.accounts,
        "blur_faces": args.blur_faces,
        "absolute_sources": args.absolute_sources,
    }


def _forget(args: argparse.Namespace) -> int:
    from fastprep.privacy.forget import forget

    result = forget(
        args.out,
        keys=(args.key or []) + _read_lines(args.keys_file),
        accounts=(args.account or []) + _read_lines(args.accounts_file),
        xxh3=args.xxh3 or [],
        pdq=args.pdq or [],
        radius=args.radius,
        reason=args.reason,
    )
    if not args.quiet:
        print(
            f"fastprep forget: {result.erased} record(s) erased"
            + (f"; rewrote {', '.join(result.shards)}" if result.shards else ""),
            file=sys.stdout,
        )
    return 0


def add_forget_command(sub) -> None:
    forget = sub.add_parser("forget", help="erase records from a finished prep output")
    forget.add_argument("out", help="the prep output folder")
    forget.add_argument("--key", action="append", help="record key (repeatable)")
    forget.add_argument("--keys-file", help="file of keys, one a line")
    forget.add_argument("--account", action="append", help="account id (repeatable)")
    forget.add_argument("--accounts-file", help="file of account ids, one a line")
    forget.add_argument("--xxh3", action="append", help="xxh3-128 hex of the image bytes")
    forget.add_argument("--pdq", action="append", help="PDQ hex; matches within --radius")
    forget.add_argument("--radius", type=int, default=31)
    forget.add_argument("--reason", default=None, help="why (kept in the erasure log)")
    forget.add_argument("--quiet", action="store_true")
    forget.set_defaults(run=_forget)
