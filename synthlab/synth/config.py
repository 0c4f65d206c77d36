"""Typed configuration of the synthesis engine: every randomisation, its probability and its range.

Lengths of *smooth fields* (label fields, deformations, texture, bias, the foreground sphere) are relative to
the output volume, so a 48^3 sample looks like a shrunken 128^3 sample: a field drawn on a coarse grid of side
``g`` varies over ``side / g`` voxels, and radii or offsets are fractions of the side. Image-resolution
effects (blur, low resolution, Gibbs ringing, ghost shifts) are in voxels. Every default names its source in
the comment (anatomix step1/step2 and online augmentation, RaSD's generator; docs/fidelity.md).

A range ``(lo, hi)`` means a uniform draw in ``[lo, hi]``; ``lo == hi`` fixes the value.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..configs import config_from_dict, merge_nested, nest_dotted, plain
from ..dims import check_dim

__all__ = [
    "AppearanceConfig",
    "ForegroundConfig",
    "ProceduralConfig",
    "ShapeBankConfig",
    "SpatialAugConfig",
    "SynthConfig",
    "merge_nested",
    "nest_dotted",
]

Range = tuple[float, float]
IntRange = tuple[int, int]


# --- Validation -----------------------------------------------------------------------------------------


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} is a probability and must lie in [0, 1], got {value!r}")


def _check_range(name: str, value: tuple, low: float | None = None, high: float | None = None) -> None:
    if len(value) != 2:
        raise ValueError(f"{name} must be a (low, high) pair, got {value!r}")
    lo, hi = value
    if lo > hi:
        raise ValueError(f"{name} is inverted: low {lo!r} > high {hi!r}")
    if low is not None and lo < low:
        raise ValueError(f"{name} must not go below {low}, got {value!r}")
    if high is not None and hi > high:
        raise ValueError(f"{name} must not exceed {high}, got {value!r}")


def _check_positive(name: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def _check_shear(name: str, value: float) -> None:
    # Below 0.5 every row of I + shear is diagonally dominant, so the affine stays invertible.
    if not 0.0 <= value < 0.5:
        raise ValueError(f"{name} must lie in [0, 0.5) so that transforms stay invertible, got {value!r}")


def _check_grids(name: str, grids: tuple[int, ...]) -> None:
    if len(grids) == 0 or any(int(g) < 2 for g in grids):
        raise ValueError(f"{name} must list coarse grid sides >= 2, got {grids!r}")


@dataclass
class ForegroundConfig:
    """Deformed-sphere foreground mask and envelope ring (anatomix step1), applied after the label source.

    Inside the mask labels shift by +1 (so uncovered foreground is its own label 1), outside becomes 0; the
    envelope paints a shell around the mask boundary with a new label.
    """

    p: float = 2 / 3  # anatomix: p ~ 2/3
    radius: Range = (0.375, 0.555)  # fraction of the shortest side; anatomix U{48..71} voxels at 128
    centre_offset: float = 0.25  # centre moves by U(-x, x) * side; anatomix U{-32..31} at 128
    deform_std: Range = (0.008, 0.04)  # displacement SD, fraction of the side; anatomix U[1, 5] voxels at 128
    deform_grids: tuple[int, ...] = (16, 8, 4)  # anatomix Perlin scales 8/16/32 voxels at 128
    envelope_p: float = 0.5  # given a mask, so 1/3 of all samples (anatomix ~1/3)
    envelope_width: Range = (2.0, 4.0)  # shell half-width in voxels; anatomix ball radius 2-4

    def validate(self, prefix: str = "foreground") -> None:
        _check_probability(f"{prefix}.p", self.p)
        _check_range(f"{prefix}.radius", self.radius, low=0.0)
        _check_positive(f"{prefix}.centre_offset", self.centre_offset, allow_zero=True)
        _check_range(f"{prefix}.deform_std", self.deform_std, low=0.0)
        _check_grids(f"{prefix}.deform_grids", self.deform_grids)
        _check_probability(f"{prefix}.envelope_p", self.envelope_p)
        _check_range(f"{prefix}.envelope_width", self.envelope_width, low=0.0)


@dataclass
class ProceduralConfig:
    """RaSD-style anatomy: the argmax over K warped smooth random fields gives K irregular regions."""

    n_labels: IntRange = (6, 12)  # RaSD uses side/16, i.e. 8 at 128^3; a range adds variety
    field_grids: tuple[int, ...] = (8, 4)  # coarse grids of each label field; RaSD: side/16 and side/32
    field_std: Range = (0.0, 1.0)  # SD of each octave, drawn per label and octave; RaSD U(0, 1)
    deform_grids: tuple[int, ...] = (16, 8, 4)  # RaSD: grids 16^3, 8^3, 4^3 at 128
    deform_std: Range = (0.0, 1 / 16)  # displacement SD, fraction of the side; RaSD U(0, side/16) voxels
    work_factor: int = 4  # fields and warps are built at size / work_factor, upsampled before the argmax
    foreground: ForegroundConfig = field(default_factory=lambda: ForegroundConfig(p=0.0))  # RaSD fills space

    def validate(self, prefix: str = "procedural") -> None:
        _check_range(f"{prefix}.n_labels", self.n_labels, low=2)
        _check_grids(f"{prefix}.field_grids", self.field_grids)
        _check_range(f"{prefix}.field_std", self.field_std, low=0.0)
        _check_grids(f"{prefix}.deform_grids", self.deform_grids)
        _check_range(f"{prefix}.deform_std", self.deform_std, low=0.0)
        if int(self.work_factor) < 1:
            raise ValueError(f"{prefix}.work_factor must be >= 1, got {self.work_factor!r}")
        self.foreground.validate(f"{prefix}.foreground")


@dataclass
class ShapeBankConfig:
    """anatomix-style maps: real shapes, randomly transformed, painted in random order as labels 1..n."""

    n_shapes: IntRange = (20, 40)  # anatomix 20-39 templates per map
    # At load, each map is zoomed so its labelled region's longest side spans this fraction of the output's
    # longest side (shapes keep their relative sizes); None keeps the maps' own voxel size. anatomix puts
    # ~500 mm TotalSegmentator bodies into 128^3 at 1.5 mm, a fraction of ~2.6.
    map_fraction: float | None = 2.0
    max_side: float = 0.75  # fraction of the output side; longer shapes shrink to fit
    min_voxels: int = 8  # shapes smaller than this (after resampling) are dropped at load
    scale: Range = (0.5, 1.5)  # per-axis zoom; anatomix U[0.5, 1.5]
    rotation: float = 180.0  # degrees, U(-x, x) per Euler angle; anatomix +-180
    shear: float = 0.2  # off-diagonal shear U(-x, x); anatomix uses 0.5, which can flatten shapes to sheets
    flip_p: float = 0.5  # per axis
    spread: float = 0.25  # shape centres move by U(-x, x) * side; anatomix's +-5 voxels keep them central
    foreground: ForegroundConfig = field(default_factory=ForegroundConfig)

    def validate(self, prefix: str = "shape_bank") -> None:
        _check_range(f"{prefix}.n_shapes", self.n_shapes, low=1)
        if not 0.0 < self.max_side <= 1.0:
            raise ValueError(f"{prefix}.max_side must lie in (0, 1], got {self.max_side!r}")
        if self.map_fraction is not None:
            _check_positive(f"{prefix}.map_fraction", self.map_fraction)
        _check_positive(f"{prefix}.min_voxels", self.min_voxels, allow_zero=True)
        _check_range(f"{prefix}.scale", self.scale)
        if self.scale[0] <= 0:
            raise ValueError(f"{prefix}.scale must be positive, got {self.scale!r}")
        _check_positive(f"{prefix}.rotation", self.rotation, allow_zero=True)
        _check_shear(f"{prefix}.shear", self.shear)
        _check_probability(f"{prefix}.flip_p", self.flip_p)
        _check_positive(f"{prefix}.spread", self.spread, allow_zero=True)
        self.foreground.validate(f"{prefix}.foreground")


@dataclass
class SpatialAugConfig:
    """Geometric augmentation of the label map, shared by every view (anatomix online TorchIO transforms)."""

    flip_p: float = 0.5  # per axis
    affine_p: float = 0.5  # anatomix RandomAffine p 0.5
    scale: Range = (0.6, 1.4)  # anatomix scales 0.4
    rotation: float = 45.0  # degrees, U(-x, x) per angle; anatomix 45
    shear: float = 0.0  # off-diagonal shear U(-x, x)
    translation: float = 0.0  # U(-x, x) * side
    deform_p: float = 0.0  # smooth dense deformation (off by default: the label sources already deform)
    deform_std: Range = (0.0, 0.02)  # displacement SD, fraction of the side
    deform_grids: tuple[int, ...] = (8, 4)

    def validate(self, prefix: str = "spatial") -> None:
        _check_probability(f"{prefix}.flip_p", self.flip_p)
        _check_probability(f"{prefix}.affine_p", self.affine_p)
        _check_range(f"{prefix}.scale", self.scale)
        if self.scale[0] <= 0:
            raise ValueError(f"{prefix}.scale must be positive, got {self.scale!r}")
        _check_positive(f"{prefix}.rotation", self.rotation, allow_zero=True)
        _check_shear(f"{prefix}.shear", self.shear)
        _check_positive(f"{prefix}.translation", self.translation, allow_zero=True)
        _check_probability(f"{prefix}.deform_p", self.deform_p)
        _check_range(f"{prefix}.deform_std", self.deform_std, low=0.0)
        _check_grids(f"{prefix}.deform_grids", self.deform_grids)


@dataclass
class AppearanceConfig:
    """Intensity model and artefacts of one rendered view; every view draws its own parameters.

    Effects run in this order: per-label Gaussian intensities, multiplicative texture and bias, low
    resolution, blur and the k-space artefacts (Gibbs ringing, spike, motion ghosts) in one FFT, additive
    noise, min-max to [0, 1], gamma.
    """

    # Per-label Gaussian intensities (anatomix: mean U[25, 255], SD U[5, 20] on a 0-255 scale).
    mean: Range = (0.1, 1.0)
    std: Range = (0.02, 0.08)
    background_zero_p: float = 0.25  # label 0 renders as exactly 0 (anatomix p 0.25)
    # Multiplicative texture x * (1 + n), n multi-octave noise (anatomix: 0.02 * SD U[0, 5] Perlin, 4-32 vox).
    texture_p: float = 1.0
    texture_std: Range = (0.0, 0.1)
    texture_grids: tuple[int, ...] = (32, 16, 8, 4)
    # Bias field exp(b), b smooth (anatomix RandBiasField p 0.98; RaSD exp of smooth noise).
    bias_p: float = 0.98
    bias_std: Range = (0.0, 0.3)  # SD of the log-gain b
    bias_grid: int = 4
    # Gaussian blur (RaSD sigma U(0, 1); anatomix RandGaussianSmooth p 0.5).
    blur_p: float = 0.5
    blur_sigma: Range = (0.0, 1.0)  # voxels
    # Low resolution: downsample along random axes, upsample back (anatomix RandSimulateLowResolution p 1/3).
    lowres_p: float = 1 / 3
    lowres_zoom: Range = (0.5, 1.0)  # kept fraction of the resolution per chosen axis (anatomix zoom 0.5-1)
    lowres_axis_p: float = 0.5  # each axis is chosen with this probability (at least one is)
    # Gibbs ringing: k-space cut to a box keeping (1 - alpha) of each axis (anatomix RandGibbsNoise p 0.5).
    gibbs_p: float = 0.5
    gibbs_alpha: Range = (0.0, 1 / 3)
    # k-space spike: one frequency boosted, giving stripes of amplitude 2 * strength * mean (anatomix p 0.2).
    spike_p: float = 0.2
    spike_strength: Range = (0.05, 0.3)
    # Motion ghosting: every period-th k-space line along one axis is phase-shifted as if the object moved.
    ghost_p: float = 1 / 3  # anatomix online RandomMotion p 1/3
    ghost_shift: Range = (2.0, 8.0)  # voxels
    ghost_period: IntRange = (2, 4)  # lines
    # Additive Gaussian noise, SD relative to the image maximum (RaSD U(0.05, 0.4); anatomix online p 1/3).
    noise_p: float = 0.5
    noise_std: Range = (0.0, 0.1)
    # Gamma on the [0, 1] image, drawn log-uniformly (anatomix RandAdjustContrast p 0.5, gamma 0.5-2).
    gamma_p: float = 0.5
    gamma: Range = (0.5, 2.0)
    # Texture and bias are built at size / work_factor and upsampled once.
    work_factor: int = 2

    def validate(self, prefix: str = "appearance") -> None:
        _check_range(f"{prefix}.mean", self.mean)
        _check_range(f"{prefix}.std", self.std, low=0.0)
        for name in ("background_zero_p", "texture_p", "bias_p", "blur_p", "lowres_p", "lowres_axis_p",
                     "gibbs_p", "spike_p", "ghost_p", "noise_p", "gamma_p"):
            _check_probability(f"{prefix}.{name}", getattr(self, name))
        _check_range(f"{prefix}.texture_std", self.texture_std, low=0.0)
        _check_grids(f"{prefix}.texture_grids", self.texture_grids)
        _check_range(f"{prefix}.bias_std", self.bias_std, low=0.0)
        _check_grids(f"{prefix}.bias_grid", (self.bias_grid,))
        _check_range(f"{prefix}.blur_sigma", self.blur_sigma, low=0.0)
        _check_range(f"{prefix}.lowres_zoom", self.lowres_zoom, low=1e-3, high=1.0)
        _check_range(f"{prefix}.gibbs_alpha", self.gibbs_alpha, low=0.0, high=0.95)
        _check_range(f"{prefix}.spike_strength", self.spike_strength, low=0.0)
        _check_range(f"{prefix}.ghost_shift", self.ghost_shift)
        _check_range(f"{prefix}.ghost_period", self.ghost_period, low=2)
        _check_range(f"{prefix}.noise_std", self.noise_std, low=0.0)
        _check_range(f"{prefix}.gamma", self.gamma, low=1e-3)
        if int(self.work_factor) < 1:
            raise ValueError(f"{prefix}.work_factor must be >= 1, got {self.work_factor!r}")


PROCEDURAL = "procedural"


@dataclass
class SynthConfig:
    """Everything the engine draws: the label source, the shared geometry and the per-view appearance.

    Args:
        dim: 2 or 3 spatial dimensions.
        size: output side(s); an int is expanded to ``(size,) * dim``.
        n_views: independent renderings of each label map (2 for contrastive pretraining).
        labels: ``"procedural"`` or the path of a folder of integer NIfTI label maps (or of one such file).
    """

    dim: int = 3
    size: int | tuple[int, ...] = 128
    n_views: int = 2
    labels: str | Path = PROCEDURAL
    procedural: ProceduralConfig = field(default_factory=ProceduralConfig)
    shape_bank: ShapeBankConfig = field(default_factory=ShapeBankConfig)
    spatial: SpatialAugConfig = field(default_factory=SpatialAugConfig)
    appearance: AppearanceConfig = field(default_factory=AppearanceConfig)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def uses_shape_bank(self) -> bool:
        return str(self.labels) != PROCEDURAL

    def validate(self) -> None:
        """Raise ValueError naming the first bad field (FileNotFoundError for a missing label path).

        An int ``size`` is expanded to ``(size,) * dim`` here, so a size set after construction works too.
        """
        check_dim(self.dim)
        if isinstance(self.size, int) and not isinstance(self.size, bool):
            self.size = (self.size,) * self.dim
        elif isinstance(self.size, list):
            self.size = tuple(self.size)
        if not isinstance(self.size, tuple) or len(self.size) != self.dim:
            raise ValueError(f"size must be an int or {self.dim} ints for dim={self.dim}, got {self.size!r}")
        if any(not isinstance(s, int) or s < 4 for s in self.size):
            raise ValueError(f"size entries must be ints >= 4, got {self.size!r}")
        if not isinstance(self.n_views, int) or self.n_views < 1:
            raise ValueError(f"n_views must be an int >= 1, got {self.n_views!r}")
        if self.uses_shape_bank and not Path(self.labels).exists():
            raise FileNotFoundError(f"labels: no such folder or file: {self.labels}")
        self.procedural.validate()
        self.shape_bank.validate()
        self.spatial.validate()
        self.appearance.validate()

    # The fields a training run owns: its dim, size and label source, and the views its objective uses.
    RUN_FIELDS = ("dim", "size", "n_views", "labels")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SynthConfig:
        """Build a config from plain values (``as_dict`` output, a JSON file, partial groups); unknown or badly
        typed fields are a ValueError naming them."""
        return config_from_dict(cls, values)

    @classmethod
    def for_run(cls, dim: int, size: int | tuple[int, ...], n_views: int, labels: str | Path = PROCEDURAL,
                settings: dict[str, Any] | None = None) -> SynthConfig:
        """The engine's config of a training run: its dim, size, views and label source, with ``settings`` (nested
        groups or dotted keys such as ``"appearance.noise_p"``) laid over the defaults, built in one step.

        ``settings`` may repeat a run field (a saved full config does) but not contradict it.
        """
        settings = nest_dotted(settings or {})
        run = cls.run_fields(dim, size, n_views, labels, settings)
        return cls.from_dict({**settings, **run})

    @classmethod
    def run_fields(cls, dim: int, size: int | tuple[int, ...], n_views: int, labels: str | Path,
                   given: dict[str, Any] | None = None) -> dict[str, Any]:
        """The run's own fields (:attr:`RUN_FIELDS`); a ValueError names the first one ``given`` contradicts."""
        run = {"dim": dim, "size": (size,) * dim if isinstance(size, int) else tuple(size), "n_views": n_views,
               "labels": str(labels)}
        for key, value in (given or {}).items():
            if key in run and plain(value) != plain(run[key]):
                raise ValueError(f"synth: {key!r} is set by the run (--dim, --size, --labels, the objective), "
                                 f"not by synth settings ({key}={value!r}, the run has {run[key]!r})")
        return run

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types (tuples as lists, paths as strings); :meth:`from_dict` rebuilds the config."""
        return plain(asdict(self))

    def shape_bank_sides(self) -> tuple[int, float | None]:
        """``(max_side, span)`` in voxels for :meth:`ShapeBank.from_path` at this output size."""
        longest, bank = max(self.size), self.shape_bank
        span = None if bank.map_fraction is None else bank.map_fraction * longest
        return max(2, math.floor(bank.max_side * longest)), span
