"""Tests for synthlab.data.frame and `synthlab register`: two scans stored differently, in one physical frame."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from synthlab.__main__ import main
from synthlab.data import Volume
from synthlab.data.frame import common_frame, foreground_centre, grid_points, sample_world, to_frame
from synthlab.metrics import mean_dice


def _subject(shape: tuple[int, int, int] = (30, 36, 24)) -> tuple[torch.Tensor, torch.Tensor]:
    """An asymmetric 'anatomy': two ellipsoids of different brightness, labels 1 and 2 (left-right distinct)."""
    axes = torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in shape), indexing="ij")
    big = sum(((a - c) / r) ** 2 for a, c, r in zip(axes, (13, 18, 12), (8, 11, 7), strict=True)) < 1
    small = sum(((a - c) / r) ** 2 for a, c, r in zip(axes, (21, 10, 12), (3, 4, 3), strict=True)) < 1
    label = big.long() + small.long() * (2 - big.long())
    return 0.1 + 0.5 * big.float() + 0.4 * small.float(), label


def test_a_mirrored_shifted_copy_with_another_origin_lands_on_the_fixed_scan() -> None:
    image, label = _subject()
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    affine[:3, 3] = (-20.0, -30.0, 10.0)
    fixed, fixed_label = Volume(image, affine), Volume(label, affine)
    # The moving scan: the same anatomy stored with its first two axes flipped (an LPS-like order) and its
    # origin elsewhere, as a second scanner writes it; the world positions of the anatomy move by `offset`.
    flip = np.eye(4)
    flip[0, 0], flip[1, 1] = -1, -1
    flip[0, 3], flip[1, 3] = image.shape[0] - 1, image.shape[1] - 1
    offset = np.array([12.0, -7.5, 4.0])
    moved_affine = affine @ flip
    moved_affine[:3, 3] += offset
    moving = Volume(image.flip(0, 1).contiguous(), moved_affine)
    moving_label = Volume(label.flip(0, 1).contiguous(), moved_affine)
    assert "".join(moving.orientation) != "RAS"
    np.testing.assert_allclose(foreground_centre(moving) - foreground_centre(fixed), offset, atol=1e-6)

    frame, on_grid = common_frame(fixed, moving)
    np.testing.assert_allclose(frame.shift, offset, atol=1e-6)
    assert mean_dice(to_frame(moving_label, frame), to_frame(fixed_label, frame, moving=False)) > 0.99
    torch.testing.assert_close(to_frame(moving, frame), on_grid.array, atol=1e-4, rtol=0)
    # Padding voxel arrays to one shape, as before, compares a mirror image.
    assert mean_dice(moving_label.array, label) < 0.7


def test_sampling_at_the_grids_own_points_returns_the_volume_and_zero_outside() -> None:
    image, label = _subject((8, 10, 6))
    affine = np.array([[0.0, 2.0, 0.0, 5.0], [-1.0, 0.0, 0.0, 3.0], [0.0, 0.0, 3.0, -4.0], [0, 0, 0, 1]])
    points = grid_points(tuple(image.shape), affine)
    torch.testing.assert_close(sample_world(Volume(image, affine), points), image)
    assert torch.equal(sample_world(Volume(label, affine), points), label)
    assert float(sample_world(Volume(image, affine), points + 1000.0).abs().max()) == 0.0


def test_a_coarser_working_grid_covers_the_fixed_field_of_view_on_ras_axes() -> None:
    image, _ = _subject()
    fixed = Volume(image.flip(0).contiguous(), np.diag([-1.0, 1.0, 1.0, 1.0]))  # stored left to right
    frame, on_grid = common_frame(fixed, fixed, spacing=2.0)
    assert "".join(on_grid.orientation) == "RAS" and frame.spacing == (2.0, 2.0, 2.0)
    assert frame.shape == tuple(round(n / 2) for n in image.shape) and np.allclose(frame.shift, 0.0)


def test_register_command_writes_the_moved_scan_labels_and_field_on_the_fixed_grid(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image, label = _subject()
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1, image.shape[0] - 1
    moved_affine = affine @ flip
    moved_affine[:3, 3] += (9.0, -6.0, 4.0)
    files = {"fixed.nii.gz": (image, affine), "fixed_seg.nii.gz": (label, affine),
             "moving.nii.gz": (image.flip(0), moved_affine), "moving_seg.nii.gz": (label.flip(0), moved_affine)}
    for name, (array, matrix) in files.items():
        nib.save(nib.Nifti1Image(array.numpy().astype(np.float32 if array.is_floating_point() else np.int16),
                                 matrix), tmp_path / name)
    out = tmp_path / "result"
    code = main(["register", str(tmp_path / "fixed.nii.gz"), str(tmp_path / "moving.nii.gz"), "--features", "mind",
                 "--moving-labels", str(tmp_path / "moving_seg.nii.gz"), "--fixed-labels",
                 str(tmp_path / "fixed_seg.nii.gz"), "--device", "cpu", "--out", str(out)])
    assert code == 0 and "Dice" in capsys.readouterr().out
    warped, warped_labels, field = (nib.load(out / name) for name in
                                    ("warped.nii.gz", "warped_labels.nii.gz", "displacement.nii.gz"))
    assert np.allclose(warped.affine, affine) and warped.shape == tuple(image.shape)
    assert field.shape == (*image.shape, 3)
    initial = nib.load(out / "initial.nii.gz")  # the flipped, shifted scan found in the world before registering
    assert np.allclose(initial.affine, affine) and np.corrcoef(np.asarray(initial.dataobj).ravel(),
                                                               image.numpy().ravel())[0, 1] > 0.9
    assert mean_dice(torch.from_numpy(np.asarray(warped_labels.dataobj).astype(np.int64)), label) > 0.95
    # Bad input: one line, exit 2, no output folder.
    assert main(["register", str(tmp_path / "fixed.nii.gz"), str(tmp_path / "nope.nii.gz"),
                 "--out", str(tmp_path / "other")]) == 2
    assert "nope.nii.gz" in capsys.readouterr().err and not (tmp_path / "other").exists()
    assert main(["register", str(tmp_path / "fixed.nii.gz"), str(tmp_path / "moving.nii.gz"), "--out", str(out)]) == 2
