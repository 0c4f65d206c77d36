"""Development pairs for registration where MIND struggles, built from the one abdominal scan at hand.

anatomix's registration claim is about hard pairs: inter-subject, inter-modality, large motion (Learn2Reg
AbdomenMRCT). The data here holds one abdominal CT with its organ labels, so ``abdomen-mrct`` makes the other side
of such pairs from it: its label map strongly deformed (a rotation, a zoom and a smooth field moving organs by
about a centimetre), rendered with an MR-like appearance (every tissue its own random intensity, so their order
differs from CT's, plus bias, blur and noise), then stored as another scanner would store it (the first two
axes flipped, a cut field of view, another world origin). Each such "MR" is a labelled case beside the real CT
in an MSD-layout folder, so ``eval-reg --data abdomen-mrct --fixed ct`` scores every feature set on it.

They are for developing and tuning; a real MR/CT pair of other subjects is the check, never tuned on.

    python -m synthlab.dev_pairs abdomen-mrct            # writes <cache>/abdomen-mrct (found by --data)
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .cli import USER_ERRORS, Parser, input_error
from .data import Volume, generated_data_folder, load_nifti, reorient, resolve_data, save_nifti
from .draw import uniform
from .eval_reg import ProtocolConfig, random_deformation
from .spatial import SpatialParams, affine_matrix, apply_spatial
from .synth.appearance import render, sample_appearance
from .synth.config import AppearanceConfig

__all__ = ["ORGANS", "AbdomenPairConfig", "abdomen_pairs", "make_abdomen_pair", "write_abdomen_folder"]

# TotalSegmentator's ids of the seven organs the Learn2Reg abdominal pairs score (its label map numbers them so).
ORGANS = {1: "spleen", 2: "kidney_right", 3: "kidney_left", 4: "gallbladder", 5: "liver", 6: "stomach",
          7: "pancreas"}


def _mr_appearance() -> AppearanceConfig:
    """An MR-like rendering: dark air, tissue intensities in random order, bias, some blur, always noise; no
    k-space spikes (they would only add a failure mode no real pair here has)."""
    return AppearanceConfig(background_zero_p=1.0, std=(0.02, 0.06), bias_p=1.0, bias_std=(0.1, 0.3),
                            spike_p=0.0, ghost_p=0.1, gibbs_p=0.2, noise_p=1.0, noise_std=(0.01, 0.04))


@dataclass(frozen=True)
class AbdomenPairConfig:
    """How far an ``abdomen-mrct`` moving case is from the CT it is made from.

    Attributes:
        cases: moving cases (``mr_0`` ...), each with its own draws.
        seed: seed of the first case's generator (case ``i`` uses ``seed + i``).
        rotation_deg: largest rotation about the body's long axis (a tenth of it about the other two).
        zoom: largest relative change of size (inter-subject scale).
        deformation_sides / deformation_std_mm: the smooth field's octaves (as in
            :class:`~synthlab.eval_reg.ProtocolConfig`); the defaults move organs by about 10 mm.
        body_hu: CT voxels above this and outside every label are the body (rendered as one more tissue).
        crop_fraction: up to this fraction of each in-plane side is cut from one end of the moving field of view.
        origin_shift_mm: the moving scan's world origin moves by up to this much along each axis.
        appearance: the MR-like rendering.
    """

    cases: int = 5
    seed: int = 0
    rotation_deg: float = 12.0
    zoom: float = 0.1
    deformation_sides: tuple[int, ...] = (2, 4)
    deformation_std_mm: tuple[float, ...] = (8.0, 4.0)
    body_hu: float = -500.0
    crop_fraction: float = 0.15
    origin_shift_mm: float = 40.0
    appearance: AppearanceConfig = field(default_factory=_mr_appearance)

    def __post_init__(self) -> None:
        if self.cases < 1:
            raise ValueError(f"cases must be >= 1, got {self.cases}")
        if not 0.0 <= self.crop_fraction < 0.5:
            raise ValueError(f"crop_fraction must be in [0, 0.5), got {self.crop_fraction}")
        if not 0.0 <= self.zoom < 1.0:
            raise ValueError(f"zoom must be in [0, 1), got {self.zoom}")
        ProtocolConfig(deformation_sides=self.deformation_sides, deformation_std_mm=self.deformation_std_mm)
        self.appearance.validate()


_OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "S": "I", "I": "S"}


def _stored_differently(volumes: list[Volume], generator: torch.Generator,
                        config: AbdomenPairConfig) -> list[Volume]:
    """The same world content stored as another scanner might: the first two axes reversed (:func:`reorient` to
    the opposite directions), one end of each in-plane side cut off, the origin moved. The affine changes with
    the arrays, so the world stays put."""
    codes = volumes[0].orientation
    volumes = [reorient(volume, _OPPOSITE[codes[0]] + _OPPOSITE[codes[1]] + codes[2]) for volume in volumes]
    shape, affine = volumes[0].array.shape, volumes[0].affine.copy()
    cut = [int(torch.randint(0, int(config.crop_fraction * n) + 1, (1,), generator=generator)) for n in shape[:2]]
    first = [c if bool(torch.rand(1, generator=generator) < 0.5) else 0 for c in cut]  # cut the start or the end
    window = tuple(slice(f, n - (c - f)) for f, c, n in zip(first, cut, shape[:2], strict=True))
    shift = np.eye(4)
    shift[:2, 3] = first
    affine = affine @ shift
    shift_mm = config.origin_shift_mm
    affine[:3, 3] += uniform(generator, (3,), (-shift_mm, shift_mm), torch.float64).numpy()
    return [Volume(volume.array[window].contiguous(), affine) for volume in volumes]


def make_abdomen_pair(ct: Volume, labels: Volume, case: int,
                      config: AbdomenPairConfig | None = None) -> tuple[Volume, Volume]:
    """Moving case ``case``: an MR-like image and its organ labels (:data:`ORGANS`), made from ``ct`` and its
    ``labels`` (one grid), stored differently from them (see the module docstring)."""
    config = config or AbdomenPairConfig()
    if ct.array.shape != labels.array.shape or not np.allclose(ct.affine, labels.affine, atol=1e-3):
        raise ValueError(f"{labels.name} is not on the grid of {ct.name}")
    generator = torch.Generator().manual_seed(config.seed + case)
    tissue = labels.array.clone()
    tissue[(tissue == 0) & (ct.array > config.body_hu)] = int(tissue.max()) + 1  # the body: one more tissue
    size, spacing = tuple(tissue.shape), ct.spacing
    tilt, turn = config.rotation_deg / 10, config.rotation_deg  # degrees: about two axes / the long one
    angles = torch.cat([uniform(generator, (1, 2), (-tilt, tilt), torch.float64),
                        uniform(generator, (1, 1), (-turn, turn), torch.float64)], 1) * math.pi / 180
    scales = (1 + uniform(generator, (1, 1), (-config.zoom, config.zoom), torch.float64)).expand(1, 3)
    protocol = ProtocolConfig(deformation_sides=config.deformation_sides,
                              deformation_std_mm=config.deformation_std_mm)
    deformation = random_deformation(size, spacing, generator, protocol)[None].float()
    params = SpatialParams(matrix=affine_matrix(angles, scales).float(), deformation=deformation)
    moved = apply_spatial(tissue[None, None], params, mode="nearest")
    image = render(moved, sample_appearance(config.appearance, moved, generator))[0, 0] * 1000.0  # MR-like units
    moved = moved[0, 0]
    organs = torch.where((moved >= min(ORGANS)) & (moved <= max(ORGANS)), moved, 0)
    image, organs = _stored_differently([Volume(image, ct.affine), Volume(organs, ct.affine)], generator, config)
    return image, organs


def write_abdomen_folder(out: str | Path | None = None, source: str | Path = "totalseg_ct",
                         config: AbdomenPairConfig | None = None) -> Path:
    """Write the ``abdomen-mrct`` folder (MSD layout): the real CT and its organ labels as case ``ct``, and
    ``config.cases`` MR-like moving cases. ``source`` holds ``ct.nii.gz`` and ``labels.nii.gz``. The folder
    appears complete or not at all (it is written beside ``out`` first)."""
    config = config or AbdomenPairConfig()
    folder = resolve_data(source)
    ct, labels = load_nifti(folder / "ct.nii.gz"), load_nifti(folder / "labels.nii.gz", kind="label")
    out = Path(out) if out is not None else generated_data_folder("abdomen-mrct")
    if out.exists():
        raise ValueError(f"out: {out} exists; remove it to write it again")
    organs = torch.where(labels.array <= max(ORGANS), labels.array, 0)
    cases = {"ct": (ct, Volume(organs, labels.affine))}
    cases.update({f"mr_{i}": make_abdomen_pair(ct, labels, i, config) for i in range(config.cases)})
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        for sub in ("imagesTr", "labelsTr"):
            (staging / sub).mkdir()
        for name, (image, label) in cases.items():
            save_nifti(image, staging / "imagesTr" / f"{name}.nii.gz")
            save_nifti(label, staging / "labelsTr" / f"{name}.nii.gz")
        manifest = {"name": "abdomen-mrct", "description": __doc__.splitlines()[0],
                    "source": f"{folder.name}: the CT and labels of TotalSegmentator's test files (Apache-2.0)",
                    "labels": {"0": "background", **{str(k): v for k, v in ORGANS.items()}},
                    "numTraining": len(cases), "config": asdict(config),
                    "training": [{"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"}
                                 for name in cases]}
        (staging / "dataset.json").write_text(json.dumps(manifest, indent=1) + "\n")
        try:
            staging.rename(out)
        except OSError as err:  # another process wrote the folder meanwhile (two notebook runs side by side)
            if out.exists():
                raise ValueError(f"out: {out} was written meanwhile by another process") from err
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def abdomen_pairs(config: AbdomenPairConfig | None = None) -> Path:
    """The ``abdomen-mrct`` folder where ``--data abdomen-mrct`` finds it, written into the cache first when it
    is missing (a folder another process wrote meanwhile is taken as it is)."""
    try:
        return resolve_data("abdomen-mrct")
    except FileNotFoundError:
        pass
    try:
        return write_abdomen_folder(config=config)
    except ValueError:
        return resolve_data("abdomen-mrct")


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m synthlab.dev_pairs", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=["abdomen-mrct"], help="which development pairs to write")
    parser.add_argument("--out", default=None, help="folder to write (default: the cache folder --data finds)")
    parser.add_argument("--cases", type=int, default=AbdomenPairConfig.cases, help="moving cases")
    parser.add_argument("--seed", type=int, default=AbdomenPairConfig.seed, help="seed of the first case")
    args = parser.parse_args(argv)
    try:
        out = write_abdomen_folder(args.out, config=AbdomenPairConfig(cases=args.cases, seed=args.seed))
    except USER_ERRORS as err:
        return input_error("synthlab.dev_pairs", err)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
