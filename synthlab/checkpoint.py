"""Self-describing checkpoints: atomic saves, clear load errors, a network rebuilt from the file alone.

A synthlab checkpoint is one ``torch.save``'d dict::

    {"format": 1,
     "config": TrainConfig as a dict,    # the full run config, so --resume can refuse a different run
     "model_config": net.config,          # UNet(**model_config) rebuilds the network, no code needed
     "model": state_dict,                 # the bare network (no DDP ``module.`` / compile ``_orig_mod.``)
     "objective": state_dict,             # heads, EMA teacher
     "optimizer": state_dict,
     "step": int,                         # optimiser steps taken; the lr schedule is a function of it
     "rng": [dict per rank],              # generator states (see capture_rng), one entry per DDP rank
     "feature_source": "output" | "encoder",  # the features the objective is meant to give (nets.feature_network)
     "seconds": float, "loss": float}     # training time so far, last loss

Only containers, numbers, strings and tensors go in, so loading uses ``weights_only=True`` and a downloaded
file cannot run code. This module imports :mod:`synthlab.nets` only (never ``train``), so evaluation code
loads weights without the training stack. :func:`load_backbone` is the one way every evaluation gets a network:
a checkpoint, a shipped name, or ``"none"`` (a seeded random network of a named preset).
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .io import write_atomic
from .nets import UNet, feature_network, seeded, unet_config
from .profiles import get_profile

__all__ = [
    "ALIASES",
    "FORMAT_VERSION",
    "WEIGHTS_DIR",
    "capture_rng",
    "check_same_run",
    "load_backbone",
    "load_checkpoint",
    "load_pretrained",
    "random_backbone",
    "resolve_checkpoint",
    "restore_rng",
    "save_checkpoint",
    "strip_prefixes",
]

FORMAT_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# The best shipped network of each dimension by the correspondence probe (docs/experiments.md).
ALIASES = {"synthlab-2d": "synthlab-voxnce-2d", "synthlab-3d": "synthlab-voxnce-3d"}
_REQUIRED_KEYS = ("format", "model_config", "model")
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to a temporary file, then ``os.replace`` it: a kill leaves no half checkpoint."""
    if payload.get("format") != FORMAT_VERSION:
        raise ValueError(f"payload must carry format={FORMAT_VERSION}, got {payload.get('format')!r}")
    return write_atomic(path, lambda stream: torch.save(payload, stream))


def resolve_checkpoint(path_or_name: str | Path) -> Path:
    """An existing file, else the shipped weights ``synthlab/weights/<name>.pt``; else a FileNotFoundError.

    Shipped names (like ``"synthlab-3d"``) let notebooks and the command line say ``--checkpoint synthlab-3d``
    without knowing where the package is installed.
    """
    path = Path(path_or_name).expanduser()
    if path.is_file():
        return path
    name = str(path_or_name)
    shipped = WEIGHTS_DIR / f"{ALIASES.get(name, name)}.pt"
    if shipped.is_file():
        return shipped
    if path.exists():
        raise FileNotFoundError(f"checkpoint {name!r} is a folder, not a checkpoint file")
    available = sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt")) if WEIGHTS_DIR.is_dir() else []
    note = (f"shipped weights: {', '.join(available)}" if available
            else "synthlab ships no pretrained weights yet; train some with `python -m synthlab pretrain`")
    raise FileNotFoundError(f"checkpoint {name!r} not found: no such file and no shipped weights of that "
                            f"name in {WEIGHTS_DIR} ({note})")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a synthlab checkpoint (a path or a shipped name); tensors land on ``map_location``.

    Raises:
        FileNotFoundError: neither a file nor a shipped name.
        ValueError: not a torch file, not a synthlab checkpoint, or an unknown format; names the file.
    """
    path = resolve_checkpoint(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - arbitrary bytes make the unpickler raise almost anything
        raise ValueError(f"{path} is not a readable synthlab checkpoint ({_load_failure(err)})") from err
    if not isinstance(payload, dict) or any(key not in payload for key in _REQUIRED_KEYS):
        raise ValueError(f"{path} is not a synthlab checkpoint (a dict with keys {list(_REQUIRED_KEYS)})")
    if payload["format"] != FORMAT_VERSION:
        raise ValueError(f"{path} has checkpoint format {payload['format']!r}; this synthlab reads format "
                         f"{FORMAT_VERSION}")
    if not isinstance(payload["model_config"], Mapping) or not all(isinstance(k, str) for k in payload["model_config"]):
        raise ValueError(f"{path}: model_config must be a dict of UNet arguments, got "
                         f"{type(payload['model_config']).__name__}")
    model = payload["model"]
    if not isinstance(model, Mapping) or not all(isinstance(v, torch.Tensor) for v in model.values()):
        raise ValueError(f"{path}: 'model' must be a state dict (names -> tensors)")
    return payload


def _load_failure(err: Exception) -> str:
    """One line for why ``torch.load`` failed; torch's ``weights_only`` refusal spans half a screen."""
    text = str(err)
    if "Unsupported global" in text:  # a pickled Python object: synthlab checkpoints hold tensors and containers
        culprit = text.split("Unsupported global:", 1)[1].split(" was not", 1)[0].strip()
        return f"it holds a pickled Python object ({culprit}), which weights-only loading refuses"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(err).__name__}: {first[:200]}" if first else type(err).__name__


