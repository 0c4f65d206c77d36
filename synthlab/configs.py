"""Typed config dataclasses from plain values: JSON files, ``KEY=VALUE`` flags, partial overrides.

Every randomisation and budget lives in a dataclass; this module is the one way plain values become one
(:func:`config_from_dict`, groups merged with :func:`merge_nested`, dotted keys with :func:`nest_dotted`) and
back (:func:`plain`). Values from ``--synth-set temperature=hot`` or a hand-edited JSON arrive untyped; without
a check they fail deep inside a loss with ``'<=' not supported between 'str' and 'int'``:
:func:`check_field_types` compares each value with its field's annotation and names the field. Imports nothing
from synthlab, so every config may use it.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, Field, asdict, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

ConfigT = TypeVar("ConfigT")

__all__ = ["check_field_types", "config_from_dict", "merge_nested", "nest_dotted", "plain", "setting"]


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the annotation ``hint`` (unknown annotations accept anything)."""
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is Path:
        return isinstance(value, (str, Path))
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if origin is Literal:
        return value in args
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args, strict=True))
    if origin is dict:
        return isinstance(value, dict)
    if isinstance(hint, type) and is_dataclass(hint):
        return isinstance(value, hint)
    return True


def _describe(hint: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null",
             Path: "a path"}
    if hint in names:
        return names[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
        return f"a list of {len(args)} ({', '.join(_describe(a) for a in args)})"
    return getattr(hint, "__name__", str(hint))


def check_field_types(cls: type, values: Mapping[str, Any], prefix: str = "") -> None:
    """A ValueError naming the first field of dataclass ``cls`` whose value in ``values`` has the wrong type."""
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        if name in hints and not _matches(value, hints[name]):
            raise ValueError(f"{prefix}{name} must be {_describe(hints[name])}, got {value!r}")


def setting(default: Any = MISSING, help: str = "", choices: Sequence[Any] | None = None) -> Any:
    """A dataclass field that documents itself: its default and ``help`` (and allowed ``choices``) in one place.

    Command lines are generated from these fields (:func:`synthlab.cli.add_config_flags`), so a default is
    written once, here, as nanoGPT states each default once and lets a flag override it.
    """
    metadata = {"help": help, "choices": tuple(choices) if choices is not None else None}
    made: Field = field(default=default, metadata=metadata)
    return made


def config_from_dict(cls: type[ConfigT], values: Mapping[str, Any], prefix: str = "") -> ConfigT:
    """Build a (nested) config dataclass from plain values, e.g. ``as_dict`` output or a partial override.

    Unknown fields and wrongly typed values raise a ValueError naming the field. A group (a field whose default
    is itself a dataclass) given in part keeps its other settings at the defaults its parent gives it, which may
    differ from the group class's own.
    """
    kwargs = {}
    known = {f.name: f for f in fields(cls)}
    for key, value in values.items():
        if key not in known:
            raise ValueError(f"{cls.__name__} has no field {prefix}{key!r}; valid fields: {sorted(known)}")
        factory = known[key].default_factory
        if isinstance(value, dict) and factory is not MISSING and is_dataclass(default := factory()):
            value = config_from_dict(type(default), merge_nested(plain(asdict(default)), value), f"{prefix}{key}.")
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    check_field_types(cls, kwargs, prefix)
    return cls(**kwargs)


def plain(value: Any) -> Any:
    """Plain JSON types: tuples as lists, paths as strings."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def nest_dotted(overrides: dict[str, Any]) -> dict[str, Any]:
    """``{"appearance.noise_p": 0.1}`` -> ``{"appearance": {"noise_p": 0.1}}``; nested dicts pass through."""
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        *parents, leaf = str(key).split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {key!r} descends into {part!r}, which is not a group of settings")
        if isinstance(value, dict):
            node[leaf] = merge_nested(node.get(leaf, {}), nest_dotted(value))
        else:
            node[leaf] = value
    return nested


def merge_nested(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``overrides`` laid over it, group by group (dicts merge, anything else replaces)."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_nested(merged[key], value)
        else:
            merged[key] = value
    return merged
