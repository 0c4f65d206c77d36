"""Does a network's feature transfer to real images? A correspondence probe on co-registered contrasts.

Two contrasts of one subject (say T1 and FLAIR) share one grid, so the true match of every voxel is the same
voxel. For query voxels in the fixed image's foreground we compare the query's feature with the moving
image's features at every voxel of a cube of radius ``R`` around the same position; the query is a *hit* when
the most similar one (cosine) lies in the 3x3(x3) block around the true position. Chance is
``3**d / (2R+1)**d`` (9/169 in 2D at R = 6). Flat regions can never match (all candidates tie), so 1.0 is out
of reach; an untrained network is the bar to clear and MIND-SSC, the hand-made modality-independent
descriptor, the bar to beat. ``pair_cosine``, the mean cosine between random voxel pairs of one image, guards
against collapse: features that are all alike (1.0) cannot tell anything apart.

2D networks run slice by slice along the coarsest axis (anisotropic series with 6.5 mm slices suit them);
3D networks see the volume resampled to isotropic voxels.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import load_backbone, random_backbone
from .data import Volume, data_name, load_coregistered, normalize_intensity, pick_name, resample, resolve_data
from .dims import check_dim, slice_axis
from .features import EvalMode, cosine_map, extract_features, normalize_features
from .losses import OBJECTIVES, Objective
from .mind import mind_ssc
from .nets import RANDOM_PRESET, feature_network
from .regions import label_contrast, region_variance_share
from .spatial import flat_index
from .synth import SynthConfig, SynthEngine
from .train import TrainConfig

__all__ = ["STANDARD_SIZE", "CorrespondenceConfig", "CorrespondenceProbe", "TrainingProbe", "compare_features",
           "evaluate_feature_pairs", "evaluate_features", "prepare_pair", "probe_features", "probe_networks"]


STANDARD_SIZE = {2: 256, 3: 96}  # working side per dimension of every probe number this project reports


@dataclass(frozen=True)
class CorrespondenceConfig:
    """Settings of the correspondence probe.

    Attributes:
        dim: 2 (slice by slice) or 3 (isotropic volume).
        size: working side in voxels: in 2D the longest in-plane side, in 3D the longest side.
        radius: half-side R of the search cube around the true position (working voxels).
        queries: query voxels drawn in the fixed image's foreground.
        pairs: random voxel pairs for ``pair_cosine``.
        foreground: intensity (in [0, 1] after percentile scaling) above which a voxel is foreground.
        seed: seeds the query and pair draws (and the ``random`` baseline's initialisation).
        window: sliding-window side for 3D feature extraction (None: the whole volume at once).
        center: subtract each image's (each slice's, in 2D) mean network feature before the cosine. Raw UNet
            outputs share a large common component (random voxel pairs of an untrained net have cosine ~0.98)
            that drowns the part that tells voxels apart; untrained and trained networks are treated alike.
    """

    dim: int = 2
    size: int = 256
    radius: int = 6
    queries: int = 2000
    pairs: int = 2000
    foreground: float = 0.1
    seed: int = 0
    window: int | None = 96
    center: bool = True

    def __post_init__(self) -> None:
        check_dim(self.dim)
        for name in ("size", "radius", "queries", "pairs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if not 0.0 <= self.foreground < 1.0:
            raise ValueError(f"foreground must lie in [0, 1), got {self.foreground!r}")
        if self.size <= 2 * self.radius:  # queries sit `radius` voxels inside the border on every side
            raise ValueError(f"size {self.size} leaves no query voxel {self.radius} voxels from the border; "
                             f"use a size above {2 * self.radius} or a smaller radius")

    @classmethod
    def for_dim(cls, dim: int, **overrides: Any) -> CorrespondenceConfig:
        """The probe as the README measures it: 256 px slices in 2D, a 96^3 isotropic volume in 3D."""
        return cls(dim=dim, **{"size": STANDARD_SIZE[check_dim(dim)], **overrides})

    @property
    def chance_rate(self) -> float:
        """Probability that a uniformly random candidate lies in the 3x3(x3) block."""
        return (3 / (2 * self.radius + 1)) ** self.dim


def prepare_pair(fixed: Volume, moving: Volume, config: CorrespondenceConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Both contrasts on the working grid, intensities percentile-scaled to [0, 1].

    Returns ``(S, H, W)`` stacks of slices in 2D (slice axis first) and ``(D, H, W)`` volumes in 3D.
    """
    if tuple(fixed.array.shape) != tuple(moving.array.shape):
        raise ValueError(f"fixed and moving must share one grid, got shapes {tuple(fixed.array.shape)} and "
                         f"{tuple(moving.array.shape)}")
    spacing = list(fixed.spacing)
    extent = [n * s for n, s in zip(fixed.array.shape, spacing, strict=True)]
    if config.dim == 2:
        axis = slice_axis(fixed.spacing, fixed.array.shape)
        step = max(e for k, e in enumerate(extent) if k != axis) / config.size
        target = tuple(spacing[k] if k == axis else step for k in range(3))
    else:
        axis, target = 0, (max(extent) / config.size,) * 3
    images = [normalize_intensity(resample(v, target).array).movedim(axis, 0) for v in (fixed, moving)]
    return images[0], images[1]


