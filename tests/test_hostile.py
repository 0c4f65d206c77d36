"""Hostile input through the command line: one line on stderr, exit code 2, nothing written; soft cases warn.

Each case is a file or flag a real user could produce (a stray label voxel, a truncated download, a checkpoint
from another project, a diverged run); the unit tests of each module check the same rules closer to the code.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from synthlab.__main__ import main
from synthlab.checkpoint import load_checkpoint
from tests.test_segment import _write_cubes

SEG = ["--checkpoint", "none", "--shots", "1", "--seeds", "1", "--steps", "1", "--dim", "2", "--preset", "tiny",
       "--device", "cpu", "--workers", "1"]
PRETRAIN = ["pretrain", "--objective", "supcon", "--dim", "2", "--size", "16", "--preset", "tiny", "--device", "cpu",
            "--batch-size", "1", "--steps", "1"]


def _exit_code(argv: list[str]) -> int:
    """``main``'s exit code; a flag argparse refuses (a choice, a type) exits with 2 before ``main`` returns."""
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code)


def _one_error_line(capsys: pytest.CaptureFixture[str], command: str, *named: str) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "warning:" not in line]
    assert len(err) == 1 and err[0].startswith(f"synthlab {command}: error:"), err
    assert all(name in err[0] for name in named), (named, err[0])
    return err[0]


def _set_label_voxel(folder: Path, case: int, value: int, *, declared: bool) -> None:
    """Give one voxel of case ``case`` the id ``value``; drop dataset.json's ``labels`` unless ``declared``."""
    path = folder / "labelsTr" / f"cube_{case}.nii.gz"
    label = np.asanyarray(nib.load(path).dataobj).astype(np.int32)
    label[0, 0, 0] = value
    nib.save(nib.Nifti1Image(label, np.eye(4)), path)
    manifest = json.loads((folder / "dataset.json").read_text())
    if not declared:
        manifest.pop("labels")
    (folder / "dataset.json").write_text(json.dumps(manifest))


def _huge_header_nifti() -> bytes:
    """A valid .nii whose header claims 30000^3 float32 voxels (but holds 64)."""
    raw = bytearray(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)).to_bytes())
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(raw)))
    header.set_data_shape((30000, 30000, 30000))
    raw[:len(header.binaryblock)] = header.binaryblock
    return bytes(raw)


# ------------------------------------------------------------------------------------------- label ids


def test_an_undeclared_label_id_names_the_file_and_the_value(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    data = _write_cubes(tmp_path / "cubes", n=4)
    _set_label_voxel(data, 2, 1000, declared=True)
    out = tmp_path / "seg.json"
    assert main(["eval-seg", "--data", str(data), *SEG, "--out", str(out)]) == 2
    _one_error_line(capsys, "eval-seg", "cube_2.nii.gz", "1000", "dataset.json")
    assert not out.exists()
    assert main(["eval-reg", "--data", str(data), "--fixed", "cube_2", "--moving", "cube_0", "--features",
                 "intensity", "--seeds", "1", "--out", str(out)]) == 2
    _one_error_line(capsys, "eval-reg", "cube_2.nii.gz", "1000")


def test_without_declared_labels_a_huge_stray_id_is_one_more_class_and_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _write_cubes(tmp_path / "cubes", n=4)
    _set_label_voxel(data, 2, 100000, declared=False)  # max()-sized one-hots would need 100001 channels
    out = tmp_path / "seg.json"
    assert main(["eval-seg", "--data", str(data), *SEG, "--out", str(out)]) == 0
    assert "label 100000 covers only 1 voxel" in capsys.readouterr().err
    results = json.loads(out.read_text())
    assert results["settings"]["labels"] == [1, 100000]
    assert set(results["scratch"]["1"]["per_label"]) == {"1", "100000"}


# ------------------------------------------------------------------------------------------- files


@pytest.mark.parametrize(
    ("write", "named"),
    [(lambda p: p.write_text("not a nifti"), "cannot read"),
     (lambda p: p.write_bytes(gzip.compress(_huge_header_nifti())), "header claims"),
     (lambda p: p.write_bytes(b""), "cannot read")],
    ids=["text", "huge-header", "empty"],
)
def test_a_bad_file_in_a_labels_folder_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str], write,
                                                named: str) -> None:
    folder = tmp_path / "maps"
    folder.mkdir()
    label = np.zeros((12, 12, 12), np.int16)
    label[2:8, 2:8, 2:8] = 1
    nib.save(nib.Nifti1Image(label, np.eye(4)), folder / "good.nii.gz")
    write(folder / "bad.nii.gz")
    out = tmp_path / "run"
    assert main([*PRETRAIN, "--labels", str(folder), "--out", str(out)]) == 2
    _one_error_line(capsys, "pretrain", "bad.nii.gz", named)
    assert not out.exists()


