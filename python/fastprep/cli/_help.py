"""How the commands' ``--help`` looks: argparse-style ``usage:`` line,
options in named groups, every default shown."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

#: Option groups, in the order ``--help`` shows them.
GROUPS = (
    "Input",
    "Output",
    "Images",
    "Consent and takedowns",
    "Near-duplicates and eval-set leaks",
    "Vocabulary",
    "Privacy",
    "Engine (where the job runs; outputs do not depend on it)",
    "Run",
    "Options",
)


class Formatter(click.HelpFormatter):
    """click's formatter with argparse's ``usage: fastprep prep ...`` line."""

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        super().write_usage(prog, args, prefix="usage: " if prefix is None else prefix)


class Context(click.Context):
    formatter_class = Formatter


class Option(click.Option):
    """An option with a help group (``group=``, one of :data:`GROUPS`)."""

    def __init__(self, *args: Any, group: str = "Options", **kwargs: Any) -> None:
        if group not in GROUPS:
            raise ValueError(f"unknown option group {group!r}")
        super().__init__(*args, **kwargs)
        self.group = group


class _Epilog:
    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Examples are shown as written (click would rewrap them).
        epilog = getattr(self, "epilog", None)
        if epilog:
            formatter.write_paragraph()
            for line in epilog.strip("\n").splitlines():
                formatter.write(" " * formatter.current_indent + line + "\n")


class Command(_Epilog, click.Command):
    """A command whose options are listed by group."""

    context_class = Context

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        grouped: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            if isinstance(param, click.Argument):
                continue  # described in the command's help text
            record = param.get_help_record(ctx)
            if record is None:
                continue
            grouped.setdefault(getattr(param, "group", "Options"), []).append(record)
        for name in GROUPS:
            if name in grouped:
                with formatter.section(name):
                    formatter.write_dl(grouped[name])


class Group(_Epilog, click.Group):
    context_class = Context
    command_class = Command


def examples(*lines: str) -> str:
    """An ``Examples:`` epilog, each line shown as given."""
    return "Examples:\n" + "\n".join(f"  {line}" for line in lines)


def option(*decls: str, group: str, **kwargs: Any):
    """``click.option`` with a help group."""
    return click.option(*decls, cls=Option, group=group, **kwargs)


def apply(decorators: Sequence[Any]):
    """Applies option decorators in the order they are listed."""

    def wrap(f: Any) -> Any:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return wrap
