"""The known-answer protocols behind ``synthlab eval-reg``: which feature set registers real images best?

Registration itself (features and the ConvexAdam-style solver) lives in :mod:`synthlab.register`; this module
only builds experiments whose right answer is known and scores them with :mod:`synthlab.metrics`:

* co-registered contrasts of one subject: the fixed contrast is deformed by a known, seeded smooth field and
  registration must recover it (endpoint error, Dice when a label map exists);
* an MSD folder: inter-subject pairs of labelled cases, Dice before and after, with and without a simulated
  contrast change of the moving image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .checkpoint import load_backbone
from .data import (
    Case,
    Volume,
    data_name,
    declared_labels,
    load_case,
    load_coregistered,
    msd_entries,
    normalize_intensity,
    pick_name,
    resample,
    resolve_data,
)
from .data.frame import common_frame, to_frame, working_spacing
from .dist import resolve_device
from .metrics import endpoint_error, folding_percent, mean_dice, summarize
from .nets import RANDOM_PRESET
from .noise import pyramid_noise
from .progress import ProgressLike, progress_bar
from .register import FEATURE_SETS, RegistrationResult, register
from .registration_config import RegistrationConfig
from .spatial import warp

__all__ = ["CONTRAST_CHANGES", "ProtocolConfig", "evaluate_registration", "known_answer_scores", "load_feature_net",
           "random_contrast", "random_deformation", "working_grid"]



CONTRAST_CHANGES = ("none", "monotone", "non-monotone")


@dataclass(frozen=True)
class ProtocolConfig:
    """Known-answer experiments on real images.

    Attributes:
        size: longest side (voxels) of the isotropic working grid when the caller gives none (for MSD pairs,
            only cases longer than this are resampled).
        deformation_sides: coarse-grid sides (along the longest axis; shorter axes get proportionally fewer
            points, so the field is equally smooth along every axis) of the octaves of the synthetic deformation
            (2: an affine-like ramp; larger sides bend more locally).
        deformation_std_mm: standard deviation per octave and axis, mm. The defaults move voxels by about
            5 mm on average (13 mm at most) with Jacobian determinants in about [0.7, 1.3]: large motions, but
            strains that descriptors with fixed axes (MIND, convolutions) can follow.
        foreground: intensity (after 0.5-99.5 percentile scaling to [0, 1]) above which a voxel of the
            deformed fixed image counts for the endpoint error.
        contrast_knots: control points of the random intensity curve that simulates a contrast change.
        contrast_changes: which versions of an MSD pair's moving image register: as stored (``"none"``) and
            remapped by a random ``"monotone"`` or ``"non-monotone"`` curve (a pair that already crosses
            modalities needs only ``"none"``).
    """

    size: int = 128
    deformation_sides: tuple[int, ...] = (2, 4, 8)
    deformation_std_mm: tuple[float, ...] = (4.0, 3.0, 1.5)
    foreground: float = 0.05
    contrast_knots: int = 6
    contrast_changes: tuple[str, ...] = CONTRAST_CHANGES

    def __post_init__(self) -> None:
        if not self.contrast_changes or any(c not in CONTRAST_CHANGES for c in self.contrast_changes):
            raise ValueError(f"contrast_changes must be a non-empty subset of {CONTRAST_CHANGES}, got "
                             f"{self.contrast_changes!r}")
        if len(self.deformation_sides) != len(self.deformation_std_mm):
            raise ValueError(f"deformation_sides {self.deformation_sides} and deformation_std_mm "
                             f"{self.deformation_std_mm} must have one entry per octave")


def random_deformation(size: Sequence[int], spacing: Sequence[float], generator: torch.Generator,
                       config: ProtocolConfig | None = None) -> torch.Tensor:
    """A smooth random displacement ``(dim, *size)``, in voxels of ``spacing`` mm (one per axis)."""
    config = config or ProtocolConfig()
    std = torch.tensor([config.deformation_std_mm], device=generator.device)
    mm = pyramid_noise(1, len(size), size, config.deformation_sides, generator, std)[0]
    return mm / torch.tensor(spacing, device=mm.device).view(-1, *([1] * len(size)))


def random_contrast(image: torch.Tensor, generator: torch.Generator, monotone: bool = True,
                    knots: int = 6) -> torch.Tensor:
    """Remap intensities in [0, 1] through a random piecewise-linear curve: a simulated contrast change.

    A monotone curve keeps the order of tissue intensities; a non-monotone one reorders them, as between MR
    sequences, which defeats intensity similarity but not self-similarity descriptors.
    """
    if knots < 2:
        raise ValueError(f"knots must be >= 2, got {knots}")
    values = torch.rand(knots, generator=generator, device=generator.device)
    if monotone:
        values = torch.cat([values.new_zeros(1), values[1:].cumsum(0)])
        values = values / values[-1].clamp_min(1e-6)
    values = values.to(image.device)
    position = image.clamp(0, 1) * (knots - 1)
    lower = position.floor().long().clamp_max(knots - 2)
    fraction = position - lower
    return values[lower] * (1 - fraction) + values[lower + 1] * fraction


def load_feature_net(checkpoint: str, device: torch.device) -> tuple[nn.Module, str]:
    """The 3D feature network and a sentence saying what it is (a random init is stated, never hidden); an
    encoder-only method's network gives its encoder features.

    ``"none"`` is :func:`~synthlab.checkpoint.load_backbone`'s seeded random network, here of the fixed
    :data:`RANDOM_PRESET` with seed 0, so the baseline does not change with the active profile.
    """
    if checkpoint == "none":
        net = load_backbone("none", 3, preset=RANDOM_PRESET, seed=0, device=device)
        return net.eval(), f"random initialisation of the {RANDOM_PRESET!r} preset (checkpoint='none')"
    net = load_backbone(checkpoint, 3, device=device, features=True)
    return net, f"pretrained weights from {checkpoint} ({getattr(net, 'feature_source', 'output')} features)"


def _summary(rows: list[dict], skip: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Mean and sample SD (0.0 for a single seed) of every numeric column of ``rows`` except ``skip``."""
    out = {}
    for key in (k for k in rows[0] if k not in skip):
        stats = summarize([float(row[key]) for row in rows])
        out[key] = {"mean": stats["mean"], "std": stats["std"] if stats["std"] is not None else 0.0}
    return out


