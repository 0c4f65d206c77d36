"""Tests for synthlab.checkpoint: the file format, its errors, shipped names and random-state round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from synthlab import checkpoint as ckpt
from synthlab.nets import build_unet


def _payload(net: torch.nn.Module, state: dict[str, torch.Tensor] | None = None) -> dict:
    return {"format": ckpt.FORMAT_VERSION, "config": {"objective": "supcon"}, "model_config": net.config,
            "model": net.state_dict() if state is None else state, "step": 0}


def _trained_like_net() -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_unet("tiny", 2)
    net.train()
    with torch.no_grad():  # move the BatchNorm running statistics away from their defaults
        net(torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 5)
    return net


def test_save_is_atomic_and_load_pretrained_rebuilds_the_net_in_eval_mode(tmp_path: Path) -> None:
    net = _trained_like_net()
    path = ckpt.save_checkpoint(tmp_path / "run" / "checkpoint.pt", _payload(net))
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pt"]  # no temporary file left
    loaded = ckpt.load_pretrained(path)
    assert not loaded.training and loaded.config == net.config
    image = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(loaded(image), net.eval()(image))


def test_wrapper_prefixes_are_stripped(tmp_path: Path) -> None:
    net = _trained_like_net()
    assert ckpt.strip_prefixes({"module._orig_mod.stem.conv.weight": 1, "_orig_mod.head.weight": 2}) == {
        "stem.conv.weight": 1, "head.weight": 2}
    wrapped = {f"module._orig_mod.{key}": value for key, value in net.state_dict().items()}
    path = ckpt.save_checkpoint(tmp_path / "wrapped.pt", _payload(net, wrapped))
    image = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(ckpt.load_pretrained(path)(image), net.eval()(image))


def test_unreadable_or_foreign_files_raise_value_errors_naming_them(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint" * 10)
    with pytest.raises(ValueError, match="garbage.pt"):
        ckpt.load_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="foreign.pt is not a synthlab checkpoint"):
        ckpt.load_pretrained(foreign)
    future = tmp_path / "future.pt"
    torch.save({**_payload(build_unet("tiny", 2)), "format": 99}, future)
    with pytest.raises(ValueError, match="format 99"):
        ckpt.load_checkpoint(future)
    with pytest.raises(ValueError, match="format"):
        ckpt.save_checkpoint(tmp_path / "x.pt", {"model": {}})


def test_names_resolve_to_shipped_weights_and_a_missing_name_says_none_ship(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ckpt, "WEIGHTS_DIR", tmp_path)  # an installation without shipped weights
    with pytest.raises(FileNotFoundError, match="ships no pretrained weights"):
        ckpt.load_pretrained("synthlab-3d-not-shipped")
    net = _trained_like_net()
    ckpt.save_checkpoint(tmp_path / "demo-2d.pt", _payload(net))
    assert ckpt.resolve_checkpoint("demo-2d") == tmp_path / "demo-2d.pt"
    assert ckpt.load_pretrained("demo-2d").config == net.config
    with pytest.raises(FileNotFoundError, match="shipped weights: demo-2d"):
        ckpt.load_checkpoint("other")


def test_random_states_round_trip() -> None:
    generators = {"synth": torch.Generator().manual_seed(1), "loss": torch.Generator().manual_seed(2)}
    state = ckpt.capture_rng(generators, torch.device("cpu"))
    expected = [torch.rand(3, generator=g) for g in generators.values()] + [torch.rand(3)]
    for generator in generators.values():
        torch.rand(5, generator=generator)  # move every stream on
    torch.rand(5)
    ckpt.restore_rng(state, generators, torch.device("cpu"))
    replayed = [torch.rand(3, generator=g) for g in generators.values()] + [torch.rand(3)]
    assert all(torch.equal(a, b) for a, b in zip(expected, replayed, strict=True))
    with pytest.raises(ValueError, match="crops"):
        ckpt.restore_rng(state, {"crops": torch.Generator()}, torch.device("cpu"))


def test_same_run_check_names_the_first_differing_field_and_ignores_free_ones() -> None:
    saved = {"lr": 1e-3, "seed": 0, "device": "cuda"}
    ckpt.check_same_run(saved, {"lr": 1e-3, "seed": 0, "device": "cpu"}, {"device"}, "run/checkpoint.pt")
    with pytest.raises(ValueError, match="seed is 1 but run/checkpoint.pt was trained with seed=0"):
        ckpt.check_same_run(saved, {"lr": 1e-3, "seed": 1, "device": "cpu"}, {"device"}, "run/checkpoint.pt")
