"""``python -m synthlab register FIXED MOVING``: register two scans as a user hands them over, write NIfTI.

What a registration user expects of ANTs or the ConvexAdam scripts: two files in, the moving scan (and its label
map) resampled onto the fixed scan's grid with the fixed scan's affine, and the displacement field, out. Both
scans are placed in one world frame first (:mod:`synthlab.data.frame`), registered on an isotropic working grid
(:func:`synthlab.register.register`), and the result is carried back to the fixed scan's own voxels.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from .data import Volume, check_pair, load_nifti, normalize_intensity, save_nifti
from .data.frame import common_frame, grid_points, sample_grid, sample_world, to_frame, working_spacing
from .dist import resolve_device
from .eval_reg import load_feature_net
from .metrics import folding_percent, mean_dice
from .register import FEATURE_SETS, register
from .registration_config import RegistrationConfig

__all__ = ["register_files"]


def _world_displacement(fixed: Volume, frame_affine: np.ndarray, displacement: torch.Tensor,
                        shift: np.ndarray) -> torch.Tensor:
    """The working-grid displacement (voxels) as millimetres at every voxel of the fixed scan: ``(*shape, 3)``,
    so that the moving scan's point for fixed voxel ``x`` is ``world(x) + d(x)``."""
    linear = torch.from_numpy(np.asarray(frame_affine, dtype=np.float64)[:3, :3]).float()
    in_mm = torch.einsum("ij,j...->i...", linear, displacement.float().cpu())
    points = grid_points(tuple(fixed.array.shape), fixed.affine)
    on_fixed = sample_grid(in_mm, frame_affine, points, border=True)  # (3, *shape)
    return on_fixed.movedim(0, -1).double() + torch.from_numpy(shift)


def register_files(fixed: str | Path, moving: str | Path, out: str | Path, features: str = "mind",
                   checkpoint: str = "none", moving_labels: str | Path | None = None,
                   fixed_labels: str | Path | None = None, size: int = 128,
                   config: RegistrationConfig | None = None, device: str | torch.device = "auto") -> dict[str, Any]:
    """Register ``moving`` onto ``fixed`` and write ``warped.nii.gz``, ``displacement.nii.gz`` (``X x Y x Z x 3``
    millimetres along the world axes), ``initial.nii.gz`` (the moving scan after the initial alignment alone,
    to compare with) and, given ``moving_labels``, ``warped_labels.nii.gz`` into ``out``, all on the fixed
    scan's grid with its affine. Returns a summary; ``fixed_labels`` adds Dice before and after.

    Every input is loaded and checked before the registration; the files appear in ``out`` together at the end
    (written to a temporary folder beside it first), so a failed run leaves nothing half-written.
    """
    if features not in FEATURE_SETS:
        raise ValueError(f"features must be one of {FEATURE_SETS}, got {features!r}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"out: {out} exists and is not an empty folder")
    fixed_scan, moving_scan = load_nifti(fixed), load_nifti(moving)
    labels = load_nifti(moving_labels, kind="label") if moving_labels is not None else None
    reference = load_nifti(fixed_labels, kind="label") if fixed_labels is not None else None
    for image, label in ((moving_scan, labels), (fixed_scan, reference)):
        if label is not None:
            check_pair(image, label)
    device = resolve_device(device)
    net = load_feature_net(checkpoint, device)[0] if "network" in features else None
    started = time.perf_counter()
    frame, fixed_on = common_frame(fixed_scan, moving_scan, working_spacing([fixed_scan, moving_scan], size))
    result = register(normalize_intensity(fixed_on.array).to(device),
                      normalize_intensity(to_frame(moving_scan, frame)).to(device), features, net, config=config)
    shift = np.asarray(frame.shift, dtype=np.float64)
    displacement = _world_displacement(fixed_scan, frame.affine, result.displacement, shift)
    points = grid_points(tuple(fixed_scan.array.shape), fixed_scan.affine)
    initial = points + torch.from_numpy(shift)  # the moving scan's points after the centres of mass are aligned
    outputs = {"warped.nii.gz": Volume(sample_world(moving_scan, points + displacement), fixed_scan.affine),
               "initial.nii.gz": Volume(sample_world(moving_scan, initial), fixed_scan.affine),
               "displacement.nii.gz": displacement.float()}
    if labels is not None:
        outputs["warped_labels.nii.gz"] = Volume(sample_world(labels, points + displacement), fixed_scan.affine)
    summary: dict[str, Any] = {"features": features, "network": checkpoint if net is not None else None,
                               "working_grid": list(frame.shape), "working_spacing_mm": frame.spacing[0],
                               "initial_shift_mm": shift.round(2).tolist(),
                               "folding_percent": folding_percent(result.displacement.cpu()),
                               "seconds": time.perf_counter() - started}
    if labels is not None and reference is not None:
        summary["dice_before"] = mean_dice(sample_world(labels, initial), reference.array)
        summary["dice"] = mean_dice(outputs["warped_labels.nii.gz"].array, reference.array)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as scratch:
        for name, value in outputs.items():
            if isinstance(value, Volume):
                save_nifti(value, Path(scratch) / name)
            else:  # the displacement: a vector per voxel, on the fixed scan's grid
                nib.save(nib.Nifti1Image(value.numpy(), fixed_scan.affine), Path(scratch) / name)
        if out.is_dir():
            out.rmdir()  # empty, checked above
        shutil.move(scratch, out)
        Path(scratch).mkdir()  # TemporaryDirectory removes it on exit
    summary["files"] = sorted(outputs)
    return summary