def _map_features(net: nn.Module, image: torch.Tensor, config: CorrespondenceConfig) -> torch.Tensor:
    """``(C, *image.shape)`` network features; 2D networks see one slice (first axis) at a time."""
    if config.dim == 2:
        features = torch.stack([extract_features(net, plane, progress=False) for plane in image], dim=1)
        spatial: tuple[int, ...] = (2, 3)
    else:
        features = extract_features(net, image, window=config.window, progress=False)
        spatial = (1, 2, 3)
    return features - features.mean(spatial, keepdim=True) if config.center else features


def _mind(image: torch.Tensor, dim: int) -> torch.Tensor:
    if dim == 2:
        return mind_ssc(image[:, None]).movedim(1, 0)  # slices as the batch
    return mind_ssc(image[None, None])[0]


class CorrespondenceProbe:
    """Queries and candidate cubes drawn once for a fixed/moving pair; :meth:`score` rates any feature maps.

    Built once, it probes many networks (or one network at many training steps) on the same draws, so
    differences between methods are not differences between draws.
    """

    def __init__(self, fixed: torch.Tensor, moving: torch.Tensor, config: CorrespondenceConfig) -> None:
        self.fixed, self.moving, self.config = fixed.float().cpu(), moving.float().cpu(), config
        generator = torch.Generator().manual_seed(config.seed)
        r = config.radius
        shape = torch.tensor(fixed.shape)
        # In 2D the first axis indexes slices: the cube stays inside one slice.
        low = torch.tensor([0, r, r] if config.dim == 2 else [r, r, r])
        high = shape - low  # exclusive
        inside = torch.zeros_like(self.fixed, dtype=torch.bool)
        inside[tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))] = True
        candidates = torch.nonzero(inside & (self.fixed > config.foreground))
        if len(candidates) == 0:
            raise ValueError(f"the fixed image has no foreground voxel above {config.foreground} at least "
                             f"{r} voxels from its border")
        pick = torch.randperm(len(candidates), generator=generator)[:config.queries]
        self.queries = candidates[pick]  # (Q, 3)
        axes = [torch.zeros(1, dtype=torch.long)] if config.dim == 2 else []
        axes += [torch.arange(-r, r + 1)] * config.dim
        self.offsets = torch.cartesian_prod(*axes).reshape(-1, 3)  # (K, 3)
        self.near = self.offsets.abs().amax(1) <= 1  # the 3x3(x3) block
        grid = tuple(fixed.shape)
        self.query_index = flat_index(self.queries, grid)  # (Q,)
        self.cube_index = flat_index(self.queries[:, None] + self.offsets[None].to(self.queries), grid)  # (Q, K)
        pair = torch.randint(len(candidates), (2, config.pairs), generator=generator)
        self.pair_index = flat_index(candidates[pair], grid)  # (2, P)

    def score(self, fixed_features: torch.Tensor, moving_features: torch.Tensor) -> dict[str, float]:
        """Match rate, median error of the best match (voxels) and pair cosine of ``(C, *grid)`` features."""
        a = normalize_features(fixed_features.float()).flatten(1)
        b = normalize_features(moving_features.float()).flatten(1)
        hits, errors = [], []
        for start in range(0, len(self.queries), 256):
            q = a[:, self.query_index[start:start + 256]]  # (C, q)
            cube = b[:, self.cube_index[start:start + 256]]  # (C, q, K)
            best = torch.einsum("cq,cqk->qk", q, cube).argmax(1).cpu()  # the draws live on the CPU
            hits.append(self.near[best])
            errors.append(self.offsets[best].float().norm(dim=1))
        pair_cosine = (a[:, self.pair_index[0]] * a[:, self.pair_index[1]]).sum(0).mean().cpu()
        return {"match_rate": float(torch.cat(hits).float().mean()),
                "median_error_vox": float(torch.cat(errors).median()),
                "pair_cosine": float(pair_cosine)}

    def features(self, net: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's features of both images."""
        return tuple(_map_features(net, image, self.config)  # type: ignore[return-value]
                     for image in (self.fixed, self.moving))

    def score_net(self, net: nn.Module) -> dict[str, float]:
        return self.score(*self.features(net))


def probe_features(fixed: Volume, moving: Volume, config: CorrespondenceConfig, net: nn.Module | None = None,
                   random_preset: str = RANDOM_PRESET) -> dict[str, Any]:
    """Run the probe for ``mind``, ``random`` and, given ``net``, ``network`` and ``network+mind``.

    ``random`` is an untrained network of ``net``'s architecture (``random_preset`` without one), initialised
    from ``config.seed``, so a trained network is compared with the same network before training.

    Returns:
        ``{"settings": {..., "chance_rate"}, "methods": {method: {"match_rate", "median_error_vox",
        "pair_cosine"}}}``.
    """
    if net is not None:
        return probe_networks(fixed, moving, config, {"network": net})["network"]
    fixed_image, moving_image = prepare_pair(fixed, moving, config)
    probe = CorrespondenceProbe(fixed_image, moving_image, config)
    random_net = load_backbone("none", config.dim, preset=random_preset, seed=config.seed).eval()
    methods = {"mind": probe.score(_mind(fixed_image, config.dim), _mind(moving_image, config.dim)),
               "random": probe.score_net(random_net)}
    return {"settings": _settings(config, probe, fixed_image), "methods": methods}


def probe_networks(fixed: Volume, moving: Volume, config: CorrespondenceConfig,
                   nets: Mapping[str, nn.Module]) -> dict[str, dict[str, Any]]:
    """:func:`probe_features` for several networks on the same draws, one report per name.

    MIND, and the random baseline of each distinct architecture, are computed once and shared by the reports:
    comparing four objectives costs four networks' features, not eight.
    """
    for net in nets.values():
        if getattr(net, "dim", config.dim) != config.dim:
            raise ValueError(f"the network is {net.dim}D but the probe runs in {config.dim}D (--dim)")
    fixed_image, moving_image = prepare_pair(fixed, moving, config)
    probe = CorrespondenceProbe(fixed_image, moving_image, config)
    mind = (_mind(fixed_image, config.dim), _mind(moving_image, config.dim))
    mind_score = probe.score(*mind)
    baselines: dict[str, dict[str, float]] = {}  # by architecture
    reports = {}
    for name, net in nets.items():
        source = getattr(net, "feature_source", "output")
        architecture = json.dumps({**net.config, "features": source}, sort_keys=True)
        if architecture not in baselines:  # the same features of the same network before training
            untrained = feature_network(random_backbone(net.config, config.seed), source)
            baselines[architecture] = probe.score_net(untrained.eval())
        fixed_net, moving_net = probe.features(net)
        methods = {"mind": mind_score, "random": baselines[architecture],
                   "network": probe.score(fixed_net, moving_net),
                   "network+mind": probe.score(_joined(fixed_net, mind[0]), _joined(moving_net, mind[1]))}
        reports[name] = {"settings": _settings(config, probe, fixed_image), "methods": methods}
    return reports


def _joined(*groups: torch.Tensor) -> torch.Tensor:
    """Feature groups side by side, each at unit norm per voxel, so neither dominates the cosine."""
    return torch.cat([normalize_features(group) for group in groups])


def _settings(config: CorrespondenceConfig, probe: CorrespondenceProbe, fixed_image: torch.Tensor) -> dict[str, Any]:
    return {**asdict(config), "chance_rate": config.chance_rate, "grid": list(fixed_image.shape),
            "n_queries": len(probe.queries)}


def _load_pair(data: str | Path, fixed: str, moving: str,
               role: str = "") -> tuple[Path, str, str, Volume, Volume]:
    """A co-registered folder's two named contrasts (names or unique prefixes; ``role`` prefixes errors)."""
    folder = resolve_data(data)
    subject = load_coregistered(folder)
    names = list(subject.contrasts)
    fixed_name = pick_name(names, fixed, f"{role}fixed contrast")
    moving_name = pick_name(names, moving, f"{role}moving contrast")
    return folder, fixed_name, moving_name, subject.contrasts[fixed_name], subject.contrasts[moving_name]


def evaluate_features(data: str | Path, fixed: str, moving: str, checkpoint: str | None = None,
                      config: CorrespondenceConfig | None = None, preset: str = RANDOM_PRESET) -> dict[str, Any]:
    """``synthlab eval-features``: the probe on two co-registered contrasts of a data folder.

    Args:
        data: a folder of co-registered contrasts, or its name under ``$SYNTHLAB_DATA``.
        fixed, moving: contrast names (file stems, or unique case-insensitive prefixes).
        checkpoint: a checkpoint path or shipped name; None or ``"none"`` probes ``mind`` and ``random`` only.
        config: probe settings.
        preset: architecture of the ``random`` baseline when there is no checkpoint.
    """
    config = config or CorrespondenceConfig()
    folder, fixed_name, moving_name, fixed_volume, moving_volume = _load_pair(data, fixed, moving)
    net = None if checkpoint in (None, "none") else load_backbone(checkpoint, config.dim, features=True)
    results = probe_features(fixed_volume, moving_volume, config, net, preset)
    results["settings"].update({"data": str(folder), "fixed": fixed_name, "moving": moving_name,
                                "checkpoint": checkpoint or "none"})
    return results


def compare_features(data: str | Path, fixed: str, moving: str, checkpoints: Mapping[str, str],
                     config: CorrespondenceConfig | None = None) -> dict[str, dict[str, Any]]:
    """:func:`evaluate_features` for several checkpoints at once (``{name: checkpoint}``), one report per name,
    each equal to what ``evaluate_features`` gives for that checkpoint; MIND and the baselines are computed once.
    """
    config = config or CorrespondenceConfig()
    folder, fixed_name, moving_name, fixed_volume, moving_volume = _load_pair(data, fixed, moving)
    nets = {name: load_backbone(checkpoint, config.dim, features=True) for name, checkpoint in checkpoints.items()}
    reports = probe_networks(fixed_volume, moving_volume, config, nets)
    for name, report in reports.items():
        report["settings"].update({"data": str(folder), "fixed": fixed_name, "moving": moving_name,
                                   "checkpoint": checkpoints[name]})
    return reports


def evaluate_feature_pairs(pairs: Sequence[tuple[str | Path, str, str]], checkpoints: Sequence[str],
                           config: CorrespondenceConfig | None = None, preset: str = RANDOM_PRESET) -> dict[str, Any]:
    """``synthlab eval-features``: the probe for several checkpoints on several co-registered pairs, one report.

    ``pairs`` holds ``(data, fixed, moving)`` as :func:`evaluate_features` takes them; ``"none"`` among the
    checkpoints probes MIND and an untrained ``preset`` only. Each pair's MIND and untrained baselines are
    computed once and shared (:func:`probe_networks`). Per checkpoint, ``mean`` averages every method's figures
    over the pairs, each pair counting alike: the numbers a study table reports.
    """
    started, config = time.perf_counter(), config or CorrespondenceConfig()
    if not pairs or not checkpoints:
        raise ValueError("eval-features needs at least one pair and one checkpoint")
    nets = {name: load_backbone(name, config.dim, features=True) for name in checkpoints if name != "none"}
    described, reports = [], []
    for data, fixed, moving in pairs:
        folder, fixed_name, moving_name, fixed_volume, moving_volume = _load_pair(data, fixed, moving)
        by_name = probe_networks(fixed_volume, moving_volume, config, nets) if nets else {}
        if "none" in checkpoints:
            by_name["none"] = probe_features(fixed_volume, moving_volume, config, None, preset)
        first = next(iter(by_name.values()))["settings"]
        described.append({"data": data_name(folder), "fixed": fixed_name, "moving": moving_name,
                          "grid": first["grid"], "n_queries": first["n_queries"]})
        reports.append(by_name)
    networks = {}
    for name in checkpoints:
        per_pair = [report[name]["methods"] for report in reports]
        mean = {method: {key: sum(row[method][key] for row in per_pair) / len(per_pair) for key in per_pair[0][method]}
                for method in per_pair[0]}
        source = getattr(nets[name], "feature_source", "output") if name in nets else None
        networks[name] = {"feature_source": source, "pairs": per_pair, "mean": mean}
    settings = {**asdict(config), "chance_rate": config.chance_rate, "pairs": described,
                "checkpoints": list(checkpoints), "random_preset": preset, "seconds": time.perf_counter() - started}
    return {"settings": settings, "networks": networks}


class TrainingProbe:
    """Cheap probes for a training loop: does what the loss rewards also transfer, and is it learning what its
    paper trains?

    On a fixed synthetic batch (two aligned renderings of the same label maps) it reports the correspondence
    match rate between the views (``synth_match``), the mean cosine between the two views' features at the
    same voxel (``synth_agreement``) and between random voxel pairs (``synth_pair_cosine``: 1.0 means the
    features collapsed); how the features group voxels by label (``synth_same_label_cos_cross``, ``_within``,
    ``synth_other_label_cos``, ``synth_label_retrieval`` and its chance, see
    :func:`~synthlab.regions.label_contrast`; ``synth_region_variance``, the within-region share of the feature
    variance); and the objective's own check (:meth:`~synthlab.losses.base.Objective.probe_metrics`, e.g. VoCo's
    position accuracy). Given a real co-registered pair it adds ``real_match`` and ``real_pair_cosine``. Features
    are those the objective is meant to give (``feature_source``). Calling it puts the network in eval mode for
    the duration and draws nothing from the training streams.
    """

    def __init__(self, dim: int, synth: SynthConfig, real: tuple[Volume, Volume] | None = None,
                 seed: int = 0, queries: int = 500, feature_source: str = "output") -> None:
        synth = replace(synth, n_views=2)
        batch = SynthEngine(synth, seed=seed).sample(8 if dim == 2 else 1)
        self.views, self.seed, self.feature_source = batch.views, seed, feature_source
        first, second = batch.views[:, 0, 0], batch.views[:, 1, 0]  # 2D: the samples act as slices
        self.labels = batch.labels[:, 0] if dim == 2 else batch.labels[0, 0]
        if dim == 3:
            first, second = first[0], second[0]
        radius = max(1, min(6, (min(synth.size) - 1) // 4))
        config = CorrespondenceConfig(dim=dim, radius=radius, queries=queries, foreground=0.0, seed=seed, window=None)
        self.synthetic = CorrespondenceProbe(first, second, config)
        self.real = None
        if real is not None:
            config = CorrespondenceConfig.for_dim(dim, queries=queries, seed=seed)
            self.real = CorrespondenceProbe(*prepare_pair(real[0], real[1], config), config)

    def __call__(self, net: nn.Module, objective: Objective | None = None) -> dict[str, float]:
        features = feature_network(net, self.feature_source)  # shares the weights; only what is read changes
        first, second = self.synthetic.features(features)
        scores = self.synthetic.score(first, second)
        out = {"synth_match": scores["match_rate"], "synth_agreement": float(cosine_map(first, second).mean()),
               "synth_pair_cosine": scores["pair_cosine"]}
        generator = torch.Generator().manual_seed(self.seed)
        out.update({f"synth_{k}": v for k, v in label_contrast(first, second, self.labels, 1024, generator).items()})
        out["synth_region_variance"] = region_variance_share(first, self.labels)
        if objective is not None:
            with EvalMode(objective), EvalMode(net):
                out.update(objective.probe_metrics(net, self.views, torch.Generator().manual_seed(self.seed)))
        if self.real is not None:
            real = self.real.score_net(features)
            out.update({"real_match": real["match_rate"], "real_pair_cosine": real["pair_cosine"]})
        return out

    @classmethod
    def for_run(cls, config: TrainConfig, data: str | Path | None = None,
                contrasts: Sequence[str] | None = None) -> TrainingProbe:
        """The probe of a training run: its synthetic data (the engine's defaults at the run's size for a run on
        real volumes), plus, given a co-registered folder (name or path) and two of its contrasts (fixed,
        moving), the real-image match rate."""
        real = None
        if data is not None:
            if contrasts is None or len(contrasts) != 2:
                raise ValueError(f"probe: data {data} needs two contrast names, got {contrasts!r}")
            real = _load_pair(data, *contrasts, role="probe ")[3:]
        synth = config.synth or SynthConfig.for_run(config.dim, config.size, 2)
        return cls(config.dim, synth, real, seed=0, feature_source=OBJECTIVES[config.objective][0].feature_source)
