"""What every synthlab entry point shares: one-line usage errors, and flags generated from config dataclasses.

argparse answers a bad flag with the whole usage block and then the error; in a log or a CI transcript the one
line that matters drowns. :class:`Parser` prints just ``prog: error: ... (see prog --help)`` and exits with 2,
like every other input error of the command line. :func:`add_config_flags` turns the fields of a config
dataclass (declared with :func:`synthlab.configs.setting`) into flags, so each default and help text is written
once, next to the field, and the flag only overrides it.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, Union

__all__ = ["USER_ERRORS", "Parser", "add_config_flags", "config_values", "defaults_of", "first_line", "input_error"]

# What a user can cause or fix: every entry point answers these with one line and exit code 2, a bug keeps its
# traceback.
USER_ERRORS: tuple[type[Exception], ...] = (ValueError, FileNotFoundError)


def defaults_of(function: Callable[..., Any]) -> dict[str, Any]:
    """The default of each parameter of ``function``: a command's flags take them from the function it calls,
    so a default is written once, in the signature."""
    return {name: parameter.default for name, parameter in inspect.signature(function).parameters.items()
            if parameter.default is not inspect.Parameter.empty}


def first_line(err: BaseException) -> str:
    """The first line of an error's message: what fits in a log line."""
    text = str(err).strip()
    return text.splitlines()[0] if text else ""


def input_error(prog: str, err: BaseException, kind: bool = False) -> int:
    """Print the one line ``prog: error: message`` a bad input earns (``kind`` adds the exception's name, for
    errors such as a full disk whose message alone is unclear) and return the exit code, 2."""
    print(f"{prog}: error: {type(err).__name__ + ': ' if kind else ''}{first_line(err)}", file=sys.stderr)
    return 2


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with one-line usage errors (sub-parsers inherit the class)."""

    commands: dict[str, argparse.ArgumentParser]  # a command line's sub-commands by name, where it has them

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def _parse_as(hint: Any) -> tuple[Any, bool]:
    """The argparse ``type`` for an annotation and whether ``none`` is accepted (``X | None``)."""
    union = typing.get_origin(hint) in (Union, types.UnionType)
    kinds = [a for a in typing.get_args(hint) if a is not type(None)] if union else [hint]
    optional = union and len(kinds) < len(typing.get_args(hint))
    base = str if kinds[0] is Path else kinds[0]  # paths arrive as strings (``str | Path`` too)
    if not optional:
        return base, False

    def parse(text: str) -> Any:
        return None if text.lower() == "none" else base(text)

    parse.__name__ = base.__name__  # argparse names the type in its error message
    return parse, True


def add_config_flags(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One ``--field-name`` flag per field of dataclass ``cls`` (``skip`` aside), with its default and help.

    Fields without a default become required flags; ``bool`` fields become switches; ``X | None`` fields also
    take ``none``.
    """
    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):
        if item.name in skip:
            continue
        flag = "--" + item.name.replace("_", "-")
        meta = item.metadata
        options: dict[str, Any] = {"help": meta.get("help", ""), "dest": item.name}
        if meta.get("choices"):
            options["choices"] = meta["choices"]
        if item.default is dataclasses.MISSING:
            options.update(required=True, default=argparse.SUPPRESS)  # no "(default: None)" in --help
        else:
            options["default"] = item.default
        hint = hints[item.name]
        if hint is bool or (typing.get_origin(hint) in (Union, types.UnionType)
                            and set(typing.get_args(hint)) == {bool, type(None)}):
            switch = "store_true" if hint is bool and not item.default else argparse.BooleanOptionalAction
            parser.add_argument(flag, action=switch, **options)
            continue
        parse, optional = _parse_as(hint)
        if optional and item.default is not None:
            options["help"] += "; none for no value"
        parser.add_argument(flag, type=parse, **options)


def config_values(args: argparse.Namespace, cls: type, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The values of ``cls``'s fields among parsed ``args`` (those :func:`add_config_flags` added, ``skip`` aside)."""
    names = {item.name for item in dataclasses.fields(cls)} - set(skip)
    return {key: value for key, value in vars(args).items() if key in names}
