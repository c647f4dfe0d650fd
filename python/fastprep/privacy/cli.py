"""The privacy part of the command line, registered by :mod:`fastprep.cli`:
prep's privacy options (:data:`PREP_OPTIONS`), how they become settings
(:func:`settings_changes`) and ``fastprep forget`` (:func:`register`)."""

from __future__ import annotations

from typing import Any

import click

from fastprep.cli._help import apply, examples, option
from fastprep.pipeline.settings import REDACT_KINDS

PRIVACY = "Privacy"

PREP_OPTIONS = [
    option("--no-redact", group=PRIVACY, multiple=True,
           type=click.Choice([*REDACT_KINDS, "all"]), show_default="every kind redacted",
           help="Keep this kind in written captions (repeatable)."),
    option("--redact-column", group=PRIVACY, multiple=True, show_default="caption",
           help="Text column to redact (repeatable)."),
    option("--account-column", group=PRIVACY, default=None, show_default="none",
           help="The account/user id column (account-level consent)."),
    option("--opt-out-accounts", group=PRIVACY, type=click.Path(), default=None,
           show_default="none", help="File of opted-out account ids, one a line."),
    option("--accounts", group=PRIVACY, type=click.Path(), default=None, show_default="none",
           help="Accounts table (Parquet/CSV/JSON lines) for --drop-if account.<field> rules."),
    option("--blur-faces", group=PRIVACY, type=click.Choice(["blur", "pixelate"]),
           is_flag=False, flag_value="blur", default=None, show_default="off",
           help="Obfuscate detected faces: blur (the value when none is given) or pixelate "
           "(needs fastprep[faces])."),
    option("--absolute-sources", group=PRIVACY, is_flag=True,
           help="Write source paths as read (default: relative to the source root)."),
]  # fmt: skip


def _read_lines(path: str | None) -> list[str]:
    if path is None:
        return []
    with open(path, encoding="utf-8") as f:
        return [line.split("#")[0].strip() for line in f if line.split("#")[0].strip()]


def settings_changes(p: dict[str, Any]) -> dict:
    """The PrepSettings fields the privacy options set."""
    off = set(p.get("no_redact") or ())
    return {
        "redact": () if "all" in off else tuple(k for k in REDACT_KINDS if k not in off),
        "redact_columns": tuple(p.get("redact_column") or ("caption",)),
        "account_column": p.get("account_column"),
        "opt_out_accounts": tuple(_read_lines(p.get("opt_out_accounts"))),
        "accounts": p.get("accounts"),
        "blur_faces": p.get("blur_faces"),
        "absolute_sources": bool(p.get("absolute_sources")),
    }


FORGET = "Options"

_FORGET_OPTIONS = [
    option("--key", group=FORGET, multiple=True, help="Record key (repeatable)."),
    option("--keys-file", group=FORGET, type=click.Path(), default=None, help="File of keys, one a line."),
    option("--account", group=FORGET, multiple=True, help="Account id (repeatable)."),
    option("--accounts-file", group=FORGET, type=click.Path(), default=None,
           help="File of account ids, one a line."),
    option("--xxh3", group=FORGET, multiple=True, help="xxh3-128 hex of the image bytes (repeatable)."),
    option("--pdq", group=FORGET, multiple=True, help="PDQ hex; matches within --radius (repeatable)."),
    option("--radius", group=FORGET, type=click.IntRange(0, 256), default=31, help="PDQ Hamming radius."),
    option("--reason", group=FORGET, default=None, help="Why (kept in the erasure log)."),
    option("--quiet", "-q", group=FORGET, is_flag=True, help="No summary line."),
]  # fmt: skip


def register(group: click.Group) -> None:
    """Adds ``fastprep forget`` to the command group."""

    @group.command(
        short_help="Erase records from a finished prep output.",
        help="Erase records from a finished prep output (by key, account, xxh3 or PDQ): only "
        "the shards holding them are rewritten, and the erasure is logged without the keys.",
        epilog=examples(
            "fastprep forget prepared/ --key photo_123",
            "fastprep forget prepared/ --accounts-file takedown_accounts.txt --reason gdpr",
        ),
    )
    @click.argument("out")
    @apply(_FORGET_OPTIONS)
    def forget(out: str, **p: Any) -> None:
        from fastprep.privacy.forget import forget as erase

        result = erase(
            out,
            keys=[*p["key"], *_read_lines(p["keys_file"])],
            accounts=[*p["account"], *_read_lines(p["accounts_file"])],
            xxh3=list(p["xxh3"]),
            pdq=list(p["pdq"]),
            radius=p["radius"],
            reason=p["reason"],
        )
        if not p["quiet"]:
            shards = f"; rewrote {', '.join(result.shards)}" if result.shards else ""
            click.echo(f"fastprep forget: {result.erased} record(s) erased{shards}")
