"""The configuration of one pretraining run: every ``synthlab pretrain`` flag, its default and its check.

:class:`TrainConfig` is resolved once, here: the synthetic settings become a :class:`~synthlab.synth.SynthConfig`
and the objective's settings its typed config, and unset optimiser fields take the objective's authors' values.
The loop that runs it is :mod:`synthlab.train`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .configs import config_from_dict, setting
from .data import resolve_data
from .dims import DIMS, check_dim
from .losses import OBJECTIVES
from .losses.base import SCHEDULES
from .nets import PRESETS
from .profiles import get_profile
from .runs import PATH_FIELDS, absolute_path
from .synth import SynthConfig
from .synth.config import PROCEDURAL

__all__ = ["ADAMW_BETAS", "INITS", "TrainConfig"]

ADAMW_BETAS = (0.9, 0.999)  # AdamW's betas in all three papers' code
INITS = ("torch", "kaiming")


@dataclass
class TrainConfig:
    """One pretraining run. Every field but ``synth`` and ``objective_config`` is a ``synthlab pretrain`` flag
    (``batch_size`` is ``--batch-size``), generated from this class: each default is written here, once.

    ``synth`` and ``objective_config`` are resolved once, when the config is made: settings given as a dict (from
    ``--synth FILE``, ``--synth-set KEY=VALUE``, a recipe or a checkpoint) become the engine's
    :class:`~synthlab.synth.SynthConfig` and the objective's config dataclass, checked field by field, and the
    run keeps those typed objects. ``data`` and ``labels`` are made absolute and ``preset`` is taken from the
    active profile when unset, so the config a checkpoint stores says exactly what ran.
    """

    objective: str = setting(help="pretraining objective", choices=tuple(OBJECTIVES))
    out: str | Path = setting(help="run folder; holds checkpoint.pt, log.csv and config.json")
    dim: int = setting(3, "spatial dimensions of the network and the data", DIMS)
    size: int = setting(64, "side of the (square or cubic) training crops in voxels")
    steps: int = setting(100, "optimiser steps; the learning-rate schedule spans exactly these")
    data: str | Path | None = setting(None, "real unlabeled NIfTI volumes (a file, a folder or an MSD folder; a "
                                            "path or a name under $SYNTHLAB_DATA; icbm152/t1.nii.gz is always "
                                            "there) instead of synthetic data: VoCo's setting")
    labels: str | Path | None = setting(None, "integer label maps (a file or folder, a path or a data-set name) for "
                                              "the synthetic shape bank; unset: procedural shapes")
    resume: bool = setting(False, "continue OUT/checkpoint.pt exactly; every field that says what is computed "
                                  "must match")
    preset: str | None = setting(None, "network preset; unset: the active profile's", tuple(PRESETS))
    batch_size: int = setting(2, "samples per step and per process")
    seed: int = setting(0, "seeds initialisation and process r's data and loss draws (seed + r)")
    device: str = setting("auto", "where to train: cpu, cuda, or auto (CUDA when available)",
                          ("auto", "cpu", "cuda"))
    compile: bool = setting(False, "torch.compile the network")
    channels_last: bool = setting(False, "convolutions in channels-last memory layout (tensor cores prefer it)")
    checkpoint_every: int = setting(50, "steps between checkpoints (one is always written at the end)")
    log_every: int = setting(1, "steps between rows of log.csv")
    # The optimiser: unset fields take the objective's own (its authors') settings, losses.*.optim.
    lr: float | None = setting(None, "peak learning rate; unset: the objective's (" + ", ".join(
        f"{name} {objective.optim.lr:g}" for name, (objective, _) in OBJECTIVES.items()) + ")")
    weight_decay: float | None = setting(None, "AdamW weight decay; unset: the objective's")
    amsgrad: bool | None = setting(None, "AdamW's AMSGrad variant (VoCo); unset: the objective's")
    grad_clip: float | None = setting(None, "clip the global gradient norm to this, 0 for no clipping; unset: the "
                                            "objective's")
    schedule: str | None = setting(None, "learning-rate schedule: cosine (after a warm-up), steps (anatomix's five "
                                         "stages) or constant; unset: the objective's", SCHEDULES)
    warmup_fraction: float | None = setting(None, "share of the steps with a linear warm-up (cosine); unset: the "
                                                  "objective's")
    min_lr_fraction: float | None = setting(None, "the cosine ends at lr * this; unset: the objective's")
    init: str | None = setting(None, "initialisation: torch (PyTorch's) or kaiming (anatomix's); unset: the "
                                     "objective's", INITS)
    probe_every: int = setting(0, "steps between feature probes written to log.csv (0: none)")
    synth: SynthConfig | dict[str, Any] | None = None
    objective_config: Any = None

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {list(OBJECTIVES)}, got {self.objective!r}")
        check_dim(self.dim)
        objective_cls, config_cls = OBJECTIVES[self.objective]
        for key, value in dataclasses.asdict(objective_cls.optim).items():  # unset: the authors' setting
            if getattr(self, key) is None:
                setattr(self, key, value)
        for name in ("size", "steps", "batch_size", "checkpoint_every", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if not 0 <= self.warmup_fraction < 1 or not 0 <= self.min_lr_fraction <= 1:
            raise ValueError("warmup_fraction must lie in [0, 1) and min_lr_fraction in [0, 1]")
        if self.schedule not in SCHEDULES or self.init not in INITS:
            raise ValueError(f"schedule must be one of {SCHEDULES} and init one of {INITS}, got {self.schedule!r} "
                             f"and {self.init!r}")
        if self.grad_clip is not None and not self.grad_clip >= 0:
            raise ValueError(f"grad_clip must be >= 0 (0: no clipping), got {self.grad_clip!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {self.device!r}")
        if self.data is not None and self.labels is not None:
            raise ValueError("data and labels exclude each other: real volumes carry no label maps")
        if not 0 <= int(self.seed) < 2**63:
            raise ValueError(f"seed must lie in [0, 2**63), got {self.seed!r}")
        if int(self.probe_every) < 0:
            raise ValueError(f"probe_every must be >= 0, got {self.probe_every!r}")
        for key in PATH_FIELDS:  # a path or a data-set name, absolute: `vols` and `./vols/` are one folder
            if getattr(self, key) is not None:
                setattr(self, key, absolute_path(resolve_data(getattr(self, key))))
        self.preset = self.preset or get_profile().preset(self.dim)
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        if not isinstance(self.objective_config, config_cls):
            self.objective_config = config_from_dict(config_cls, dict(self.objective_config or {}))
        if self.data is not None:
            if self.synth:
                raise ValueError("synth: settings of the synthetic engine do not apply to real volumes (--data)")
            self.synth = None
        else:
            run = (self.dim, self.size, objective_cls.n_views, self.labels or PROCEDURAL)
            if isinstance(self.synth, SynthConfig):  # already built: it must be this run's
                SynthConfig.run_fields(*run, {k: getattr(self.synth, k) for k in SynthConfig.RUN_FIELDS})
            else:
                self.synth = SynthConfig.for_run(*run, self.synth)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (paths as strings, the synthetic and objective configs as nested dicts)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["synth"] = self.synth.as_dict() if self.synth is not None else None
        out["objective_config"] = dataclasses.asdict(self.objective_config)
        return {k: str(v) if isinstance(v, Path) else v for k, v in out.items()}
