"""The settings of the registration solver and its feature sets, and the named solver presets.

One frozen dataclass holds every choice :mod:`synthlab.register` makes, so a preset (synthlab's own, or
anatomix's published settings, each value traced in docs/fidelity.md) is data a study, a profile or the command
line can name and override.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .mind import MindConfig

__all__ = ["SOLVER_PRESETS", "RegistrationConfig", "preset_name"]


@dataclass(frozen=True)
class RegistrationConfig:
    """Settings of the two-stage solver and of the feature sets.

    Attributes:
        fine_factor: image voxels per voxel of the grid on which both stages compare features.
        search_radius: largest shift of the discrete stage, in fine voxels per axis (``(2r+1)^dim``
            candidates); 0 skips the stage.
        patch: fine voxels per control point of the discrete stage; costs are pooled over such patches.
        coupling: weights of the coupling term ``|d - v|^2`` (fine voxels^2; costs normalised to mean 1) in
            successive convex rounds; growing weights pull the discrete solution onto a smooth field.
        convex_sigma: smoothing (control points) of the field between convex rounds.
        iterations: Adam steps (cosine-decayed step size).
        learning_rate: initial Adam step, in fine voxels.
        lambda_: weight of the diffusion regulariser; features have unit energy, so one value suits all sets.
        field_sigma: smoothing (fine voxels) applied to the optimised field: a smooth parameterisation.
        intensity_sigma: window (voxels) of the local normalisation of the ``"intensity"`` set.
        network_weight: weight of the network group against MIND in ``"network+mind"``: relative to MIND after
            both are at unit energy (``scaling="unit"``), or the factor on the raw features (``"raw"``,
            anatomix's 0.1).
        scaling: ``"unit"`` (each group, then the concatenation, at unit energy: one ``lambda_`` suits every
            set) or ``"raw"`` (MIND as computed, ``network_weight`` times the raw network features, as
            anatomix concatenates them).
        normalize_cost: divide the discrete stage's costs (mean over channels) by their mean, so ``coupling``
            is in units of a typical cost; False sums over channels unnormalised (ConvexAdam, anatomix).
        cost_sigma: Gaussian smoothing (control points) of each shift's cost map before the search; anatomix
            smooths with two 3x3x3 boxes (sigma about 1.15).
        data_weight: factor on the Adam stage's feature term (anatomix: 12 times the channel mean).
        cosine_decay: decay the Adam step along a cosine; False keeps it constant (anatomix).
        window, overlap: sliding-window inference for network features (None: the whole volume at once).
        passes: how many times the whole solver runs; each later pass computes the features of the moving image
            as the earlier passes warped it (SAMConvex and IMPACT re-extract so), registers the rest, and the
            fields are composed.
        affine_iterations: Adam steps of the affine stage before the others (0: no affine stage).
        affine_learning_rate: its Adam step on the matrix's linear entries; the translation steps that times
            the grid's longest side (see :func:`synthlab.register._affine_stage`).
        network_pca: keep this many principal components of the network features, fitted on the foreground
            voxels of *both* images together (DINO-Reg; 0 keeps the channels as they are): one shared basis, the
            directions in which the two scans' features vary most (no gain measured at 3-12 of 16 channels).
        foreground: intensity in [0, 1] above which a voxel counts as foreground for ``network_pca``.
        network_refines: False keeps the network group out of the Adam stage of ``"network+mind"``: the network
            serves the affine and discrete stages, MIND alone the refinement (tried because MIND's independent
            local errors average out; on the large-motion pair it loses what the network added).
        mind: MIND-SSC settings.
    """

    fine_factor: int = 2
    search_radius: int = 3
    patch: int = 2
    coupling: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0)
    convex_sigma: float = 1.0
    iterations: int = 60
    learning_rate: float = 0.5
    lambda_: float = 0.3
    field_sigma: float = 1.0
    intensity_sigma: float = 2.0
    network_weight: float = 0.5
    scaling: str = "unit"
    normalize_cost: bool = True
    cost_sigma: float = 0.0
    data_weight: float = 1.0
    cosine_decay: bool = True
    window: int | None = 128
    overlap: float = 0.5
    passes: int = 1
    affine_iterations: int = 0
    affine_learning_rate: float = 0.01
    network_pca: int = 0
    foreground: float = 0.05
    network_refines: bool = True
    mind: MindConfig = field(default_factory=MindConfig)

    def __post_init__(self) -> None:
        for name in ("fine_factor", "patch", "passes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("search_radius", "iterations", "lambda_", "network_weight", "affine_iterations", "network_pca",
                     "cost_sigma", "data_weight", "foreground"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("learning_rate", "affine_learning_rate"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.scaling not in ("unit", "raw"):
            raise ValueError(f"scaling must be 'unit' or 'raw', got {self.scaling!r}")


# anatomix's published solver (neel-dey/anatomix, anatomix/registration/, read at commit a29b8a8; file and line
# of each value in docs/fidelity.md), mapped onto this solver: grids of 2 voxels for both stages, a search of one
# grid voxel, 28 channels (MIND-SSC + 0.1 x the raw network features) in both stages, summed unnormalised costs
# smoothed by two 3^3 boxes, six coupling rounds (their in-place update makes each round's penalty the sum of
# the earlier coefficients: given here as those sums), a 3^3 box between rounds (sigma 0.82), 80 Adam steps of
# one grid voxel at a constant rate on 12 x the channel mean, three 3^3 boxes on the field (sigma 1.41), diffusion
# weight 0.75. Not reproduced: their inverse-consistency pass after the discrete stage.
_ANATOMIX = RegistrationConfig(
    fine_factor=2, search_radius=1, patch=1, coupling=(0.003, 0.013, 0.043, 0.143, 0.443, 1.443), convex_sigma=0.82,
    iterations=80, learning_rate=1.0, lambda_=0.75, field_sigma=1.41, network_weight=0.1, scaling="raw",
    normalize_cost=False, cost_sigma=1.15, data_weight=12.0, cosine_decay=False)

# anatomix's solver for large motion: the search widened from 1 to 5 grid voxels, diffusion from 0.75 to 2 and the
# network weight from 0.1 to 0.4, chosen on the abdomen development pair (python -m synthlab.dev_pairs
# abdomen-mrct) by a grid over weight, diffusion and search for each feature set; MIND alone and network + MIND
# both do best at this search and diffusion (docs/experiments.md, "Best against best"). Slower: (2*5+1)^3 = 1331
# shifts instead of 27.
SOLVER_PRESETS: dict[str, RegistrationConfig] = {
    "synthlab": RegistrationConfig(),
    "anatomix": _ANATOMIX,
    "anatomix-wide": replace(_ANATOMIX, search_radius=5, lambda_=2.0, network_weight=0.4),
}


def preset_name(stored: Mapping[str, Any]) -> str:
    """The preset a results file's ``registration_config`` was made with, or ``"custom"``.

    Compares the settings the file holds (files written before a setting existed lack it) except ``iterations``,
    which a notebook profile may set over any preset.
    """
    for name, preset in SOLVER_PRESETS.items():
        expected = json.loads(json.dumps(asdict(preset)))  # as a results file stores it: tuples become lists
        if all(stored[key] == value for key, value in expected.items() if key in stored and key != "iterations"):
            return name
    return "custom"
