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
       "--device", "cpu"]
PRETRAIN = ["pretrain", "--objective", "supcon", "--dim", "2", "--size", "16", "--preset", "tiny", "--device", "cpu",
            "--batch-size", "1", "--steps", "1"]


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
    assert main([*PRETRAIN, *flags, "--out", str(out)]) == 2
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
