"""The ``ci`` / ``cpu`` / ``gpu`` profiles: one layer of overrides over the configs' defaults, at three scales.

A setting is resolved in layers, as nanoGPT's configurator lays a config file and then flags over the defaults
of ``train.py``: the default written in its dataclass (or function signature), then the profile's override, then
what the caller (a notebook cell, a flag) states. A profile states only the budgets it changes: sizes, step
counts, seeds. So a CI run, a laptop run and a GPU run execute the same code, and each default is written once.

``Profile.overrides`` is keyed by the name of what it configures (``"TrainConfig"``, ``"FineTuneConfig"``,
``"evaluate_segmentation"``, ...); a value that differs between 2D and 3D is a :class:`PerDim`. The command line
applies a profile only when asked (``--profile cpu``); the notebooks apply the active one: an argument, else
``$SYNTHLAB_PROFILE``, else ``gpu`` where CUDA is present and ``ci`` elsewhere.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, is_dataclass
from typing import Any

import torch

from .configs import check_field_types, config_from_dict, plain
from .dims import check_dim
from .dist import configure_threads

__all__ = ["PROFILES", "PerDim", "Profile", "get_profile", "use_profile"]


@dataclass(frozen=True)
class PerDim:
    """A profile value that depends on the spatial dimension: ``PerDim(two=64, three=32)``."""

    two: Any
    three: Any

    def pick(self, dim: int) -> Any:
        return self.two if check_dim(dim) == 2 else self.three


def _name(target: Any) -> str:
    """The key a profile's overrides use for ``target``: a config class, a config instance, a function or the key."""
    if isinstance(target, str):
        return target
    if is_dataclass(target) and not isinstance(target, type):
        target = type(target)
    return target.__name__


def _names_of(target: Any) -> set[str]:
    """What ``target`` can be given: a dataclass's fields, a function's parameters."""
    if is_dataclass(target):
        return {item.name for item in dataclasses.fields(target)}
    return set(inspect.signature(target).parameters)


def _default(target: Any, name: str) -> Any:
    """The value ``target`` gives ``name`` when nobody overrides it."""
    if is_dataclass(target):
        if not isinstance(target, type):
            return getattr(target, name)
        item = {item.name: item for item in dataclasses.fields(target)}[name]
        if item.default_factory is not dataclasses.MISSING:
            return item.default_factory()
        if item.default is dataclasses.MISSING:
            raise ValueError(f"{target.__name__}.{name} has no default and the profile sets none")
        return item.default
    parameter = inspect.signature(target).parameters[name]
    if parameter.default is inspect.Parameter.empty:
        raise ValueError(f"{target.__name__}({name}) has no default and the profile sets none")
    return parameter.default