def test_a_truncated_label_map_in_an_msd_folder_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _write_cubes(tmp_path / "cubes", n=4)
    path = data / "labelsTr" / "cube_1.nii.gz"
    path.write_bytes(path.read_bytes()[:-20])  # the gzip trailer and the last compressed bytes are gone
    out = tmp_path / "seg.json"
    assert main(["eval-seg", "--data", str(data), *SEG, "--out", str(out)]) == 2
    _one_error_line(capsys, "eval-seg", "cube_1.nii.gz", "truncated")
    assert not out.exists()


def test_an_empty_training_list_names_the_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "empty"
    data.mkdir()
    (data / "dataset.json").write_text(json.dumps({"labels": {"0": "background"}, "training": []}))
    assert main(["eval-seg", "--data", str(data), *SEG, "--out", str(tmp_path / "seg.json")]) == 2
    _one_error_line(capsys, "eval-seg", "dataset.json", "'training' list is empty")


def test_a_constant_image_is_a_warning_not_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _write_cubes(tmp_path / "cubes", n=4)
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 14), np.float32), np.eye(4)), data / "imagesTr" / "cube_3.nii.gz")
    assert main(["eval-seg", "--data", str(data), *SEG, "--out", str(tmp_path / "seg.json")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning:" in line]
    assert len(warnings) == 1 and "cube_3.nii.gz is constant" in warnings[0]


# ------------------------------------------------------------------------------------------- checkpoints


def _broken_checkpoint(tmp_path: Path, kind: str) -> Path:
    payload = load_checkpoint("synthlab-2d")
    path = tmp_path / f"{kind}.pt"
    if kind == "model-config":
        payload["model_config"] = {"bogus": 1}
    elif kind == "nan":
        first = next(iter(payload["model"]))
        payload["model"] = {**payload["model"], first: torch.full_like(payload["model"][first], float("nan"))}
    elif kind == "pickled-object":
        payload["extra"] = Path("a path is a Python object, not a tensor")
    elif kind == "text":
        path.write_text("hello")
        return path
    torch.save(payload, path)
    return path


@pytest.mark.parametrize(("kind", "named"), [("model-config", "model_config"), ("nan", "NaN"),
                                             ("pickled-object", "pickled Python object"), ("text", "not a readable")])
def test_a_broken_checkpoint_is_one_line_in_every_command(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          kind: str, named: str) -> None:
    checkpoint = _broken_checkpoint(tmp_path, kind)
    data = _write_cubes(tmp_path / "cubes", n=4)
    out = tmp_path / "seg.json"
    flags = [f for f in SEG if f not in ("none", "--preset", "tiny", "--checkpoint")]
    assert main(["eval-seg", "--data", str(data), "--checkpoint", str(checkpoint), *flags, "--out", str(out)]) == 2
    _one_error_line(capsys, "eval-seg", str(checkpoint), named)
    assert not out.exists()


# ------------------------------------------------------------------------------------------- flags


@pytest.mark.parametrize(
    ("flags", "named"),
    [(["--device", "tpu"], "device"), (["--seed", "-1"], "seed"),
     (["--objective-set", "temperature=hot"], "temperature must be a number"),
     (["--synth-set", "appearance.noise_p=abc"], "appearance.noise_p must be a number"),
     (["--synth-set", "procedural.n_labels=[2.5, 4]"], "procedural.n_labels")],
    ids=["device", "seed", "objective-type", "synth-type", "synth-int-range"],
)
def test_badly_typed_flags_name_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str],
                                          named: str) -> None:
    out = tmp_path / "run"
    assert _exit_code([*PRETRAIN, *flags, "--out", str(out)]) == 2
    _one_error_line(capsys, "pretrain", named)
    assert not out.exists()


def test_a_run_that_fails_before_its_first_checkpoint_leaves_nothing(tmp_path: Path) -> None:
    from synthlab.train import TrainConfig, pretrain

    def crash(report: object) -> None:
        raise RuntimeError("simulated crash at step 1")

    out = tmp_path / "run"
    config = TrainConfig(objective="supcon", out=out, dim=2, size=16, steps=5, preset="tiny", device="cpu",
                         batch_size=1, checkpoint_every=5)
    with pytest.raises(RuntimeError, match="simulated"):
        pretrain(config, callback=crash)
    assert not out.exists()