def strip_prefixes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) key prefixes, in any nesting order."""
    cleaned = {}
    for key, value in state_dict.items():
        while key.startswith(_WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        cleaned[key] = value
    return cleaned


def load_pretrained(path: str | Path, device: str | torch.device = "cpu") -> UNet:
    """The pretrained network of a checkpoint (path or shipped name), rebuilt from its config, in eval mode.

    Example:
        >>> net = load_pretrained("runs/supcon3d/checkpoint.pt")  # doctest: +SKIP
        >>> features = net(image)                                  # (B, out_channels, *size)
    """
    return _network(load_checkpoint(path, map_location="cpu"), path).to(device).eval()


def _network(payload: dict[str, Any], path: str | Path) -> UNet:
    """The network of a loaded checkpoint, its weights checked against its config."""
    try:
        net = UNet(**payload["model_config"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: model_config does not describe a synthlab UNet ({err})") from err
    state = strip_prefixes(payload["model"])
    expected = net.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{path}: the weights do not match the stored model_config ({len(missing)} missing, "
                         f"{len(unexpected)} unexpected tensors, e.g. {(missing or unexpected)[0]!r})")
    wrong = [k for k, v in state.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if wrong:
        raise ValueError(f"{path}: tensor {wrong[0]!r} has shape {tuple(state[wrong[0]].shape)}, the stored "
                         f"model_config needs {tuple(expected[wrong[0]].shape)}")
    broken = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:  # a diverged run: its features are NaN and every score computed from them meaningless
        raise ValueError(f"{path}: the weights hold NaN or infinite values ({broken[0]!r}, {len(broken)} tensors "
                         "in all); the run diverged, use an earlier checkpoint or retrain with a lower --lr")
    net.load_state_dict(state)
    return net


def random_backbone(config: Mapping[str, Any], seed: int) -> UNet:
    """A freshly initialised ``UNet(**config)`` seeded by ``seed``.

    Initialisation runs under :func:`~synthlab.nets.seeded`: building a network never changes what the caller
    draws next, and the same seed gives the network ``pretrain`` starts from.
    """
    with seeded(seed):
        return UNet(**config)


def load_backbone(spec: str | Path | None, dim: int, preset: str | None = None, seed: int = 0,
                  device: str | torch.device = "cpu", features: bool = False) -> nn.Module:
    """The network an evaluation works with: a checkpoint path, a shipped name, or none.

    ``spec`` ``None`` or ``"none"`` gives a random network of ``preset`` (default: the active profile's preset
    for ``dim``) seeded by ``seed``, so a "no pretraining" baseline is as reproducible as a checkpoint. With
    ``features`` the result gives the features the checkpoint's objective is meant to give (its
    ``feature_source``: the output, or the encoder levels of an encoder-only method such as VoCo); without, the
    whole network (to fine-tune).

    Raises:
        ValueError: ``preset`` given with a checkpoint (the file fixes the architecture), or a checkpoint whose
            network is not ``dim``-dimensional.
        FileNotFoundError: neither a file nor a shipped name.
    """
    if spec is None or str(spec) == "none":
        name = preset or get_profile().preset(dim)
        return random_backbone(unet_config(name, dim), seed).to(device)
    if preset is not None:
        raise ValueError("preset applies only to checkpoint='none'; a checkpoint fixes its architecture")
    payload = load_checkpoint(spec)
    net = _network(payload, spec).to(device).eval()
    if net.dim != dim:
        raise ValueError(f"dim={dim} but checkpoint {str(spec)!r} holds a {net.dim}D network")
    return feature_network(net, str(payload.get("feature_source", "output"))) if features else net


def capture_rng(generators: Mapping[str, torch.Generator],
                device: torch.device) -> dict[str, torch.Tensor | None]:
    """States of the named generators, plus torch's global CPU (and, on CUDA, device) generator."""
    state: dict[str, torch.Tensor | None] = {name: g.get_state() for name, g in generators.items()}
    state["torch"] = torch.get_rng_state()
    state["cuda"] = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return state


def restore_rng(state: Mapping[str, torch.Tensor | None], generators: Mapping[str, torch.Generator],
                device: torch.device) -> None:
    """Inverse of :func:`capture_rng`; a generator missing from ``state`` is a ValueError naming it."""
    missing = sorted(name for name in generators if name not in state)
    if missing:
        raise ValueError(f"the checkpoint holds no random state for {missing}")
    for name, generator in generators.items():
        generator.set_state(state[name])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


def check_same_run(saved: Mapping[str, Any], current: Mapping[str, Any], free: Container[str],
                   path: str | Path) -> None:
    """Refuse to resume a different run: a ValueError names the first differing field outside ``free``."""
    for key, value in current.items():
        if key not in free and saved.get(key) != value:
            raise ValueError(f"resume: {key} is {value!r} but {path} was trained with "
                             f"{key}={saved.get(key)!r}")