@dataclass(frozen=True)
class Profile:
    """One scale of run: overrides of the configs' defaults, and the budgets only notebooks have."""

    name: str
    description: str
    overrides: Mapping[str, Mapping[str, Any]]  # what it configures -> field -> value (a PerDim where 2D/3D differ)
    example_size: PerDim  # notebook 01: side of the example images and volumes
    compare_shots: tuple[int, ...]  # notebook 05 fine-tunes four networks at these shot counts,
    compare_seeds: int  # over this many seeds (0: not run live)

    def overrides_for(self, target: Any, dim: int) -> dict[str, Any]:
        """This profile's values for ``target`` (a config class or instance, or a function) in ``dim`` D."""
        values = self.overrides.get(_name(target), {})
        return {key: value.pick(dim) if isinstance(value, PerDim) else value for key, value in values.items()}

    def preset(self, dim: int) -> str:
        """The network preset of this scale: what ``TrainConfig`` trains and a random baseline builds by default."""
        return str(self.overrides_for("TrainConfig", dim)["preset"])

    def setting(self, target: Any, name: str, dim: int) -> Any:
        """One resolved value: the profile's override, else ``target``'s own default."""
        if name not in _names_of(target):
            raise ValueError(f"{_name(target)} has no setting {name!r}")
        return self.overrides_for(target, dim).get(name, _default(target, name))

    def configure(self, base: Any, dim: int, **explicit: Any) -> Any:
        """``base`` (a config class, or an instance such as a solver preset) with this profile's overrides and
        then ``explicit`` laid over it, checked field by field; ``dim`` is filled in where the config has one."""
        values = {**self.overrides_for(base, dim), **explicit}
        if "dim" in _names_of(base):
            values.setdefault("dim", dim)
        if isinstance(base, type):
            return config_from_dict(base, values)
        check_field_types(type(base), values)
        return dataclasses.replace(base, **values)

    def arguments(self, function: Callable[..., Any], dim: int, **explicit: Any) -> dict[str, Any]:
        """Keyword arguments for ``function``: this profile's overrides, then ``explicit`` (``dim`` filled in)."""
        values = {**self.overrides_for(function, dim), **explicit}
        names = _names_of(function)
        if unknown := sorted(set(values) - names):
            raise ValueError(f"{_name(function)} takes no {', '.join(unknown)}")
        if "dim" in names:
            values.setdefault("dim", dim)
        return values

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (a :class:`PerDim` as ``{"2d": ..., "3d": ...}``)."""
        def ready(value: Any) -> Any:
            if isinstance(value, PerDim):
                return {"2d": plain(value.two), "3d": plain(value.three)}
            if isinstance(value, Mapping):
                return {key: ready(item) for key, item in value.items()}
            return plain(value)
        return {item.name: ready(getattr(self, item.name)) for item in dataclasses.fields(self)}


# What each profile changes; everything else keeps its default (FineTuneConfig.batch_size None: 16 slices in 2D,
# two volumes in 3D; evaluate_segmentation's 3 seeds; CorrespondenceConfig.for_dim's standard sizes, ...).
# TrainConfig has no preset of its own: the active profile's is its default.
PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci", description="CPU minutes: every notebook end to end in CI on 2 cores",
        overrides={
            "TrainConfig": {"preset": "tiny", "size": PerDim(64, 32), "steps": 30},
            # Below about 100 steps at these learning rates every fine-tuning run predicts all background.
            "FineTuneConfig": {"steps": 150, "batch_size": PerDim(8, None), "probe_steps": 150},
            "evaluate_segmentation": {"shots": (1,), "max_test": 8, "arms": ("pretrained", "scratch", "probe")},
            "RegistrationConfig": {"iterations": 40},
            "evaluate_registration": {"seeds": 1, "size": 64},
            "CorrespondenceConfig": {"queries": 500, "size": PerDim(128, 64)},
        },
        example_size=PerDim(96, 48),
        compare_shots=(1,), compare_seeds=0,  # no live comparison: one seed a network would mean nothing
    ),
    "cpu": Profile(
        name="cpu", description="a laptop run: tens of minutes on a few cores",
        overrides={
            "TrainConfig": {"preset": "small", "size": PerDim(128, 64), "steps": 500},
            "FineTuneConfig": {"steps": 400, "batch_size": PerDim(8, None)},
            "evaluate_segmentation": {"tune": True, "seeds": 10, "max_test": 40},
            "RegistrationConfig": {"iterations": 80},
            "evaluate_registration": {"size": 128},
        },
        example_size=PerDim(192, 96),
        compare_shots=(1, 3, 5), compare_seeds=6,
    ),
    "gpu": Profile(
        name="gpu", description="Colab or cluster GPU: the anatomix preset at 128^3",
        overrides={
            "TrainConfig": {"preset": "anatomix", "size": PerDim(256, 128), "steps": 20000, "batch_size": 4},
            "FineTuneConfig": {"steps": 2000, "probe_steps": 1000},
            "evaluate_segmentation": {"tune": True, "seeds": 10, "max_test": 40},
            "RegistrationConfig": {"iterations": 150},
            "evaluate_registration": {"seeds": 5, "size": 192},
        },
        example_size=PerDim(256, 128),
        compare_shots=(1, 3, 5), compare_seeds=10,
    ),
}


def get_profile(name: str | None = None) -> Profile:
    """The named profile, else ``$SYNTHLAB_PROFILE``, else ``gpu`` where CUDA is available (a Colab GPU session)
    and ``ci`` elsewhere; an unknown name raises a ValueError."""
    name = name or os.environ.get("SYNTHLAB_PROFILE") or ("gpu" if torch.cuda.is_available() else "ci")
    if name not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {name!r} (check SYNTHLAB_PROFILE)")
    return PROFILES[name]


def use_profile(name: str | None = None) -> Profile:
    """:func:`get_profile`, and torch's CPU threads set as the command line sets them (half the cores, at most 4;
    ``$SYNTHLAB_THREADS`` overrides): a notebook kernel beside another busy process must not spin two threads
    against it (two notebooks of `make run-all` beside one job ran 9x slower with torch's default)."""
    configure_threads()
    return get_profile(name)
