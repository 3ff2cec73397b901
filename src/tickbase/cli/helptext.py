"""Help as a mature command line shows it: plain text and conventional metavars.

Command help comes from docstrings, written in reStructuredText for the API
docs; Typer shows ``double backticks`` and ``:role:`x``` literally. Typer
also labels every value ``<str>``, flags ``<bool>`` and required arguments
``{name}``. :func:`plain_help` rewrites a built command tree once, before it
runs: markup becomes quotes, values get an upper-case metavar (``URL``,
``SECONDS``, ``TEXT``), flags none, and arguments read as in click and git
(``TASK_TYPE``, ``[NAME]``).
"""

from __future__ import annotations

import re
from typing import Any

from typer.core import TyperArgument, TyperGroup, TyperOption

_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")
_INTERPRETED = re.compile(r"`([^`]+)`")
_EXAMPLE = re.compile(r"::\n")

# Metavars by parameter name where the type alone says too little.
NAMED_METAVARS = {
    "database_url": "URL",
    "app_spec": "MODULE:ATTR",
    "payload": "JSON",
    "queues": "QUEUES",
    "roles": "ROLES",
    "host": "HOST",
    "port": "PORT",
    "tz": "ZONE",
    "cron": "EXPR",
    "run_at": "TIME",
    "url": "URL",
}
TYPE_METAVARS = {"int": "INTEGER", "float": "NUMBER", "str": "TEXT", "Path": "PATH"}
"""Metavars by the parameter's Python type (Typer's 'bare type')."""


def plain_text(text: str | None) -> str | None:
    """``text`` with reStructuredText literals and roles turned into quotes.

    Example::

        plain_text("prints ``tickbase db url``")  # "prints 'tickbase db url'"
    """
    if text is None:
        return None
    text = _ROLE.sub(lambda m: f"'{m[1]}'", text)
    text = _LITERAL.sub(lambda m: f"'{m[1]}'", text)
    text = _INTERPRETED.sub(lambda m: f"'{m[1]}'", text)
    return _EXAMPLE.sub(":\n", text)


class _PlainArgument(TyperArgument):
    """An argument shown as click and git show one: ``TASK_TYPE``, ``[NAME]``."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None  # the upper-case name says it; no '<str>' beside it

    def _usage_display_name(self) -> str:
        name = (self.name or "value").upper()
        name = name if self.required else f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")


def plain_help(command: Any) -> None:
    """Rewrite the help of ``command`` (a Typer command or group, built with
    ``typer.main.get_command``) and every sub-command, in place."""
    command.help = plain_text(command.help)
    command.short_help = plain_text(command.short_help)
    for param in command.params:
        if isinstance(param, TyperOption):
            param.help = plain_text(param.help)
            if param.is_flag or param.count:
                param.metavar = ""
            elif param.metavar is None:
                param.metavar = _metavar(param)
        elif isinstance(param, TyperArgument):
            param.help = plain_text(param.help)
            if param.metavar is None:
                param.metavar = (param.name or "value").upper()
            # Same fields, other display: the class swap changes only how it is shown.
            param.__class__ = _PlainArgument
    _plain_help_option(command)
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            plain_help(sub)


def _plain_help_option(command: Any) -> None:
    """``--help`` is made per context, not stored in ``params``: wrap its factory."""
    make = command.get_help_option

    def get_help_option(ctx: Any) -> Any:
        option = make(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = get_help_option


def _metavar(param: TyperOption) -> str:
    if param.name in NAMED_METAVARS:
        return NAMED_METAVARS[param.name]
    if param.type_descriptor.is_choice:
        return "|".join(str(choice) for choice in param.type_descriptor.choices or ())
    return TYPE_METAVARS.get(param.bare_type(), (param.name or "value").upper())
