"""The ``ci`` / ``cpu`` / ``gpu`` profiles: the budgets of the notebooks at three scales.

The configs' dataclasses hold each setting's default (``TrainConfig``, ``FineTuneConfig``, ...); a profile holds
the sizes and step counts a notebook passes to them at its scale, so a CI run, a laptop run and a GPU run execute
the same code. The command line takes the dataclasses' defaults, not a profile's. The active profile comes from
an argument, else the ``SYNTHLAB_PROFILE`` environment variable, else ``gpu`` where CUDA is present and ``ci``
elsewhere.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch

from .dims import check_dim
from .dist import configure_threads

__all__ = ["PROFILES", "Profile", "get_profile", "use_profile"]


@dataclass(frozen=True)
class Profile:
    """Budgets for one scale of run. Fields ending in ``_2d``/``_3d`` are picked with :meth:`for_dim`."""

    name: str
    description: str
    # Synthesis (notebook 01): side of the example images.
    synth_size_2d: int
    synth_size_3d: int
    # Pretraining (notebook 02, 05 and `synthlab pretrain`).
    preset_2d: str
    preset_3d: str
    pretrain_size_2d: int
    pretrain_size_3d: int
    pretrain_steps: int
    pretrain_batch: int
    # Registration (notebook 03): longest side after resampling, optimiser steps, seeded deformations.
    reg_size: int
    reg_iterations: int
    reg_seeds: int
    # Few-shot segmentation (notebook 04): fine-tuning steps, shot counts, seeds, held-out volumes evaluated.
    # Below about 100 steps at these learning rates every run still predicts all background (Dice 0.000).
    seg_steps: int
    seg_batch_2d: int  # slices per step
    seg_batch_3d: int  # whole volumes per step
    seg_tune: bool  # choose each arm's learning rate on validation cases first (eval-seg --tune)
    seg_probe_steps: int  # full-batch steps of the linear probes
    seg_arms: tuple[str, ...]  # the arms notebook 04 runs live (the studies run all five)
    seg_shots: tuple[int, ...]
    seg_seeds: int
    seg_max_test: int | None
    # Notebook 05 fine-tunes four checkpoints: the shot counts and seeds it evaluates (0 seeds: not run live).
    compare_shots: tuple[int, ...]
    compare_seeds: int
    # Notebook 05's feature probe: query voxels per image pair and working side (the README's tables use 2,000
    # queries at 256 px slices in 2D, 96^3 in 3D: probe.STANDARD_SIZE).
    probe_queries: int
    probe_size_2d: int
    probe_size_3d: int

    def for_dim(self, field: str, dim: int) -> int | str:
        """Value of ``<field>_<dim>d``, e.g. ``for_dim("pretrain_size", 3)``."""
        return getattr(self, f"{field}_{check_dim(dim)}d")

    def as_dict(self) -> dict:
        return asdict(self)


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci", description="CPU minutes: every notebook end to end in CI on 2 cores",
        synth_size_2d=96, synth_size_3d=48,
        preset_2d="tiny", preset_3d="tiny", pretrain_size_2d=64, pretrain_size_3d=32,
        pretrain_steps=30, pretrain_batch=2,
        reg_size=64, reg_iterations=40, reg_seeds=1,
        seg_steps=150, seg_batch_2d=8, seg_batch_3d=2, seg_tune=False, seg_probe_steps=150,
        seg_arms=("pretrained", "scratch", "probe"),
        seg_shots=(1,), seg_seeds=3, seg_max_test=8,
        compare_shots=(1,), compare_seeds=0,  # no live comparison: one seed a network would mean nothing
        probe_queries=500, probe_size_2d=128, probe_size_3d=64,
    ),
    "cpu": Profile(
        name="cpu", description="a laptop run: tens of minutes on a few cores",
        synth_size_2d=192, synth_size_3d=96,
        preset_2d="small", preset_3d="small", pretrain_size_2d=128, pretrain_size_3d=64,
        pretrain_steps=500, pretrain_batch=2,
        reg_size=128, reg_iterations=80, reg_seeds=3,
        seg_steps=400, seg_batch_2d=8, seg_batch_3d=2, seg_tune=True, seg_probe_steps=500,
        seg_arms=("pretrained", "scratch", "probe", "probe_random", "probe_intensity"),
        seg_shots=(1, 3, 5), seg_seeds=10, seg_max_test=40,
        compare_shots=(1, 3, 5), compare_seeds=6,
        probe_queries=2000, probe_size_2d=256, probe_size_3d=96,
    ),
    "gpu": Profile(
        name="gpu", description="Colab or cluster GPU: the anatomix preset at 128^3",
        synth_size_2d=256, synth_size_3d=128,
        preset_2d="anatomix", preset_3d="anatomix", pretrain_size_2d=256, pretrain_size_3d=128,
        pretrain_steps=20000, pretrain_batch=4,
        reg_size=192, reg_iterations=150, reg_seeds=5,
        seg_steps=2000, seg_batch_2d=16, seg_batch_3d=2, seg_tune=True, seg_probe_steps=1000,
        seg_arms=("pretrained", "scratch", "probe", "probe_random", "probe_intensity"),
        seg_shots=(1, 3, 5), seg_seeds=10, seg_max_test=40,
        compare_shots=(1, 3, 5), compare_seeds=10,
        probe_queries=2000, probe_size_2d=256, probe_size_3d=96,
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
