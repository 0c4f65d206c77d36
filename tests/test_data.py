"""Tests for synthlab.data: NIfTI I/O, geometry helpers, layout loaders and their error messages."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from synthlab import data
from synthlab.data import Volume

DATA_ROOT = data.find_data_root()


def _write(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), path)
    return path


def _oblique_affine() -> np.ndarray:
    """Rotated, anisotropic, shifted: catches code that assumes a diagonal affine."""
    angle = 0.3
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, 1.2, 2.5])
    affine[:3, 3] = [-10.0, 5.0, 30.0]
    return affine


def _world_to_voxel(volume: Volume, world: np.ndarray) -> tuple[int, ...]:
    voxel = np.linalg.inv(volume.affine) @ np.append(world, 1.0)
    assert np.allclose(voxel[:3], np.round(voxel[:3]), atol=1e-6)
    return tuple(int(v) for v in np.round(voxel[:3]))


# ------------------------------------------------------------------------------------------------ I/O


def test_nifti_round_trip_keeps_array_and_affine(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    array = rng.normal(size=(5, 6, 7)).astype(np.float32)
    affine = _oblique_affine()
    volume = data.load_nifti(_write(tmp_path / "img.nii.gz", array, affine))
    assert volume.array.dtype == torch.float32 and tuple(volume.array.shape) == (5, 6, 7)
    np.testing.assert_allclose(volume.array.numpy(), array)
    np.testing.assert_allclose(volume.affine, affine, atol=1e-5)  # NIfTI stores float32 sform
    np.testing.assert_allclose(volume.spacing, [0.8, 1.2, 2.5], atol=1e-5)
    labels = Volume(torch.from_numpy(rng.integers(0, 4, size=(5, 6, 7))), affine)
    reloaded = data.load_nifti(data.save_nifti(labels, tmp_path / "lab.nii.gz"), kind="label")
    assert reloaded.array.dtype == torch.int64 and torch.equal(reloaded.array, labels.array)


@pytest.mark.filterwarnings("ignore::synthlab.data.DataWarning")  # constant test images
def test_trailing_singleton_fourth_axis_is_accepted(tmp_path: Path) -> None:
    volume = data.load_nifti(_write(tmp_path / "x.nii.gz", np.ones((3, 4, 5, 1), np.float32)))
    assert tuple(volume.array.shape) == (3, 4, 5)


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="absent.nii.gz"):
        data.load_nifti(tmp_path / "absent.nii.gz")


def test_truncated_and_garbage_files_raise_value_error_naming_them(tmp_path: Path) -> None:
    full = _write(tmp_path / "full.nii.gz", np.random.default_rng(1).normal(size=(16, 16, 16)).astype(np.float32))
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.nii.gz"):
        data.load_nifti(truncated)
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(b"this is not a NIfTI file at all" * 20)
    with pytest.raises(ValueError, match="garbage.nii.gz"):
        data.load_nifti(garbage)


@pytest.mark.parametrize(
    ("array", "kind", "message"),
    [
        (np.zeros((3, 4, 5, 2), np.float32), "image", "3D"),
        (np.zeros((3, 4), np.float32), "image", "3D"),
        (np.where(np.arange(60).reshape(3, 4, 5) == 7, np.nan, 1.0).astype(np.float32), "image", "NaN"),
        (np.where(np.arange(60).reshape(3, 4, 5) == 7, np.inf, 1.0).astype(np.float32), "label", "NaN"),
        (np.full((3, 4, 5), 1.5, np.float32), "label", "non-integer"),
        (np.full((3, 4, 5), -1, np.int16), "label", "negative"),
    ],
    ids=["4d", "2d", "nan", "inf-label", "float-label", "negative-label"],
)
def test_bad_content_raises_value_error_naming_file(tmp_path: Path, array: np.ndarray, kind: str,
                                                    message: str) -> None:
    path = _write(tmp_path / "bad_input.nii.gz", array)
    with pytest.raises(ValueError, match=message) as info:
        data.load_nifti(path, kind=kind)
    assert "bad_input.nii.gz" in str(info.value)


def test_integer_valued_float_labels_load_as_int64(tmp_path: Path) -> None:
    array = np.array([0, 1, 2, 1], np.float32).reshape(1, 2, 2)
    volume = data.load_nifti(_write(tmp_path / "seg.nii.gz", array), kind="label")
    assert volume.array.dtype == torch.int64 and volume.array.flatten().tolist() == [0, 1, 2, 1]


# ------------------------------------------------------------------------------------------------ geometry


@pytest.mark.parametrize(
    "linear",
    [np.diag([-2.0, -3.0, 4.0]),  # LPS: first two axes flipped
     np.array([[0.0, 0.0, -1.5], [2.0, 0.0, 0.0], [0.0, -1.0, 0.0]])],  # axes permuted and flipped ("AIL")
    ids=["lps", "permuted"],
)
def test_reorient_to_ras_keeps_every_voxel_at_its_world_position(linear: np.ndarray) -> None:
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = [12.0, -7.0, 3.0]
    array = torch.arange(4 * 5 * 6, dtype=torch.float32).reshape(4, 5, 6)
    original = Volume(array, affine)
    ras = data.reorient(original, "RAS")
    assert ras.orientation == "RAS"
    for ijk in [(0, 0, 0), (3, 4, 5), (1, 2, 3), (2, 0, 5)]:
        world = (affine @ np.array([*ijk, 1.0]))[:3]
        assert ras.array[_world_to_voxel(ras, world)] == array[ijk]
    back = data.reorient(ras, original.orientation)
    assert torch.equal(back.array, array) and np.allclose(back.affine, affine)


def test_reorient_lps_flips_first_two_axes() -> None:
    array = torch.rand(3, 4, 5, generator=torch.Generator().manual_seed(0))
    ras = data.reorient(Volume(array, np.diag([-1.0, -1.0, 1.0, 1.0])))
    assert torch.equal(ras.array, array.flip(0, 1))


def test_reorient_rejects_bad_target() -> None:
    with pytest.raises(ValueError, match="target"):
        data.reorient(Volume(torch.zeros(2, 2, 2), np.eye(4)), "RRS")


def test_resample_halves_and_doubles_shape_with_scaled_affine() -> None:
    affine = _oblique_affine()  # spacing (0.8, 1.2, 2.5)
    volume = Volume(torch.rand(8, 6, 4, generator=torch.Generator().manual_seed(0)), affine)
    coarse = data.resample(volume, (1.6, 2.4, 5.0))
    fine = data.resample(volume, (0.4, 0.6, 1.25))
    assert tuple(coarse.array.shape) == (4, 3, 2) and tuple(fine.array.shape) == (16, 12, 8)
    np.testing.assert_allclose(coarse.affine[:3, :3], affine[:3, :3] * 2)
    np.testing.assert_allclose(fine.affine[:3, :3], affine[:3, :3] / 2)
    # Voxel edges stay put: the first coarse voxel centre sits half an old voxel inside the old first centre.
    np.testing.assert_allclose(coarse.affine @ [0, 0, 0, 1], affine @ [0.5, 0.5, 0.5, 1])
    np.testing.assert_allclose(fine.affine @ [0, 0, 0, 1], affine @ [-0.25, -0.25, -0.25, 1])


def test_resample_values_agree_with_updated_affine() -> None:
    # A linear ramp along axis 0 must read, after resampling, as the old voxel coordinate each new voxel maps to.
    ramp = torch.arange(10, dtype=torch.float32).view(10, 1, 1).expand(10, 3, 3).contiguous()
    fine = data.resample(Volume(ramp, np.eye(4)), 0.5)
    old_coordinate = (fine.affine @ np.stack([np.arange(20), np.zeros(20), np.zeros(20), np.ones(20)]))[0]
    interior = slice(1, 19)  # the two end voxels clamp at the border
    np.testing.assert_allclose(fine.array[interior, 0, 0].numpy(), old_coordinate[interior], atol=1e-5)


def test_resample_labels_uses_nearest_and_keeps_dtype() -> None:
    labels = torch.randint(0, 5, (6, 6, 6), generator=torch.Generator().manual_seed(0))
    fine = data.resample(Volume(labels, np.eye(4)), 0.5)
    assert fine.array.dtype == torch.int64
    assert torch.equal(fine.array, labels.repeat_interleave(2, 0).repeat_interleave(2, 1).repeat_interleave(2, 2))
    # Downsampling by 3: each new voxel centre lands exactly on the middle old voxel of its block.
    big = torch.randint(0, 5, (9, 9, 9), generator=torch.Generator().manual_seed(1))
    assert torch.equal(data.resample(Volume(big, np.eye(4)), 3.0).array, big[1::3, 1::3, 1::3])
    with pytest.raises(ValueError, match="spacing"):
        data.resample(Volume(labels, np.eye(4)), 0.0)


def test_crop_or_pad_is_centred_and_invertible() -> None:
    x = torch.arange(2 * 5 * 4, dtype=torch.float32).view(2, 5, 4)
    padded = data.crop_or_pad(x, (8, 7))
    assert padded.shape == (2, 8, 7)
    assert torch.equal(padded[:, 1:6, 1:5], x) and padded.sum() == x.sum()
    assert torch.equal(data.crop_or_pad(padded, (5, 4)), x)
    assert torch.equal(data.crop_or_pad(x, (3, 2)), x[:, 1:4, 1:3])


def test_normalize_intensity_matches_numpy_percentiles() -> None:
    values = torch.randn(20, 20, 20, generator=torch.Generator().manual_seed(0)) * 50 + 300
    out = data.normalize_intensity(values)
    low, high = np.percentile(values.numpy(), [0.5, 99.5])
    np.testing.assert_allclose(out.numpy(), np.clip((values.numpy() - low) / (high - low), 0, 1), atol=1e-5)
    assert float(out.min()) == 0.0 and float(out.max()) == 1.0
    assert torch.equal(data.normalize_intensity(torch.full((4, 4), 7.0)), torch.zeros(4, 4))


def test_normalize_intensity_inside_mask_ignores_background() -> None:
    image = torch.zeros(10, 10)
    image[2:8, 2:8] = torch.linspace(100, 200, 36).view(6, 6)
    mask = image > 0
    out = data.normalize_intensity(image, 0.0, 100.0, mask=mask)
    assert float(out[mask].min()) == 0.0 and float(out[mask].max()) == 1.0
    with pytest.raises(ValueError, match="lower"):
        data.normalize_intensity(image, 60.0, 40.0)


# ------------------------------------------------------------------------------------------------ pairs, layouts


def test_check_pair_names_both_files_on_shape_or_affine_mismatch(tmp_path: Path) -> None:
    image = Volume(torch.zeros(4, 4, 4), np.eye(4), tmp_path / "image_a.nii.gz")
    with pytest.raises(ValueError, match=r"shape mismatch.*image_a.*label_b"):
        data.check_pair(image, Volume(torch.zeros(4, 4, 5, dtype=torch.long), np.eye(4), tmp_path / "label_b.nii"))
    shifted = np.eye(4)
    shifted[0, 3] = 1.0
    with pytest.raises(ValueError, match=r"affine mismatch.*image_a.*label_b"):
        data.check_pair(image, Volume(torch.zeros(4, 4, 4, dtype=torch.long), shifted, tmp_path / "label_b.nii"))
    data.check_pair(image, Volume(torch.zeros(4, 4, 4), np.eye(4) + 1e-6))  # float noise is fine


@pytest.mark.filterwarnings("ignore::synthlab.data.DataWarning")  # constant test images
def test_load_coregistered_reads_contrasts_and_label(tmp_path: Path) -> None:
    affine = _oblique_affine()
    _write(tmp_path / "t1.nii.gz", np.ones((4, 5, 6), np.float32), affine)
    _write(tmp_path / "flair.nii", np.full((4, 5, 6), 2.0, np.float32), affine)
    _write(tmp_path / "aseg_seg.nii.gz", np.ones((4, 5, 6), np.uint8), affine)
    (tmp_path / "notes.txt").write_text("ignored")
    subject = data.load_coregistered(tmp_path)
    assert sorted(subject.contrasts) == ["flair", "t1"]
    assert float(subject.contrasts["flair"].array.mean()) == 2.0
    assert subject.label is not None and subject.label.array.dtype == torch.int64


@pytest.mark.filterwarnings("ignore::synthlab.data.DataWarning")  # constant test images
def test_load_coregistered_rejects_mismatched_contrasts(tmp_path: Path) -> None:
    _write(tmp_path / "a.nii.gz", np.ones((4, 5, 6), np.float32))
    _write(tmp_path / "b.nii.gz", np.ones((4, 5, 7), np.float32))
    with pytest.raises(ValueError, match=r"shape mismatch.*a\.nii\.gz.*b\.nii\.gz"):
        data.load_coregistered(tmp_path)
    _write(tmp_path / "b.nii.gz", np.ones((4, 5, 6), np.float32), np.diag([1.0, 1.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"affine mismatch.*a\.nii\.gz.*b\.nii\.gz"):
        data.load_coregistered(tmp_path)


def test_empty_folder_raises_naming_it(tmp_path: Path) -> None:
    empty = tmp_path / "empty_study"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty_study"):
        data.load_coregistered(empty)
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        data.load_msd(empty)


def _msd_folder(root: Path, entries: list[dict[str, str]]) -> Path:
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for name in ("case_1", "case_2"):
        _write(root / "imagesTr" / f"{name}.nii.gz", np.random.default_rng(0).random((4, 5, 6), np.float32))
        _write(root / "labelsTr" / f"{name}.nii.gz", (np.arange(120).reshape(4, 5, 6) % 3).astype(np.uint8))
    (root / "dataset.json").write_text(json.dumps({"name": "toy", "training": entries}))
    return root


def test_load_msd_reads_pairs_in_manifest_order(tmp_path: Path) -> None:
    entries = [{"image": f"./imagesTr/{n}.nii.gz", "label": f"./labelsTr/{n}.nii.gz"} for n in ("case_2", "case_1")]
    folder = _msd_folder(tmp_path / "toy", entries)
    cases = data.load_msd(folder)
    assert [c.name for c in cases] == ["case_2", "case_1"]
    assert cases[0].label is not None and set(cases[0].label.array.unique().tolist()) == {0, 1, 2}
    assert len(data.load_msd(folder, limit=1)) == 1


def test_msd_manifest_naming_missing_file_raises(tmp_path: Path) -> None:
    entries = [{"image": "./imagesTr/case_1.nii.gz", "label": "./labelsTr/case_9.nii.gz"}]
    folder = _msd_folder(tmp_path / "toy", entries)
    with pytest.raises(FileNotFoundError, match="case_9.nii.gz"):
        data.load_msd(folder, limit=1)


@pytest.mark.parametrize("text", ['{"training": [', '{"name": "no list"}', '{"training": [{"label": "x"}]}'],
                         ids=["truncated-json", "no-training", "no-image-key"])
def test_malformed_manifest_raises_value_error_naming_it(tmp_path: Path, text: str) -> None:
    folder = _msd_folder(tmp_path / "toy", [])
    (folder / "dataset.json").write_text(text)
    with pytest.raises(ValueError, match="dataset.json"):
        data.load_msd(folder)


# ------------------------------------------------------------------------------------------------ locations


def test_resolve_data_order_and_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "toyset").mkdir()
    monkeypatch.setenv("SYNTHLAB_DATA", str(tmp_path))
    assert data.find_data_root() == tmp_path
    assert data.resolve_data("toyset") == tmp_path / "toyset"
    assert data.resolve_data(tmp_path / "toyset") == tmp_path / "toyset"
    with pytest.raises(FileNotFoundError, match=r"no_such_set(.|\n)*data/cache"):
        data.resolve_data("no_such_set")
    missing = tmp_path / "gone"  # an absolute path is every candidate at once: the message names it once
    with pytest.raises(FileNotFoundError) as error:
        data.resolve_data(missing)
    assert str(error.value).split("looked in:")[1].count(str(missing)) == 1


# ------------------------------------------------------------------------------------------------ real data


@pytest.mark.skipif(DATA_ROOT is None or not (DATA_ROOT / "hippocampus").is_dir(),
                    reason="real data not found: set SYNTHLAB_DATA (see data/README.md)")
def test_msd_hippocampus_real_cases() -> None:
    assert DATA_ROOT is not None
    assert len(data.msd_entries(DATA_ROOT / "hippocampus")) == 130
    cases = data.load_msd(DATA_ROOT / "hippocampus", limit=3)
    assert len(cases) == 3
    for case in cases:
        assert case.label is not None and case.image.array.shape == case.label.array.shape
        assert set(case.label.array.unique().tolist()) <= {0, 1, 2}
        assert np.allclose(case.image.spacing, 1.0, atol=0.05)


@pytest.mark.skipif(DATA_ROOT is None or not (DATA_ROOT / "brain_tumor_mri" / "study1").is_dir(),
                    reason="real data not found: set SYNTHLAB_DATA (see data/README.md)")
def test_coregistered_brain_tumor_study() -> None:
    assert DATA_ROOT is not None
    subject = data.load_coregistered(DATA_ROOT / "brain_tumor_mri" / "study1")
    assert len(subject.contrasts) == 4 and subject.label is None
    shapes = {tuple(v.array.shape) for v in subject.contrasts.values()}
    assert len(shapes) == 1 and next(iter(shapes))[:2] == (512, 512)
    t2 = data.reorient(subject.contrasts["T2reg"])
    assert t2.orientation == "RAS"


def test_load_icbm_offline() -> None:
    pytest.importorskip("nilearn")
    subject = data.load_icbm(resolution=2)
    t1, label = subject.contrasts["t1"].array, subject.label.array
    assert t1.shape == label.shape == subject.maps["gm"].array.shape
    assert set(label.unique().tolist()) == {0, 1, 2, 3}
    mean = {k: float(t1[label == k].mean()) for k in (1, 2, 3)}
    assert mean[3] < mean[1] < mean[2]  # T1 contrast: CSF darker than grey matter, darker than white matter
    assert float(subject.maps["gm"].array[label == 1].mean()) > 0.5


# ------------------------------------------------------------------------------------------------ label ids


def test_declared_labels_are_read_and_malformed_ones_name_the_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "dataset.json"
    manifest.write_text(json.dumps({"labels": {"2": "posterior", "0": "background", "1": "anterior"}}))
    assert data.declared_labels(manifest) == {0: "background", 1: "anterior", 2: "posterior"}
    manifest.write_text(json.dumps({"training": []}))
    assert data.declared_labels(manifest) is None
    for bad in ({"zero": "background"}, ["background"], {"-1": "x"}, {}):
        manifest.write_text(json.dumps({"labels": bad}))
        with pytest.raises(ValueError, match="dataset.json"):
            data.declared_labels(manifest)


def test_relabel_numbers_ids_consecutively_and_check_names_a_stray_value(tmp_path: Path) -> None:
    array = torch.tensor([[[0, 7, 100000], [7, 0, 3]]])
    volume = Volume(array, np.eye(4), tmp_path / "case.nii.gz")
    assert data.relabel(volume, [3, 7, 100000]).array.tolist() == [[[0, 2, 3], [2, 0, 1]]]
    data.check_label_ids(volume, {0, 3, 7, 100000}, "dataset.json")
    with pytest.raises(ValueError, match=r"case.nii.gz holds label 100000 \(1 voxel\), which dataset.json"):
        data.check_label_ids(volume, {0, 3, 7}, "dataset.json")
    with pytest.raises(ValueError, match="outside"):
        data.relabel(volume, [3, 7])


def test_label_counts_and_the_stray_label_warning() -> None:
    maps = [Volume(torch.tensor([[[0, 1, 1, 1000]]]), np.eye(4)), Volume(torch.ones(1, 1, 20, dtype=torch.long),
                                                                        np.eye(4))]
    counts = data.label_counts(maps)
    assert counts == {0: 1, 1: 22, 1000: 1}
    with pytest.warns(data.DataWarning, match="label 1000 covers only 1 voxel"):
        data.warn_stray_labels(counts, "the set")


def test_load_msd_refuses_an_id_its_manifest_does_not_declare(tmp_path: Path) -> None:
    folder = _msd_folder(tmp_path, [{"image": "imagesTr/case_1.nii.gz", "label": "labelsTr/case_1.nii.gz"}])
    manifest = json.loads((folder / "dataset.json").read_text())
    (folder / "dataset.json").write_text(json.dumps({**manifest, "labels": {"0": "background"}}))
    with pytest.raises(ValueError, match=r"case_1.nii.gz holds label 1 .*does not declare \(declared: 0\)"):
        data.load_msd(folder)


def test_non_real_voxels_and_constant_images(tmp_path: Path) -> None:
    path = _write(tmp_path / "complex.nii.gz", np.ones((4, 4, 4), np.complex64))
    with pytest.raises(ValueError, match="complex.nii.gz stores complex64"):
        data.load_nifti(path)
    path = _write(tmp_path / "flat.nii.gz", np.full((4, 4, 4), 3.0, np.float32))
    with pytest.warns(data.DataWarning, match="flat.nii.gz is constant"):
        data.load_nifti(path)


def test_degenerate_affines_huge_values_and_huge_label_ids_are_named(tmp_path: Path) -> None:
    nifti = nib.Nifti1Image(np.random.default_rng(0).random((4, 4, 4)).astype(np.float32), None)
    nifti.header.set_sform(np.diag([1.0, 0.0, 1.0, 1.0]), code=1)  # a y voxel size of 0 mm
    nifti.header.set_qform(None, code=0)
    nib.save(nifti, tmp_path / "flat.nii.gz")
    with pytest.raises(ValueError, match="flat.nii.gz has a degenerate voxel-to-world affine"):
        data.load_nifti(tmp_path / "flat.nii.gz")
    with pytest.raises(ValueError, match="big.nii.gz holds values beyond the float32 range"):
        data.load_nifti(_write(tmp_path / "big.nii.gz", np.full((4, 4, 4), 1e300)))
    label = np.zeros((4, 4, 4), np.float64)
    label[0, 0, 0] = 1e30
    with pytest.raises(ValueError, match="ids.nii.gz holds label 1e\\+30, too large"):
        data.load_nifti(_write(tmp_path / "ids.nii.gz", label), kind="label")


def test_manifest_entries_must_name_paths_as_strings(tmp_path: Path) -> None:
    folder = _msd_folder(tmp_path / "toy", [{"image": 5, "label": "labelsTr/case_1.nii.gz"}])
    with pytest.raises(ValueError, match="'image' path"):
        data.msd_entries(folder)