def working_grid(volume: Volume, size: int) -> tuple[torch.Tensor, float]:
    """Resample to isotropic voxels, the longest side ``size`` voxels; intensities scaled to [0, 1].

    Returns the image and its voxel size in mm; notebooks use it to show exactly what the protocol registers.
    """
    spacing = max(n * s for n, s in zip(volume.array.shape, volume.spacing, strict=True)) / size
    return normalize_intensity(resample(volume, spacing).array), spacing


def _run_all(fixed: torch.Tensor, moving: torch.Tensor, features: Sequence[str], net: nn.Module | None,
             config: RegistrationConfig, bar: ProgressLike) -> dict[str, RegistrationResult]:
    results = {}
    for name in features:
        results[name] = register(fixed, moving, name, net if "network" in name else None, config=config)
        bar.set_postfix(last=name)
        bar.update(1)
    return results


def known_answer_scores(result: RegistrationResult, truth: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """One row of the known-deformation protocol: endpoint error before and after, folding, seconds.

    ``truth`` is the displacement that deformed the fixed image and ``mask`` where the error counts.
    """
    return {"epe_before": endpoint_error(torch.zeros_like(truth), truth, mask),
            "epe": endpoint_error(result.displacement, truth, mask),
            "folding_percent": folding_percent(result.displacement), "seconds": result.seconds}


def _coregistered_protocol(folder: Path, names: tuple[str, str], features: Sequence[str],
                           net: nn.Module | None, seeds: Sequence[int], size: int, device: torch.device,
                           config: RegistrationConfig, protocol: ProtocolConfig, bar: ProgressLike) -> dict:
    subject = load_coregistered(folder)
    fixed, moving = (pick_name(list(subject.contrasts), name, f"{role} contrast")
                     for name, role in zip(names, ("fixed", "moving"), strict=True))
    fixed_image, spacing = working_grid(subject.contrasts[fixed], size)
    fixed_image = fixed_image.to(device)
    moving_image = working_grid(subject.contrasts[moving], size)[0].to(device)
    if not bool((fixed_image > protocol.foreground).any()):
        raise ValueError(f"{subject.contrasts[fixed].name} has no voxel above the foreground threshold "
                         f"{protocol.foreground} once scaled to [0, 1]; is the image empty?")
    label = None if subject.label is None else resample(subject.label, spacing).array[None, None].to(device)
    rows: dict[str, list[dict]] = {name: [] for name in features}
    for seed in seeds:
        generator = torch.Generator().manual_seed(seed)
        truth = random_deformation(fixed_image.shape, (spacing,) * 3, generator, protocol).to(device)
        deformed = warp(fixed_image[None, None], truth[None])[0, 0]
        mask = deformed > protocol.foreground
        for name, result in _run_all(deformed, moving_image, features, net, config, bar).items():
            row = {"seed": seed, **known_answer_scores(result, truth, mask)}
            if label is not None:
                row["dice"] = mean_dice(warp(label, result.displacement[None], mode="nearest")[0, 0],
                                         warp(label, truth[None], mode="nearest")[0, 0])
            rows[name].append(row)
    return {"protocol": "co-registered contrasts: the fixed contrast is deformed by a known seeded smooth "
                        "field and the undeformed moving contrast registered to it, so the estimate should "
                        "equal the field; endpoint error in voxels of the working grid, inside the deformed "
                        "fixed foreground",
            "fixed": fixed, "moving": moving, "shape": list(fixed_image.shape), "spacing_mm": spacing,
            "results": {name: _summary(runs, ("seed",)) for name, runs in rows.items()}, "per_seed": rows}


def _pair_grid(pair: Sequence[Case], size: int | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Image and label map of the fixed and the moving case in one physical frame (:mod:`synthlab.data.frame`):
    the fixed scan's field of view on RAS axes, isotropic voxels with the longest side of either case at most
    ``size`` (whole-brain scans are resampled; small crops keep their voxels), the moving scan sampled there in
    world coordinates after aligning the centres of mass of the two foregrounds; intensities scaled to [0, 1]."""
    fixed, moving = pair
    frame, fixed_image = common_frame(fixed.image, moving.image, working_spacing([fixed.image, moving.image], size))
    return [(normalize_intensity(fixed_image.array), to_frame(fixed.label, frame, moving=False)),
            (normalize_intensity(to_frame(moving.image, frame)), to_frame(moving.label, frame))]


def _msd_protocol(folder: Path, names: tuple[str | None, str | None], features: Sequence[str],
                  net: nn.Module | None, seeds: Sequence[int], device: torch.device,
                  config: RegistrationConfig, protocol: ProtocolConfig, bar: ProgressLike,
                  size: int | None = None) -> dict:
    cases = {image.name.split(".")[0]: (image, label) for image, label in msd_entries(folder) if label}
    manifest = folder / "dataset.json"
    declared = declared_labels(manifest)
    if len(cases) < 2:
        raise ValueError(f"{folder} needs at least two labelled cases for inter-subject registration")
    ordered = sorted(cases)
    pairs, loaded = {}, {}
    for seed in seeds:  # every pair is drawn, loaded and checked before the first registration
        generator = torch.Generator().manual_seed(seed)
        drawn = torch.randperm(len(ordered), generator=generator)[:2].tolist()
        pair = [pick_name(ordered, name, f"{role} case") if name else ordered[index]
                for name, role, index in zip(names, ("fixed", "moving"), drawn, strict=True)]
        if names[0] and not names[1]:  # a named fixed case meets every other case in turn, one per seed
            others = [name for name in ordered if name != pair[0]]
            pair[1] = others[seed % len(others)]
        pairs[seed] = (pair, generator)
        for name in pairs[seed][0]:
            if name not in loaded:
                loaded[name] = load_case(*cases[name], manifest, declared)
    rows: dict[str, dict[str, list[dict]]] = {name: {} for name in features}
    for seed, (pair, generator) in pairs.items():
        (fixed, fixed_label), (moving, moving_label) = [
            (image.to(device), label.to(device)) for image, label in _pair_grid([loaded[n] for n in pair], size)]
        before = mean_dice(moving_label, fixed_label)
        changes = {"none": moving,  # both curves are drawn whichever run, so each seed's curves stay the same
                   "monotone": random_contrast(moving, generator, True, protocol.contrast_knots),
                   "non-monotone": random_contrast(moving, generator, False, protocol.contrast_knots)}
        for change in protocol.contrast_changes:
            image = changes[change]
            for name, result in _run_all(fixed, image, features, net, config, bar).items():
                moved = warp(moving_label[None, None], result.displacement[None], mode="nearest")[0, 0]
                rows[name].setdefault(change, []).append({
                    "seed": seed, "fixed": pair[0], "moving": pair[1], "grid": list(fixed.shape),
                    "dice_before": before,
                    "dice": mean_dice(moved, fixed_label),
                    "folding_percent": folding_percent(result.displacement), "seconds": result.seconds})
    skip = ("seed", "fixed", "moving", "grid")
    return {"protocol": "inter-subject pairs of labelled cases (drawn per seed unless named; a named fixed case "
                        "meets the others in turn), placed in one world frame (the fixed scan's field of view on "
                        "RAS axes, isotropic voxels when longer than the working size; the moving scan sampled "
                        "there after aligning the centres of mass of the two foregrounds): mean foreground Dice of "
                        "the warped moving labels before and after registration, with the moving image unchanged "
                        "or remapped by a random monotone or non-monotone intensity curve",
            "results": {name: {change: _summary(runs, skip) for change, runs in by_change.items()}
                        for name, by_change in rows.items()}, "per_seed": rows}


def evaluate_registration(data: str | Path, fixed: str | None = None, moving: str | None = None,
                          checkpoint: str = "none", features: Sequence[str] = FEATURE_SETS, seeds: int = 3,
                          size: int | None = None, device: str | torch.device = "auto",
                          config: RegistrationConfig | None = None,
                          protocol: ProtocolConfig | None = None, progress: bool = True) -> dict:
    """Compare feature sets on real images where the right answer is known; returns a JSON-able dict.

    * Co-registered contrasts (``brain_tumor_mri/study1``): ``fixed`` / ``moving`` name contrasts (file
      stems; case-insensitive unique prefixes work). Both are resampled to isotropic voxels, at most ``size``
      per side; per seed the fixed contrast is deformed by a known smooth field that registration must
      recover (endpoint error; Dice too when the folder holds a label map).
    * An MSD folder (``hippocampus``): per seed a random pair of subjects (or the named cases); Dice before
      and after, without and with a simulated contrast change of the moving image.

    Args:
        checkpoint: weights for the network feature sets (path or shipped name); ``"none"`` uses the seed-0
            random network of :data:`RANDOM_PRESET`, which the results state.
        seeds: number of seeds, ``0 .. seeds - 1``.
        size: longest side of the working grid (default ``protocol.size``); MSD pairs keep their voxels
            unless a case is longer than that (a 1 mm whole-brain pair registers at about 1.7 mm, in minutes).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
    """
    config, protocol = config or RegistrationConfig(), protocol or ProtocolConfig()
    if not features or any(name not in FEATURE_SETS for name in features):
        raise ValueError(f"features must be a non-empty subset of {FEATURE_SETS}, got {list(features)}")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    if size is not None and size < 8:
        raise ValueError(f"size must be at least 8 voxels, got {size}")
    folder = resolve_data(data)
    device = resolve_device(device)
    net, network = (load_feature_net(checkpoint, device) if any("network" in name for name in features)
                    else (None, "not used"))
    msd = (folder / "dataset.json").is_file()
    if not msd and (fixed is None or moving is None):
        raise ValueError(f"{folder} holds co-registered contrasts: name the fixed and the moving one")
    runs = seeds * len(features) * (len(protocol.contrast_changes) if msd else 1)
    with torch.no_grad(), progress_bar(runs, "eval-reg", enabled=progress) as bar:
        if msd:
            report = _msd_protocol(folder, (fixed, moving), features, net, range(seeds), device, config,
                                   protocol, bar, size or protocol.size)
        else:
            report = _coregistered_protocol(folder, (fixed, moving), features, net, range(seeds),
                                            size or protocol.size, device, config, protocol, bar)
    return {"data": data_name(folder), "checkpoint": checkpoint, "network": network, "features": list(features),
            "seeds": list(range(seeds)), "device": str(device), **report,
            "registration_config": asdict(config), "protocol_config": asdict(protocol)}