def test_a_declared_label_no_map_holds_is_not_scored_and_all_background_is_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _write_cubes(tmp_path / "cubes", n=4)
    manifest = json.loads((data / "dataset.json").read_text())
    manifest["labels"]["2"] = "ghost"  # declared, never drawn: scored, it would earn Dice 1 for predicting nothing
    (data / "dataset.json").write_text(json.dumps(manifest))
    out = tmp_path / "seg.json"
    assert main(["eval-seg", "--data", str(data), *SEG, "--out", str(out)]) == 0
    assert "label 2 ('ghost') is declared" in capsys.readouterr().err
    assert json.loads(out.read_text())["settings"]["labels"] == [1]
    for case in range(4):
        path = data / "labelsTr" / f"cube_{case}.nii.gz"
        nib.save(nib.Nifti1Image(np.zeros(nib.load(path).shape, np.uint8), np.eye(4)), path)
    assert main(["eval-seg", "--data", str(data), *SEG, "--out", str(tmp_path / "empty.json")]) == 2
    _one_error_line(capsys, "eval-seg", "only background")


# ------------------------------------------------------------------------------------------- held-out neighbours
# A folder given to --data or --labels may hold stray files; any NIfTI may be truncated (compressed or not) or
# claim a size it does not have; any label map may have the wrong dimensionality or grid. Each case: one line
# naming the file, exit code 2, nothing written.


def _nifti(path: Path, shape: tuple[int, ...], label: bool = False, affine: np.ndarray | None = None) -> Path:
    rng = np.random.default_rng(len(shape) + sum(shape))
    array = rng.integers(0, 3, shape).astype(np.int16) if label else rng.normal(100, 20, shape).astype(np.float32)
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), path)
    return path


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _claim_size(path: Path, shape: tuple[int, ...], compress: bool) -> None:
    """Rewrite ``path`` as a NIfTI whose header claims ``shape`` but holds 64 voxels."""
    raw = bytearray(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)).to_bytes())
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(raw)))
    header.set_data_shape(shape)
    raw[:len(header.binaryblock)] = header.binaryblock
    path.write_bytes(gzip.compress(bytes(raw)) if compress else bytes(raw))


def _volume_folder(tmp_path: Path, spoil) -> Path:  # noqa: ANN001 - a callable that spoils the folder
    folder = tmp_path / "volumes"
    folder.mkdir()
    for k in range(2):
        _nifti(folder / f"v{k}.nii.gz", (20, 20, 20))
    spoil(folder)
    return folder


VOCO = ["pretrain", "--objective", "voco", "--size", "16", "--preset", "tiny", "--device", "cpu", "--batch-size", "1",
        "--steps", "1"]


@pytest.mark.parametrize(
    ("spoil", "dim", "named"),
    [(lambda f: (f / "notes.txt").write_text("hello"), 3, "notes.txt"),
     (lambda f: (f / "sub").mkdir() or (f / "sub" / "notes.txt").write_text("hello"), 2, "notes.txt"),
     (lambda f: _truncate(f / "v1.nii.gz"), 3, "v1.nii.gz"),
     (lambda f: _claim_size(f / "v1.nii.gz", (3200, 3200, 3200), compress=True), 3, "v1.nii.gz"),
     (lambda f: _claim_size(f / "v2.nii", (64, 64, 64), compress=False), 3, "v2.nii"),
     (lambda f: _nifti(f / "flat.nii.gz", (20, 20, 1)), 3, "flat.nii.gz"),
     (lambda f: _nifti(f / "series.nii.gz", (20, 20, 20, 3)), 3, "series.nii.gz")],
    ids=["stray-file", "stray-in-subfolder", "truncated-gz", "huge-claim-gz", "short-nii", "single-slice", "4d"],
)
def test_a_bad_data_folder_for_pretraining_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], spoil,
                                                       dim: int, named: str) -> None:  # noqa: ANN001
    folder = _volume_folder(tmp_path, spoil)
    out = tmp_path / "run"
    assert main([*VOCO, "--dim", str(dim), "--data", str(folder), "--out", str(out)]) == 2
    _one_error_line(capsys, "pretrain", named)
    assert not out.exists()


