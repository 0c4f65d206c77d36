"""Label-map sources: RaSD-style random-field anatomy, an anatomix-style bank of real shapes, a foreground.

Both sources return ``(B, 1, *size)`` int64 maps drawn from the caller's generator. The procedural source
takes the argmax over K smooth random fields, each warped by its own smooth displacement: space-filling
regions of irregular shape (RaSD §3.1). The shape bank cuts every label of real label maps out once at load,
then paints 20-40 randomly transformed shapes per map (anatomix §1.1); each shape is sampled only inside its
transformed bounding box, by index arithmetic, so a 128^3 map costs tens of milliseconds, not seconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data import label_values, list_volumes, read_array
from ..dims import channels_last, interp_mode
from ..draw import bernoulli, randint, sample_affine, uniform
from ..noise import pyramid_noise
from ..spatial import affine_matrix, identity_grid, resize, warp
from .config import ForegroundConfig, ProceduralConfig, ShapeBankConfig

__all__ = [
    "ForegroundDraw",
    "ShapeBank",
    "apply_foreground",
    "procedural_labels",
    "sample_foreground",
]


def _grids(size: Sequence[int], sides: Sequence[int]) -> list[int]:
    """Coarse grid sides for fields on ``size``, never finer than ``size`` itself."""
    return [min(side, max(size)) for side in sides]


def procedural_labels(batch: int, size: Sequence[int], cfg: ProceduralConfig,
                      generator: torch.Generator) -> torch.Tensor:
    """RaSD anatomy: argmax over ``n`` warped multi-octave random fields, ``n`` drawn per sample.

    Fields and warps live on a grid ``work_factor`` times coarser than ``size``; the fields are upsampled
    linearly before the argmax, so region boundaries stay smooth at full resolution.

    Returns:
        ``(B, 1, *size)`` int64 with labels ``0 .. n - 1`` (every voxel belongs to a region).
    """
    size = tuple(size)
    dim, device = len(size), generator.device
    work = tuple(max(2, -(-s // cfg.work_factor)) for s in size)
    k_max = int(cfg.n_labels[1])
    n_labels = randint(generator, (batch,), cfg.n_labels)
    octave_std = uniform(generator, (batch, k_max, len(cfg.field_grids)), cfg.field_std)
    fields = pyramid_noise(batch, k_max, work, _grids(work, cfg.field_grids), generator, octave_std)
    # Each field gets its own displacement: (B * K) single-channel images warped in one call.
    warp_std = uniform(generator, (batch * k_max, len(cfg.deform_grids)), cfg.deform_std) * max(work)
    deform_grids = _grids(work, cfg.deform_grids)
    displacement = pyramid_noise(batch * k_max, dim, work, deform_grids, generator, warp_std)
    # Everything is drawn for k_max labels (a fixed random stream); only the labels in use are computed on.
    k_used = int(n_labels.max())
    displacement = displacement.view(batch, k_max, dim, *work)[:, :k_used].reshape(batch * k_used, dim, *work)
    fields = warp(fields[:, :k_used].reshape(batch * k_used, 1, *work), displacement)
    fields = fields.view(batch, k_used, *work)
    # Labels beyond this sample's count can never win the argmax (a finite value keeps interpolation exact).
    unused = torch.arange(k_used, device=device) >= n_labels[:, None]
    fields = fields.masked_fill(unused.view(batch, k_used, *([1] * dim)), -1e4)
    fields = resize(fields.contiguous(memory_format=channels_last(dim)), size)
    return fields.argmax(1, keepdim=True).contiguous()


# --- Foreground mask and envelope -----------------------------------------------------------------------


@dataclass
class ForegroundDraw:
    """One draw of the deformed-sphere foreground, per sample.

    Attributes:
        distance: ``(B, 1, *size)`` signed distance to the deformed sphere in voxels (negative inside), or
            None when no sample uses a mask.
        mask: ``(B,)`` bool, which samples are masked.
        envelope_width: ``(B,)`` shell half-width in voxels; 0 means no envelope.
    """

    distance: torch.Tensor | None
    mask: torch.Tensor
    envelope_width: torch.Tensor


def sample_foreground(batch: int, size: Sequence[int], cfg: ForegroundConfig,
                      generator: torch.Generator) -> ForegroundDraw:
    """anatomix's foreground: a sphere whose surface is pushed around by a smooth multi-scale displacement."""
    size = tuple(size)
    dim = len(size)
    mask = bernoulli(generator, (batch,), cfg.p)
    envelope = bernoulli(generator, (batch,), cfg.envelope_p) & mask
    width = uniform(generator, (batch,), cfg.envelope_width) * envelope
    radius = uniform(generator, (batch,), cfg.radius) * min(size)
    extent = torch.tensor(size, device=generator.device, dtype=torch.float32)
    offset = uniform(generator, (batch, dim), (-cfg.centre_offset, cfg.centre_offset))
    centre = (extent - 1) / 2 + offset * extent
    # The distance is smooth, so it is computed on a half-resolution grid and upsampled.
    work = tuple(max(2, -(-s // 2)) for s in size)
    std = uniform(generator, (batch, len(cfg.deform_grids)), cfg.deform_std) * max(size)
    displacement = pyramid_noise(batch, dim, work, _grids(work, cfg.deform_grids), generator, std)
    if not bool(mask.any()):
        return ForegroundDraw(None, mask, width)
    to_full = torch.tensor([(s - 1) / (w - 1) for s, w in zip(size, work, strict=True)], device=extent.device)
    points = identity_grid(work, extent.device) * to_full.view(dim, *([1] * dim))
    offset = points.unsqueeze(0) + displacement - centre.view(batch, dim, *([1] * dim))
    distance = offset.norm(dim=1, keepdim=True) - radius.view(batch, 1, *([1] * dim))
    return ForegroundDraw(resize(distance, size), mask, width)


def apply_foreground(labels: torch.Tensor, draw: ForegroundDraw) -> torch.Tensor:
    """Mask and envelope: inside labels +1, outside 0, a shell ``|distance| < width`` gets a fresh label."""
    if draw.distance is None:
        return labels
    shape = (-1,) + (1,) * (labels.ndim - 1)
    masked = draw.mask.view(shape)
    inside = draw.distance < 0
    out = torch.where(masked, torch.where(inside, labels + 1, torch.zeros_like(labels)), labels)
    fresh = out.flatten(1).amax(1).view(shape) + 1
    shell = (draw.distance.abs() < draw.envelope_width.view(shape)) & masked
    return torch.where(shell, fresh, out)


# --- Shape bank -------------------------------------------------------------------------------------------


def _read_label_map(file: Path, dim: int) -> torch.Tensor:
    """Read one label map as int32 with its singleton axes dropped (a 2D map stored as ``X x Y x 1`` is 2D).

    Anything that is not a ``dim``-dimensional (or, for a 2D bank, 3D) map of non-negative integers is a
    ValueError naming the file.
    """
    try:
        data = read_array(file)[0]
    except ValueError as err:
        raise ValueError(f"labels: {err}") from err
    shape = data.shape
    if data.size == 0:
        raise ValueError(f"labels: {file} has shape {shape}: it holds no voxels")
    data = data.reshape([n for n in shape if n > 1])
    if data.ndim > 3:
        raise ValueError(f"labels: {file} has shape {shape}; a label map must be 2D or 3D, not a {data.ndim}D "
                         "series")
    if data.ndim < dim:
        raise ValueError(f"labels: {file} is a {data.ndim}D label map (shape {shape}); --dim {dim} needs "
                         f"{dim}D maps" + (" (use --dim 2 for 2D maps)" if dim == 3 and data.ndim == 2 else ""))
    try:
        labels = label_values(data, file)
    except ValueError as err:
        raise ValueError(f"labels: {err}") from err
    return torch.from_numpy(labels.astype(np.int32))  # ids fit: label_values refuses anything above 2**31 - 1


def _bounding_boxes(volume: torch.Tensor) -> dict[int, list[tuple[int, int]]]:
    """Per-axis ``[first, last]`` index of every non-zero label: one bincount per axis, no per-label scan.

    The key ``label * length + position`` counts, for every label, the slices along one axis that contain it.
    """
    n = int(volume.max()) + 1
    present, spans = None, []
    for axis, length in enumerate(volume.shape):
        position = torch.arange(length, dtype=volume.dtype)
        position = position.view([-1 if a == axis else 1 for a in range(volume.ndim)])
        keys = torch.add(position, volume, alpha=length).flatten()
        hits = torch.bincount(keys, minlength=length * n).view(n, length) > 0
        present = hits.any(1)
        first = hits.to(torch.uint8).argmax(1)
        last = length - 1 - hits.flip(1).to(torch.uint8).argmax(1)
        spans.append((first.tolist(), last.tolist()))
    return {label: [(spans[a][0][label], spans[a][1][label]) for a in range(volume.ndim)]
            for label in range(1, n) if bool(present[label])}


def _resample_shape(shape: torch.Tensor, factor: float) -> torch.Tensor:
    """Zoom a boolean shape by ``factor``: area average to shrink, linear to grow, then threshold at 0.5."""
    if factor == 1.0:
        return shape
    new = [max(1, round(s * factor)) for s in shape.shape]
    mode = "area" if factor < 1 else interp_mode(shape.ndim)
    kwargs = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(shape[None, None].float(), size=new, mode=mode, **kwargs)[0, 0] >= 0.5


def _cut_shapes(volume: torch.Tensor, dim: int, max_side: int,
                span: float | None) -> list[tuple[int, torch.Tensor]]:
    """Every label of ``volume`` as ``(label, boolean crop)``; for a 2D bank, each 3D shape's largest slices.

    With ``span``, the whole map is zoomed so that its labelled region's longest side measures ``span`` voxels
    (shapes keep their sizes relative to each other); any shape still longer than ``max_side`` then shrinks.
    """
    ids = None
    if int(volume.max()) >= 8192:  # sparse large ids (atlases): number them 1..n so the bincount stays small
        ids, volume = torch.unique(volume, return_inverse=True)
        if int(ids[0]) != 0:
            ids, volume = torch.cat([ids.new_zeros(1), ids]), volume + 1
        volume = volume.to(torch.int32)
    boxes = _bounding_boxes(volume)
    zoom = 1.0
    if span is not None and boxes:
        extent = max(max(box[a][1] for box in boxes.values()) - min(box[a][0] for box in boxes.values()) + 1
                     for a in range(volume.ndim))
        zoom = span / extent
    shapes = []
    for label, box in boxes.items():
        crop = volume[tuple(slice(lo, hi + 1) for lo, hi in box)] == label
        pieces = [crop]
        if dim == 2 and crop.ndim == 3:
            areas = [crop.sum([b for b in range(3) if b != a]) for a in range(3)]  # slice areas per axis
            pieces = [crop.select(a, int(areas[a].argmax())) for a in range(3)]
        for piece in pieces:
            name = label if ids is None else int(ids[label])
            shapes.append((name, _resample_shape(piece, min(zoom, max_side / max(piece.shape)))))
    return shapes


@dataclass
class ShapeBank:
    """Real shapes, each one label of one label map cropped to its bounding box, stored flat on the device.

    Shape ``k`` occupies ``voxels[offsets[k] : offsets[k] + prod(extents[k])]`` (C order) and carries a
    one-voxel empty border, so clamped out-of-range indices always read "outside".
    """

    dim: int
    voxels: torch.Tensor
    offsets: list[int]
    extents: list[tuple[int, ...]]
    sources: list[str]

    def __len__(self) -> int:
        return len(self.offsets)

    def shape(self, index: int) -> torch.Tensor:
        """Shape ``index`` as a boolean ``extent`` tensor (with its empty border), e.g. to plot it."""
        numel = math.prod(self.extents[index])
        return self.voxels.narrow(0, self.offsets[index], numel).view(self.extents[index])

    @classmethod
    def from_path(cls, path: str | Path, device: torch.device | str | None = None, dim: int = 3,
                  max_side: int = 64, span: float | None = None, min_voxels: int = 8) -> ShapeBank:
        """Read every integer NIfTI label map under ``path`` (a folder, searched recursively, or a file) once.

        Args:
            device: where the shapes are kept (and sampled).
            dim: 3 keeps 3D shapes; 2 keeps, of each 3D shape, its largest slice along every axis.
            max_side: shapes longer than this (after ``span``) shrink to fit, keeping their aspect ratio.
            span: zoom each map so its labelled region's longest side is ``span`` voxels (None: as stored).
            min_voxels: smaller shapes are dropped.
        """
        path = Path(path)
        pieces, offsets, extents, sources, total = [], [], [], [], 0
        for file in list_volumes(path, "labels", kind="label"):
            volume = _read_label_map(file, dim)
            for label, shape in _cut_shapes(volume, dim, max_side, span):
                if int(shape.sum()) < min_voxels:
                    continue
                padded = F.pad(shape.to(torch.uint8), [1, 1] * shape.ndim).bool()
                pieces.append(padded.flatten())
                offsets.append(total)
                extents.append(tuple(padded.shape))
                sources.append(f"{file.name}:{label}")
                total += padded.numel()
        if not pieces:
            raise ValueError(f"labels: {path} holds no shapes of at least {min_voxels} voxels")
        return cls(dim, torch.cat(pieces).to(device), offsets, extents, sources)

    def sample(self, batch: int, size: Sequence[int], cfg: ShapeBankConfig,
               generator: torch.Generator) -> torch.Tensor:
        """Paint ``n`` random shapes per map as labels ``1..n`` (painter's order; 0 is what no shape covers).

        Each shape gets a per-axis scale, rotation, shear, flips and a centre offset. Only voxels inside its
        transformed bounding box are visited: their coordinates map back into the stored crop, are rounded
        (nearest neighbour, like anatomix) and read with one ``take``.
        """
        size = tuple(size)
        dim, device = len(size), generator.device
        if dim != self.dim:
            raise ValueError(f"size {size} is {dim}D but the shape bank holds {self.dim}D shapes")
        n_max = int(cfg.n_shapes[1])
        counts = randint(generator, (batch,), cfg.n_shapes).tolist()
        picks = randint(generator, (batch, n_max), (0, len(self) - 1)).tolist()
        rows = batch * n_max
        angles, scales, shears = sample_affine(generator, rows, dim, cfg.rotation, cfg.scale, cfg.shear)
        flips = bernoulli(generator, (rows, dim), cfg.flip_p)
        extent = torch.tensor(size, device=device, dtype=torch.float32)
        centres = (extent - 1) / 2 + uniform(generator, (rows, dim), (-cfg.spread, cfg.spread)) * extent
        # Output -> shape-crop mapping (centred), and the output bounding box of each transformed crop.
        to_crop = affine_matrix(angles, scales, shears, None, flips)[:, :, :dim].double()
        half = torch.tensor([[(e - 1) / 2 for e in self.extents[k]] for chosen in picks for k in chosen],
                            device=device, dtype=torch.float64)
        reach = (torch.linalg.inv(to_crop).abs() @ half.unsqueeze(-1)).squeeze(-1)
        low = (centres.double() - reach).floor().clamp_min(0)
        high = (centres.double() + reach).ceil().minimum(extent.double() - 1)
        # Constant term of the crop coordinate at each box's first voxel (+0.5 turns floor into rounding).
        start = (to_crop @ (low - centres.double()).unsqueeze(-1)).squeeze(-1) + half + 0.5
        boxes = torch.cat([low, high, start], 1).tolist()
        matrices = to_crop.tolist()
        ramps = {dtype: torch.arange(max(size), device=device, dtype=dtype)
                 for dtype in (torch.float32, torch.float64)}
        out = torch.zeros((batch, 1, *size), device=device, dtype=torch.int64)
        for b in range(batch):
            for k in range(counts[b]):
                row = b * n_max + k
                lo, hi, st = boxes[row][:dim], boxes[row][dim:2 * dim], boxes[row][2 * dim:]
                if any(h < lo_ for lo_, h in zip(lo, hi, strict=True)):
                    continue
                box = [slice(int(a), int(h) + 1) for a, h in zip(lo, hi, strict=True)]
                inside = self._read(picks[b][k], matrices[row], st, [s.stop - s.start for s in box], ramps)
                out[b, 0][tuple(box)].masked_fill_(inside, k + 1)
        return out

    def _read(self, index: int, matrix: list[list[float]], start: list[float], box: list[int],
              ramps: dict[torch.dtype, torch.Tensor]) -> torch.Tensor:
        """Occupancy of shape ``index`` at the voxels of an output box, by rounding the mapped coordinates."""
        extent = self.extents[index]
        dim = len(extent)
        # The flat index is accumulated in floating point: exact in float32 below 2^24 voxels.
        ramp = ramps[torch.float32 if math.prod(extent) < 2**24 else torch.float64]
        flat, stride = None, 1
        for axis in reversed(range(dim)):
            coord = None
            for j in range(dim):
                term = (ramp[:box[j]] * matrix[axis][j]).view([-1 if i == j else 1 for i in range(dim)])
                coord = term + start[axis] if coord is None else coord + term
            coord = coord.floor_().clamp_(0, extent[axis] - 1)
            flat = coord * stride if flat is None else flat.add_(coord, alpha=stride)
            stride *= extent[axis]
        return torch.take(self.voxels.narrow(0, self.offsets[index], stride), flat.long())
