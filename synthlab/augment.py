"""Segmentation's training augmentations: sample the parameters, then apply them (two pure steps).

Every arm of the few-shot comparison sees the same draws, so sampling takes an explicit generator and makes
the same number of draws whatever the probabilities; applying is a pure function of the image, the label map
and the sampled :class:`AugmentParams`, so a notebook can show one effect at fixed parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .dims import check_dim
from .draw import bernoulli, log_uniform, sample_affine, uniform
from .spatial import SpatialParams, affine_matrix, apply_spatial
from .synth.appearance import apply_gamma, apply_noise

__all__ = ["AugmentConfig", "AugmentParams", "apply_augment", "draw_batch", "sample_augment"]


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentations, identical for every arm (the anatomix recipe, milder for small 1 mm crops).

    Only axis 0 (left-right in RAS data) is mirrored by default: mirroring along anterior-posterior or
    inferior-superior would swap the meaning of labels such as "anterior hippocampus".
    """

    flip_prob: float = 0.5  # chance of mirroring along each axis in flip_axes
    flip_axes: tuple[int, ...] = (0,)
    affine_prob: float = 0.8  # chance of rotation/zoom/shift (anatomix: 0.98, +-45 deg on 128^3 crops)
    max_rotation_deg: float = 15.0  # per rotation plane, uniform in +-this
    max_zoom: float = 0.1  # per-axis zoom uniform in 1 +- this
    max_shift: float = 2.0  # per-axis translation in voxels, uniform in +-this
    gamma_prob: float = 0.33  # anatomix applies its intensity transforms at p 0.33
    max_log_gamma: float = 0.3  # gamma = exp(u), u uniform in +-this
    noise_prob: float = 0.33
    noise_std: float = 0.03  # additive Gaussian noise on [0, 1] intensities


@dataclass(frozen=True)
class AugmentParams:
    """Sampled augmentation parameters for a batch: everything :func:`apply_augment` needs, nothing random."""

    spatial: SpatialParams  # the affine, mirrors folded into its matrix (synthlab.spatial.apply_spatial)
    gamma: torch.Tensor  # (B,)
    noise_std: torch.Tensor  # (B,) relative to each image's maximum (about absolute on [0, 1] images)
    noise_seeds: torch.Tensor  # (B,) seeds of each image's noise


def sample_augment(batch: int, size: Sequence[int], config: AugmentConfig, generator: torch.Generator
                   ) -> AugmentParams:
    """Draw augmentation parameters for ``batch`` samples of spatial ``size`` from ``generator``.

    Draws go through :mod:`synthlab.draw`, as the synthetic engine's do, and their number does not depend on
    the probabilities, so equal generators give equal batches.
    """
    dim = check_dim(len(size))
    if any(not 0 <= axis < dim for axis in config.flip_axes):
        raise ValueError(f"flip_axes must name axes below dim={dim}, got {config.flip_axes}")
    may_flip = torch.zeros(dim, dtype=torch.bool, device=generator.device)
    may_flip[list(config.flip_axes)] = True
    flips = bernoulli(generator, (batch, dim), config.flip_prob) & may_flip
    on = bernoulli(generator, (batch, 1), config.affine_prob)
    angles, zooms, _ = sample_affine(generator, batch, dim, config.max_rotation_deg,
                                     (1 - config.max_zoom, 1 + config.max_zoom), 0.0)
    shifts = uniform(generator, (batch, dim), (-config.max_shift, config.max_shift))
    gamma = log_uniform(generator, (batch,), (math.exp(-config.max_log_gamma), math.exp(config.max_log_gamma)))
    gamma = torch.where(bernoulli(generator, (batch,), config.gamma_prob), gamma, 1.0)
    noise_std = torch.where(bernoulli(generator, (batch,), config.noise_prob), config.noise_std, 0.0)
    seeds = torch.randint(0, 2**62, (batch,), generator=generator, device=generator.device)
    matrix = affine_matrix(angles * on, torch.where(on, zooms, 1.0), translation=shifts * on, flips=flips)
    return AugmentParams(SpatialParams(matrix), gamma, noise_std, seeds)


def apply_augment(image: torch.Tensor, label: torch.Tensor, params: AugmentParams
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply sampled parameters: the spatial transform (:func:`~synthlab.spatial.apply_spatial`: linear for the
    image, nearest for labels), then the synthetic engine's gamma and noise
    (:func:`~synthlab.synth.appearance.apply_gamma`, :func:`~synthlab.synth.appearance.apply_noise`).

    Args:
        image: ``(B, 1, *size)`` in [0, 1]; label: ``(B, *size)`` integer. Outputs follow ``image``'s device.
    """
    image = apply_spatial(image, params.spatial, "linear")
    label = apply_spatial(label.unsqueeze(1), params.spatial, "nearest").squeeze(1)
    image = apply_gamma(image.clamp(0.0, 1.0), params.gamma.to(image))
    return apply_noise(image, params.noise_std.to(image), params.noise_seeds.to(image.device)), label


def draw_batch(images: torch.Tensor, labels: torch.Tensor, batch: int, config: AugmentConfig,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick ``batch`` samples of a pool (``(M, 1, *size)`` images, ``(M, *size)`` labels), augment them."""
    index = torch.randint(images.shape[0], (batch,), generator=generator, device=generator.device)
    params = sample_augment(batch, images.shape[2:], config, generator)
    return apply_augment(images[index.to(images.device)], labels[index.to(labels.device)], params)
