"""Pretraining objectives behind one interface: anatomix's ``supcon``, ``voco``, RaSD's ``rasd``,
and synthlab's own ``voxnce`` (same-voxel positives across views).

``build_objective(name, net, dim, config)`` returns an :class:`Objective` whose
``forward(net, views, labels, generator)`` gives a :class:`LossOutput`; ``config`` is the objective's config
dataclass (or leave it out and give some of its fields as ``settings``).
"""

from __future__ import annotations

from typing import Any

from ..configs import config_from_dict
from ..nets import UNet
from .base import LossOutput, Objective
from .rasd import RaSDConfig, RaSDObjective
from .supcon import SupConConfig, SupConObjective
from .voco import VoCoConfig, VoCoObjective
from .voxnce import VoxNCEConfig, VoxNCEObjective

__all__ = ["OBJECTIVES", "LossOutput", "Objective", "build_objective"]

# name -> (objective class, its config dataclass)
OBJECTIVES: dict[str, tuple[type[Objective], type]] = {
    "supcon": (SupConObjective, SupConConfig),
    "voco": (VoCoObjective, VoCoConfig),
    "rasd": (RaSDObjective, RaSDConfig),
    "voxnce": (VoxNCEObjective, VoxNCEConfig),  # synthlab's own fourth arm, not from the papers
}


def build_objective(name: str, net: UNet, dim: int, config: Any = None, **settings: Any) -> Objective:
    """The objective ``name`` for ``net`` (which sizes its heads); unknown names or settings: ValueError."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of {sorted(OBJECTIVES)}")
    objective_cls, config_cls = OBJECTIVES[name]
    if config is None:
        config = config_from_dict(config_cls, settings)
    elif settings or not isinstance(config, config_cls):
        raise ValueError(f"objective {name!r} takes a {config_cls.__name__} or its fields as settings, not both")
    return objective_cls(net, dim, config)
