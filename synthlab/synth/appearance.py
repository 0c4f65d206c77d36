"""Appearance: turn one label map into images of random contrast with MR/CT-like artefacts.

Sampling and applying are separate (TorchIO style). :func:`sample_appearance` draws an
:class:`AppearanceParams` for ``batch * n_views`` renderings, with identity values where an effect was not
drawn; each ``apply_*`` is a pure function of a tensor and parameters, so a notebook can show one effect at
fixed values and a test can check it exactly. :func:`render` runs the whole chain with the fast paths:
intensities by one gather per table (no loop over labels), texture and bias composed on a coarse grid and
upsampled once, and blur plus every k-space artefact in a single FFT round trip, only for the images that drew
one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F

from ..draw import bernoulli, log_uniform, randint, uniform
from ..noise import coarse_shape, pyramid_noise, smooth_noise
from ..spatial import resize
from .config import AppearanceConfig

__all__ = [
    "AppearanceParams",
    "apply_bias",
    "apply_blur",
    "apply_gamma",
    "apply_ghosting",
    "apply_gibbs",
    "apply_kspace",
    "apply_label_intensities",
    "apply_lowres",
    "apply_noise",
    "apply_spike",
    "apply_texture",
    "multiplicative_gain",
    "normalize_minmax",
    "render",
    "sample_appearance",
]


@dataclass
class AppearanceParams:
    """Parameters of ``N = batch * n_views`` renderings, view-major within a sample (row ``b * n_views + v``).

    Attributes:
        means, stds: ``(N, L)`` Gaussian intensity of every label (``std`` is the within-label spread).
        texture: ``(N, 1, *work)`` relative texture ``n`` on a coarse grid (image ``* (1 + n)``).
        log_bias: ``(N, 1, *grid)`` log of the bias field on a coarse grid.
        blur_sigma: ``(N,)`` voxels.
        lowres_zoom: ``(N, dim)`` kept fraction of the resolution per axis (1 = untouched).
        gibbs_alpha: ``(N,)`` fraction of k-space removed along each axis.
        spike_index: ``(N, dim)`` position of the spike in the real-FFT spectrum; ``spike_strength`` ``(N,)``.
        ghost_axis, ghost_period: ``(N,)`` int; ``ghost_shift`` ``(N,)`` voxels (0 = no ghosting).
        noise_std: ``(N,)`` relative to the image maximum. gamma: ``(N,)``.
        seeds: ``(N, 2)`` int64 seeds of each image's per-voxel draws (intensity spread, additive noise), so
            the parameters fix every image exactly, alone or in any batch.
    """

    means: torch.Tensor
    stds: torch.Tensor
    texture: torch.Tensor
    log_bias: torch.Tensor
    blur_sigma: torch.Tensor
    lowres_zoom: torch.Tensor
    gibbs_alpha: torch.Tensor
    spike_index: torch.Tensor
    spike_strength: torch.Tensor
    ghost_axis: torch.Tensor
    ghost_shift: torch.Tensor
    ghost_period: torch.Tensor
    noise_std: torch.Tensor
    gamma: torch.Tensor
    seeds: torch.Tensor

    def select(self, rows: torch.Tensor | slice) -> AppearanceParams:
        """The parameters of some renderings only; rendering them gives exactly those images."""
        return replace(self, **{f.name: getattr(self, f.name)[rows] for f in fields(self)})


def sample_appearance(cfg: AppearanceConfig, labels: torch.Tensor, generator: torch.Generator,
                      n_views: int = 1) -> AppearanceParams:
    """Independent appearance parameters for ``n_views`` renderings of each map in ``labels (B, 1, ...)``."""
    batch, _, *size = labels.shape
    dim, n = len(size), labels.shape[0] * n_views
    n_labels = int(labels.max()) + 1

    def maybe(p: float, value: torch.Tensor, identity: float) -> torch.Tensor:
        on = bernoulli(generator, (n,), p).view(-1, *([1] * (value.ndim - 1)))
        return torch.where(on, value, torch.full_like(value, identity))

    means = uniform(generator, (n, n_labels), cfg.mean)
    stds = uniform(generator, (n, n_labels), cfg.std)
    dark = bernoulli(generator, (n,), cfg.background_zero_p)
    means[:, 0] = torch.where(dark, 0.0, means[:, 0])
    stds[:, 0] = torch.where(dark, 0.0, stds[:, 0])
    work = tuple(max(2, -(-s // cfg.work_factor)) for s in size)
    octave_std = maybe(cfg.texture_p, uniform(generator, (n,), cfg.texture_std), 0.0)
    texture = pyramid_noise(n, 1, work, [min(g, max(work)) for g in cfg.texture_grids], generator, octave_std)
    bias_std = maybe(cfg.bias_p, uniform(generator, (n,), cfg.bias_std), 0.0)
    bias_grid = coarse_shape(size, cfg.bias_grid)
    log_bias = smooth_noise(n, 1, bias_grid, bias_grid, generator, bias_std)  # stays on its coarse grid
    blur_sigma = maybe(cfg.blur_p, uniform(generator, (n,), cfg.blur_sigma), 0.0)
    axes = bernoulli(generator, (n, dim), cfg.lowres_axis_p)
    axes[torch.arange(n, device=axes.device), randint(generator, (n,), (0, dim - 1))] = True  # at least one
    zoom = uniform(generator, (n, 1), cfg.lowres_zoom).expand(n, dim)
    lowres_zoom = maybe(cfg.lowres_p, torch.where(axes, zoom, 1.0), 1.0)
    gibbs_alpha = maybe(cfg.gibbs_p, uniform(generator, (n,), cfg.gibbs_alpha), 0.0)
    # Off the self-conjugate planes of the real-FFT spectrum (last index 1 .. n/2 - 1), every spike gets its
    # Hermitian twin implicitly and the stripes have the documented amplitude.
    bounds = [(0, s - 1) for s in size[:-1]] + [(1, max(1, size[-1] // 2 - 1))]
    spike_index = torch.stack([randint(generator, (n,), b) for b in bounds], 1)
    spike_strength = maybe(cfg.spike_p, uniform(generator, (n,), cfg.spike_strength), 0.0)
    ghost_axis = randint(generator, (n,), (0, dim - 1))
    ghost_period = randint(generator, (n,), cfg.ghost_period)
    sign = torch.where(bernoulli(generator, (n,), 0.5), 1.0, -1.0)
    ghost_shift = maybe(cfg.ghost_p, sign * uniform(generator, (n,), cfg.ghost_shift), 0.0)
    noise_std = maybe(cfg.noise_p, uniform(generator, (n,), cfg.noise_std), 0.0)
    gamma = maybe(cfg.gamma_p, log_uniform(generator, (n,), cfg.gamma), 1.0)
    seeds = torch.randint(0, 2**62, (n, 2), generator=generator, device=generator.device)
    return AppearanceParams(means, stds, texture, log_bias, blur_sigma, lowres_zoom, gibbs_alpha, spike_index,
                            spike_strength, ghost_axis, ghost_shift, ghost_period, noise_std, gamma, seeds)


def _standard_normal(shape: Sequence[int], seeds: torch.Tensor) -> torch.Tensor:
    """``(N, *shape)`` standard normal draws, row ``i`` from its own generator seeded with ``seeds[i]``.

    Per-image seeds make an image's noise independent of the batch it is rendered in.
    """
    out = torch.empty((seeds.shape[0], *shape), device=seeds.device)
    for row, seed in enumerate(seeds.tolist()):
        generator = torch.Generator(device=seeds.device).manual_seed(seed)
        torch.randn(tuple(shape), generator=generator, out=out[row])
    return out


def _per_image(values: torch.Tensor, ndim: int) -> torch.Tensor:
    """``(N,)`` -> ``(N, 1, ..., 1)`` for broadcasting against ``(N, C, *size)``."""
    return values.view(-1, *([1] * (ndim - 1)))


def _on_rows(x: torch.Tensor, rows: torch.Tensor,
             fn: Callable[[torch.Tensor, torch.Tensor | slice], torch.Tensor]) -> torch.Tensor:
    """Apply ``fn`` to the images ``rows`` selects (bool ``(N,)``) only; the others pass through untouched."""
    if not bool(rows.any()):
        return x
    if bool(rows.all()):
        return fn(x, slice(None))
    index = rows.nonzero().squeeze(1)
    return x.index_copy(0, index, fn(x[index], index))


def apply_label_intensities(labels: torch.Tensor, means: torch.Tensor, stds: torch.Tensor,
                            seeds: torch.Tensor | None = None) -> torch.Tensor:
    """Gaussian intensity per label: ``means[label] + stds[label] * z`` by table lookup, all labels at once.

    Args:
        labels: ``(B, 1, *size)`` int; each map serves ``N / B`` consecutive rows of the tables.
        means, stds: ``(N, L)``.
        seeds: ``(N,)`` seeds of ``z``; without them the image is the piecewise-constant mean.
    Returns:
        ``(N, 1, *size)`` float32.
    """
    batch, _, *size = labels.shape
    n, n_labels = means.shape
    if n % batch:
        raise ValueError(f"means has {n} rows, not a multiple of the {batch} label maps")
    views = n // batch
    rows = torch.arange(n, device=labels.device).view(batch, views, *([1] * len(size))) * n_labels
    index = (labels + rows).view(n, 1, *size)
    image = means.reshape(-1)[index]
    if seeds is not None and bool((stds > 0).any()):
        image.addcmul_(_standard_normal(image.shape[1:], seeds), stds.reshape(-1)[index])
    return image


def multiplicative_gain(size: Sequence[int], texture: torch.Tensor | None = None,
                        log_bias: torch.Tensor | None = None) -> torch.Tensor:
    """Smooth positive gain ``max(1 + texture, 0) * exp(log_bias)`` at ``size``.

    The log-bias is upsampled before the exponential (so the gain is smooth in log space too); with a texture,
    both factors are composed on the texture's grid and upsampled once: one full-size interpolation instead of
    one per field and per octave.
    """
    if texture is None and log_bias is None:
        raise ValueError("multiplicative_gain needs a texture or a log_bias")
    work = texture.shape[2:] if texture is not None else tuple(size)
    gain = (1.0 + texture).clamp_min(0.0) if texture is not None else 1.0
    if log_bias is not None:
        gain = gain * resize(log_bias, work).exp()
    return resize(gain, size)


def apply_texture(x: torch.Tensor, texture: torch.Tensor) -> torch.Tensor:
    """Multiplicative texture ``x * (1 + n)`` (anatomix's Perlin texture)."""
    return x * multiplicative_gain(x.shape[2:], texture=texture)


def apply_bias(x: torch.Tensor, log_bias: torch.Tensor) -> torch.Tensor:
    """Smooth intensity non-uniformity ``x * exp(b)``; the gain is positive by construction."""
    return x * multiplicative_gain(x.shape[2:], log_bias=log_bias)


def apply_lowres(x: torch.Tensor, zoom: torch.Tensor) -> torch.Tensor:
    """Thick slices / coarse voxels: area-downsample by ``zoom (N, dim)`` per axis, upsample linearly back."""
    size = x.shape[2:]
    rows = [(row, factors) for row, factors in enumerate(zoom.tolist()) if min(factors) < 1.0]
    if not rows:
        return x
    out = x.clone()
    for row, factors in rows:
        low = [max(2, round(s * f)) for s, f in zip(size, factors, strict=True)]
        out[row:row + 1] = resize(F.interpolate(x[row:row + 1], size=low, mode="area"), size)
    return out


def _frequencies(length: int, n: int, last: bool, device: torch.device) -> torch.Tensor:
    """Signed integer frequency of each spectrum index along one axis (real FFT on the last axis)."""
    if last:
        return torch.arange(n, device=device, dtype=torch.float32)
    return torch.fft.fftfreq(length, d=1.0 / length, device=device)


def _axis_filter(k: torch.Tensor, length: int, axis: int, blur_sigma: torch.Tensor,
                 gibbs_alpha: torch.Tensor, ghost_axis: torch.Tensor, ghost_shift: torch.Tensor,
                 ghost_period: torch.Tensor) -> torch.Tensor:
    """The separable k-space factor ``(n, n_a)`` of one axis: Gaussian blur x Gibbs box x ghost phase."""
    k, cycles = k.unsqueeze(0), (k / length).unsqueeze(0)
    gain = torch.exp(-2 * math.pi**2 * blur_sigma.unsqueeze(1) ** 2 * cycles**2)
    gain = gain * (k.abs() <= (1 - gibbs_alpha.unsqueeze(1)) * (length // 2))
    lines = (k.abs().round().long() % ghost_period.unsqueeze(1) == 0) & (ghost_axis == axis).unsqueeze(1)
    phase = torch.where(lines, -2 * math.pi * cycles * ghost_shift.unsqueeze(1), 0.0)
    return torch.polar(gain, phase)


def apply_kspace(x: torch.Tensor, blur_sigma: torch.Tensor | None = None,
                 gibbs_alpha: torch.Tensor | None = None, spike_index: torch.Tensor | None = None,
                 spike_strength: torch.Tensor | None = None, ghost_axis: torch.Tensor | None = None,
                 ghost_shift: torch.Tensor | None = None,
                 ghost_period: torch.Tensor | None = None) -> torch.Tensor:
    """Blur, Gibbs ringing, a spike and motion ghosts in one real-FFT round trip; arguments left None are off.

    Only the images that drew at least one effect are transformed. Per image ``(N,)`` parameters:

    * Blur: Gaussian of SD ``blur_sigma`` voxels, as its transfer function ``exp(-2 pi^2 sigma^2 f^2)``
      (separable; periodic boundary, which touches only the outermost ~3 sigma voxels).
    * Gibbs: keep the box ``|k_a| <= (1 - alpha) * k_max`` of the spectrum, zero the rest.
    * Spike: add ``strength * DC`` at ``spike_index (N, dim)`` of the real-FFT spectrum: a plane wave of
      amplitude ``2 * strength * mean`` (half that on the self-conjugate planes, last index 0 or n/2).
    * Ghosting: every ``ghost_period``-th line along ``ghost_axis`` is acquired with the object moved by
      ``ghost_shift`` voxels along that axis, so faint copies appear at multiples of ``n / period``.
    """
    n, dim, size = x.shape[0], x.ndim - 2, x.shape[2:]
    zeros, origin = torch.zeros(n, device=x.device), torch.zeros(n, dim, dtype=torch.long, device=x.device)
    blur_sigma = zeros if blur_sigma is None else blur_sigma
    gibbs_alpha = zeros if gibbs_alpha is None else gibbs_alpha
    spike_strength = zeros if spike_strength is None else spike_strength
    spike_index = origin if spike_index is None else spike_index
    ghost_shift = zeros if ghost_shift is None else ghost_shift
    ghost_axis = torch.zeros(n, dtype=torch.long, device=x.device) if ghost_axis is None else ghost_axis
    ghost_period = torch.full((n,), 2, device=x.device) if ghost_period is None else ghost_period
    active = (blur_sigma > 0) | (gibbs_alpha > 0) | (spike_strength > 0) | (ghost_shift != 0)

    def corrupt(sub: torch.Tensor, rows: torch.Tensor | slice) -> torch.Tensor:
        axes = tuple(range(2, 2 + dim))
        spectrum = torch.fft.rfftn(sub, dim=axes)
        for a, length in enumerate(size):
            k = _frequencies(length, spectrum.shape[2 + a], a == dim - 1, sub.device)
            factor = _axis_filter(k, length, a, blur_sigma[rows], gibbs_alpha[rows], ghost_axis[rows],
                                  ghost_shift[rows], ghost_period[rows])
            if bool((factor != 1).any()):
                spectrum.mul_(factor.view(sub.shape[0], 1, *[-1 if i == a else 1 for i in range(dim)]))
        strength = spike_strength[rows]
        if bool((strength > 0).any()):
            batch = torch.arange(sub.shape[0], device=sub.device)
            channel = torch.zeros_like(batch)
            dc = spectrum[(batch, channel) + (0,) * dim].real
            spot = (batch, channel, *spike_index[rows].unbind(1))
            spectrum.index_put_(spot, (strength * dc).to(spectrum.dtype), accumulate=True)
        return torch.fft.irfftn(spectrum, s=size, dim=axes)

    return _on_rows(x, active, corrupt)


def apply_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of SD ``sigma (N,)`` voxels (see :func:`apply_kspace`)."""
    return apply_kspace(x, blur_sigma=sigma)


def apply_gibbs(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Gibbs ringing alone (see :func:`apply_kspace`)."""
    return apply_kspace(x, gibbs_alpha=alpha)


def apply_spike(x: torch.Tensor, index: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """A k-space spike alone (see :func:`apply_kspace`)."""
    return apply_kspace(x, spike_index=index, spike_strength=strength)


def apply_ghosting(x: torch.Tensor, axis: torch.Tensor, shift: torch.Tensor,
                   period: torch.Tensor) -> torch.Tensor:
    """Motion ghosting alone (see :func:`apply_kspace`)."""
    return apply_kspace(x, ghost_axis=axis, ghost_shift=shift, ghost_period=period)


def apply_noise(x: torch.Tensor, std: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
    """Additive Gaussian noise of SD ``std * max|x|`` per image, drawn from ``seeds (N,)``; 0: untouched."""

    def add(sub: torch.Tensor, rows: torch.Tensor | slice) -> torch.Tensor:
        low, high = torch.aminmax(sub.flatten(1), dim=1)
        scale = std[rows] * torch.maximum(low.abs(), high.abs())
        z = _standard_normal(sub.shape[1:], seeds[rows])
        return z.mul_(_per_image(scale, sub.ndim)).add_(sub)

    return _on_rows(x, std > 0, add)


def normalize_minmax(x: torch.Tensor) -> torch.Tensor:
    """Clip negatives (anatomix's threshold at 0), rescale each image to [0, 1]; constant images become 0."""
    out = x.clamp_min(0.0)
    low, high = torch.aminmax(out.flatten(1), dim=1)
    span = (high - low).clamp_min(1e-12)
    return out.sub_(_per_image(low, x.ndim)).div_(_per_image(span, x.ndim))


def apply_gamma(x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Contrast curve ``x ** gamma`` on [0, 1] images (monotone; 0 and 1 stay put)."""
    return _on_rows(x, gamma != 1, lambda sub, rows: sub.pow(_per_image(gamma[rows], sub.ndim)))


def render(labels: torch.Tensor, params: AppearanceParams) -> torch.Tensor:
    """The whole chain for ``labels (B, 1, *size)`` -> ``(N, 1, *size)`` images in [0, 1]."""
    size = labels.shape[2:]
    x = apply_label_intensities(labels, params.means, params.stds, params.seeds[:, 0])
    x.mul_(multiplicative_gain(size, params.texture, params.log_bias))
    x = apply_lowres(x, params.lowres_zoom)
    x = apply_kspace(x, params.blur_sigma, params.gibbs_alpha, params.spike_index, params.spike_strength,
                     params.ghost_axis, params.ghost_shift, params.ghost_period)
    x = apply_noise(x, params.noise_std, params.seeds[:, 1])
    return apply_gamma(normalize_minmax(x), params.gamma)