def _label_folder(tmp_path: Path, shape: tuple[int, ...], extra: str | None = None) -> Path:
    folder = tmp_path / "maps"
    folder.mkdir()
    _nifti(folder / "map.nii.gz", shape, label=True)
    if extra:
        (folder / extra).write_text("hello")
    return folder


@pytest.mark.parametrize(
    ("shape", "dim", "extra", "named"),
    [((24, 24), 3, None, "2D label map"), ((24, 24, 1), 3, None, "2D label map"),
     ((12, 12, 12, 3), 3, None, "4D series"), ((12, 12, 12, 3), 2, None, "4D series"),
     ((12, 12, 12), 3, "notes.txt", "notes.txt")],
    ids=["2d-for-3d", "2d-as-xy1-for-3d", "4d", "4d-in-2d", "stray-file"],
)
def test_a_label_map_of_the_wrong_kind_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   shape: tuple[int, ...], dim: int, extra: str | None,
                                                   named: str) -> None:
    folder = _label_folder(tmp_path, shape, extra)
    out = tmp_path / "run"
    flags = [f if f != "2" else str(dim) for f in PRETRAIN]  # PRETRAIN's --dim 2 becomes the case's dim
    assert main([*flags, "--labels", str(folder), "--out", str(out)]) == 2
    _one_error_line(capsys, "pretrain", named)
    assert not out.exists()


def test_a_2d_map_stored_as_one_slice_trains_a_2d_bank(tmp_path: Path) -> None:
    folder = _label_folder(tmp_path, (24, 24, 1))
    assert main([*PRETRAIN, "--labels", str(folder), "--out", str(tmp_path / "run")]) == 0


@pytest.mark.parametrize("spoil", ["shape", "affine", "truncated"])
def test_an_msd_label_map_off_its_image_grid_stops_eval_reg_before_it_registers(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], spoil: str) -> None:
    data = _write_cubes(tmp_path / "cubes", n=2)
    path = data / "labelsTr" / "cube_1.nii.gz"
    label = np.asanyarray(nib.load(path).dataobj)
    if spoil == "shape":
        nib.save(nib.Nifti1Image(label[:-2], np.eye(4)), path)
    elif spoil == "affine":
        nib.save(nib.Nifti1Image(label, np.diag([2.0, 1.0, 1.0, 1.0])), path)
    else:
        _truncate(path)
    out = tmp_path / "reg.json"
    assert main(["eval-reg", "--data", str(data), "--checkpoint", "none", "--features", "intensity", "--seeds", "1",
                 "--out", str(out)]) == 2
    _one_error_line(capsys, "eval-reg", "cube_1.nii.gz")
    assert not out.exists()


def test_a_coregistered_label_map_off_the_grid_stops_eval_reg(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "subject"
    folder.mkdir()
    for name in ("T1", "T2"):
        _nifti(folder / f"{name}.nii.gz", (20, 20, 20))
    _nifti(folder / "seg.nii.gz", (16, 20, 20), label=True)
    out = tmp_path / "reg.json"
    assert main(["eval-reg", "--data", str(folder), "--fixed", "T1", "--moving", "T2", "--checkpoint", "none",
                 "--features", "intensity", "--seeds", "1", "--out", str(out)]) == 2
    _one_error_line(capsys, "eval-reg", "seg.nii.gz")
    assert not out.exists()


@pytest.mark.parametrize("kind", ["huge-claim-gz", "truncated-nii"])
def test_a_bad_image_in_an_msd_folder_is_named_by_eval_seg(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           kind: str) -> None:
    data = _write_cubes(tmp_path / "cubes", n=4)
    path = data / "imagesTr" / "cube_2.nii.gz"
    if kind == "huge-claim-gz":
        _claim_size(path, (2048, 2048, 2048), compress=True)  # 32 GB of float32
        named = "cube_2.nii.gz"
    else:
        plain = path.with_name("cube_2.nii")
        nib.save(nib.load(path), plain)
        _truncate(plain)
        manifest = json.loads((data / "dataset.json").read_text())
        manifest["training"][2]["image"] = "./imagesTr/cube_2.nii"
        (data / "dataset.json").write_text(json.dumps(manifest))
        named = "cube_2.nii"
    out = tmp_path / "seg.json"
    assert main(["eval-seg", "--data", str(data), *SEG, "--out", str(out)]) == 2
    _one_error_line(capsys, "eval-seg", named)
    assert not out.exists()
