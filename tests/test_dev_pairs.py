"""Tests for synthlab.dev_pairs: a moving case keeps the world where it was, however it is stored."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from synthlab.data import Volume, load_nifti, save_nifti
from synthlab.data.frame import grid_points, sample_world
from synthlab.dev_pairs import ORGANS, AbdomenPairConfig, main, make_abdomen_pair, write_abdomen_folder


def _abdomen(folder: Path | None = None) -> tuple[Volume, Volume]:
    """A small CT-like volume: a body of -50 HU in air, two 'organs' (ids 1 and 5) and a bone (id 30)."""
    labels = torch.zeros(24, 20, 8, dtype=torch.int64)
    labels[4:10, 5:12, 2:6], labels[12:20, 6:14, 2:7], labels[10:13, 2:5, 1:7] = 1, 5, 30
    ct = torch.full(labels.shape, -1000.0)
    ct[2:22, 2:18, :] = -50.0
    ct[labels > 0] = 60.0
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = [-30.0, 10.0, 90.0]
    scans = Volume(ct, affine), Volume(labels, affine)
    if folder is not None:
        folder.mkdir()
        save_nifti(scans[0], folder / "ct.nii.gz")
        save_nifti(scans[1], folder / "labels.nii.gz")
    return scans


STILL = AbdomenPairConfig(rotation_deg=0.0, zoom=0.0, deformation_std_mm=(0.0, 0.0), origin_shift_mm=0.0)


def test_an_undeformed_case_stored_flipped_and_cropped_holds_the_organs_at_the_same_world_places() -> None:
    ct, labels = _abdomen()
    image, organs = make_abdomen_pair(ct, labels, case=0, config=replace(STILL, crop_fraction=0.3))
    assert "".join(organs.orientation) != "".join(ct.orientation)  # stored another way: axes 0, 1 reversed
    assert organs.array.shape[0] <= ct.array.shape[0] and organs.array.shape[2] == ct.array.shape[2]
    back = sample_world(organs, grid_points(tuple(ct.array.shape), ct.affine))
    inside = sample_world(Volume(torch.ones_like(image.array), image.affine),
                          grid_points(tuple(ct.array.shape), ct.affine)) > 0.5
    expected = torch.where(labels.array <= max(ORGANS), labels.array, 0)
    assert torch.equal(back[inside], expected[inside])  # the bone (30) is not an organ label
    assert set(organs.array.unique().tolist()) <= {0, 1, 5}
    rendered = sample_world(image, grid_points(tuple(ct.array.shape), ct.affine))
    air, body = rendered[inside & (ct.array < -500)], rendered[inside & (ct.array > -500)]
    assert float(air.mean()) < 0.1 * float(body.mean())  # air stays dark, as in MR; the body is a tissue


def test_a_moving_case_is_deformed_rendered_with_other_contrast_and_reproducible() -> None:
    ct, labels = _abdomen()
    config = replace(AbdomenPairConfig(), origin_shift_mm=0.0, crop_fraction=0.0)
    image, organs = make_abdomen_pair(ct, labels, case=1, config=config)
    again, _ = make_abdomen_pair(ct, labels, case=1, config=config)
    other, _ = make_abdomen_pair(ct, labels, case=2, config=config)
    assert torch.equal(image.array, again.array) and not torch.equal(image.array, other.array)
    back = sample_world(organs, grid_points(tuple(ct.array.shape), ct.affine))
    assert not torch.equal(back, torch.where(labels.array <= max(ORGANS), labels.array, 0))  # it moved


def test_the_folder_is_an_msd_layout_with_the_ct_and_its_moving_cases(tmp_path: Path) -> None:
    _abdomen(tmp_path / "source")
    out = write_abdomen_folder(tmp_path / "pairs", tmp_path / "source", replace(STILL, cases=2))
    manifest = json.loads((out / "dataset.json").read_text())
    assert [e["image"] for e in manifest["training"]] == [f"./imagesTr/{n}.nii.gz" for n in ("ct", "mr_0", "mr_1")]
    assert manifest["labels"]["5"] == "liver"
    assert set(load_nifti(out / "labelsTr" / "ct.nii.gz", kind="label").array.unique().tolist()) == {0, 1, 5}
    with pytest.raises(ValueError, match="exists"):
        write_abdomen_folder(out, tmp_path / "source", replace(STILL, cases=1))
    assert main(["abdomen-mrct", "--out", str(tmp_path / "bad"), "--cases", "0"]) == 2
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad*"))  # nothing half-written


def test_eval_reg_places_a_flipped_case_in_the_fixed_frame_and_meets_every_other_case_in_turn(tmp_path: Path) -> None:
    from synthlab.eval_reg import ProtocolConfig, evaluate_registration
    from synthlab.register import RegistrationConfig

    _abdomen(tmp_path / "source")
    out = write_abdomen_folder(tmp_path / "pairs", tmp_path / "source", replace(STILL, cases=2, crop_fraction=0.0))
    report = evaluate_registration(out, fixed="ct", features=["mind"], seeds=3, device="cpu",
                                   config=RegistrationConfig(iterations=2), progress=False,
                                   protocol=ProtocolConfig(contrast_changes=("none",)))
    assert list(report["results"]["mind"]) == ["none"]  # a cross-modality pair needs no simulated change
    rows = report["per_seed"]["mind"]["none"]
    assert [(row["fixed"], row["moving"]) for row in rows] == [("ct", "mr_0"), ("ct", "mr_1"), ("ct", "mr_0")]
    assert min(row["dice_before"] for row in rows) > 0.95  # stored flipped, yet found where it is


def test_a_folder_written_meanwhile_by_another_process_is_kept_and_taken(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    import synthlab.dev_pairs as dev_pairs

    _abdomen(tmp_path / "source")
    out = tmp_path / "pairs"

    def save_and_race(volume: Volume, path: Path) -> Path:  # the other process finishes first
        out.mkdir(exist_ok=True)
        (out / "dataset.json").write_text("{}")
        return save_nifti(volume, path)

    monkeypatch.setattr(dev_pairs, "save_nifti", save_and_race)
    with pytest.raises(ValueError, match="meanwhile"):
        write_abdomen_folder(out, tmp_path / "source", replace(STILL, cases=1))
    assert (out / "dataset.json").read_text() == "{}"  # the other's folder, untouched
    assert {p.name for p in tmp_path.iterdir()} == {"source", "pairs"}  # no staging folder left behind
    monkeypatch.setattr(dev_pairs, "resolve_data", lambda name: out)
    assert dev_pairs.abdomen_pairs() == out  # found, not written again
