"""VoCo's objective: predict where a random crop lies from its similarity to base crops (docs/fidelity.md).

The volume is cut into a regular grid of base crops; a few random crops of the same size are drawn too. A
random crop's *position label* is its overlap-volume fraction with each base cell (non-negative, sums to 1).
The backbone embeds every crop (pooled encoder levels); a student head and an EMA teacher head project the
embeddings, and the student's ReLU-cosine similarities between random and base crops are trained to match the
position labels. This follows VoCo v2: one shared backbone, EMA (momentum 0.9) on the heads only, plus an
inter-volume term with the teacher's similarities as soft targets and a regulariser that decorrelates base
crops. No labels are needed, so it runs on synthetic views and real unlabeled volumes alike.

Crop geometry, as in v2: a 3 x 3 grid of base cells in-plane, spanning the whole depth in 3D (``(3, 3, 1)``),
and random crops of a cell's size anywhere in the volume. Crops keep their native size when the cells fit the
network (every side a multiple of its downsample factor); otherwise, or when ``crop_size`` is set, they are
resized to it. Every crop, base or random, is then flipped, rotated by a multiple of 90 degrees in-plane and
shifted in intensity on its own (v2's per-crop augmentation); as in v2, the position labels are not corrected
for the flips and rotations.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..draw import bernoulli, randint, uniform
from ..nets import ProjectionHead, UNet, crop_embedding
from ..spatial import resize
from .base import LossOutput, Objective, OptimSettings

__all__ = [
    "VoCoConfig",
    "VoCoObjective",
    "augment_crops",
    "base_regulariser",
    "ema_update",
    "extract_crops",
    "grid_boxes",
    "overlap_fractions",
    "position_ce",
    "random_boxes",
    "relu_cosine",
    "voco_loss",
]


# --- crop geometry ---------------------------------------------------------------------------------------
# A box is (dim, 2) integer [start, stop) voxel bounds per axis; a set of boxes is (N, dim, 2).


def grid_boxes(size: Sequence[int], grid: Sequence[int]) -> torch.Tensor:
    """The base cells: ``prod(grid)`` boxes tiling ``size`` exactly, first axis slowest: ``(K, dim, 2)``."""
    edges = [[round(i * side / cells) for i in range(cells + 1)]
             for side, cells in zip(size, grid, strict=True)]
    spans = [list(zip(e[:-1], e[1:], strict=True)) for e in edges]
    return torch.tensor([list(cell) for cell in itertools.product(*spans)], dtype=torch.long)


def random_boxes(size: Sequence[int], grid: Sequence[int], count: int,
                 generator: torch.Generator) -> torch.Tensor:
    """``count`` boxes of a base cell's side (rounded) at uniform integer positions inside ``size``."""
    sides = torch.tensor([round(s / n) for s, n in zip(size, grid, strict=True)])
    room = torch.tensor(list(size)) - sides + 1
    starts = (torch.rand(count, len(size), generator=generator, device=generator.device).cpu() * room).long()
    return torch.stack([starts, starts + sides], dim=-1)


def overlap_fractions(boxes: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """Position labels: the fraction of each box's volume inside each base cell.

    Args:
        boxes: ``(R, dim, 2)`` random crops.
        base: ``(K, dim, 2)`` base cells; when they tile the volume, each row of the result sums to 1.
    Returns:
        ``(R, K)`` float32.
    """
    low = torch.maximum(boxes[:, None, :, 0], base[None, :, :, 0])
    high = torch.minimum(boxes[:, None, :, 1], base[None, :, :, 1])
    shared = (high - low).clamp_min(0).prod(-1).double()
    return (shared / (boxes[:, :, 1] - boxes[:, :, 0]).prod(-1)[:, None].double()).float()


def extract_crops(volumes: torch.Tensor, boxes: torch.Tensor, crop_size: Sequence[int]) -> torch.Tensor:
    """Cut boxes out of each volume and resize them (linearly) to ``crop_size``.

    Args:
        volumes: ``(B, C, *size)``.
        boxes: ``(B, N, dim, 2)`` per-volume boxes.
        crop_size: output spatial size.
    Returns:
        ``(B * N, C, *crop_size)``, volume-major.
    """
    crops = []
    for volume, volume_boxes in zip(volumes, boxes, strict=True):
        for box in volume_boxes.tolist():
            region = volume[(slice(None), *(slice(lo, hi) for lo, hi in box))]
            crops.append(resize(region[None], list(crop_size))[0])
    return torch.stack(crops)


def augment_crops(crops: torch.Tensor, config: VoCoConfig, generator: torch.Generator) -> torch.Tensor:
    """v2's per-crop augmentation: each crop ``(N, C, *size)`` is flipped along each axis, rotated in-plane (the
    first two axes) by k x 90 degrees and shifted in intensity, each with its own draw.

    The draws are made for every crop whatever the probabilities, so a seed fixes the whole stream. In-plane
    rotation needs square in-plane crops, which a grid with equal in-plane cell counts gives.
    """
    n, dim = crops.shape[0], crops.ndim - 2
    flips = bernoulli(generator, (n, dim), config.crop_flip_p).tolist()
    turns = (bernoulli(generator, (n,), config.crop_rot90_p) * randint(generator, (n,), (1, 3))).tolist()
    shifts = uniform(generator, (n,), (-config.crop_shift, config.crop_shift))
    shifts = torch.where(bernoulli(generator, (n,), config.crop_shift_p), shifts, 0.0).to(crops)
    out = []
    for crop, axes, k in zip(crops, flips, turns, strict=True):
        flipped = [1 + a for a, f in enumerate(axes) if f]
        crop = crop.flip(flipped) if flipped else crop
        out.append(crop.rot90(k, dims=(1, 2)) if k and crop.shape[1] == crop.shape[2] else crop)
    return torch.stack(out) + shifts.view(-1, *([1] * (dim + 1)))


# --- loss terms ------------------------------------------------------------------------------------------


def relu_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``ReLU(cos)`` between every row of ``a (..., R, D)`` and of ``b (..., K, D)``: ``(..., R, K)``."""
    return F.relu(F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).transpose(-1, -2))


def position_ce(target: torch.Tensor, similarity: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """VoCo's prediction loss per volume, ``(B, R, K), (B, R, K) -> (B,)``::

        -sum(y log(1 - |y - s| + eps)) / sum(y)  -  sum_{y = 0} log(1 - s + eps) / #{y = 0}

    Weighted by the target, the similarity must equal the overlap; where there is no overlap it must vanish.
    An empty part (no zero entry, or an all-zero soft target) contributes 0.
    """
    target, similarity = target.flatten(1), similarity.flatten(1)
    matched = torch.log(1 - (target - similarity).abs() + eps)
    positive = -(target * matched).sum(1) / target.sum(1).clamp_min(eps)
    empty = target == 0
    negative = -(torch.log(1 - similarity + eps) * empty).sum(1) / empty.sum(1).clamp_min(1)
    return positive + negative


def base_regulariser(base: torch.Tensor) -> torch.Tensor:
    """Mean squared ReLU-cosine over pairs of distinct base crops: ``(B, K, D) -> (B,)``.

    Base crops are disjoint regions, so their embeddings should not be similar. The gradient flows through the
    first crop of each pair only (the second is detached, as in VoCo).
    """
    cosine = F.relu(F.normalize(base, dim=-1) @ F.normalize(base.detach(), dim=-1).transpose(1, 2))
    pairs = torch.ones_like(cosine[0], dtype=torch.bool).triu(diagonal=1)
    return (cosine[:, pairs] ** 2).mean(1)


def voco_loss(student_random: torch.Tensor, student_base: torch.Tensor, teacher_random: torch.Tensor,
              teacher_base: torch.Tensor, positions: torch.Tensor,
              eps: float = 1e-6) -> dict[str, torch.Tensor]:
    """VoCo v2's loss on projected embeddings (weights 1, means over the batch).

    Args:
        student_random, teacher_random: ``(B, R, D)`` random-crop projections.
        student_base, teacher_base: ``(B, K, D)`` base-crop projections (teacher ones carry no gradient).
        positions: ``(B, R, K)`` position labels.
    Returns:
        ``{"total", "prediction", "inter", "regulariser"}`` scalars; ``inter`` pairs volume ``i`` with
        ``(i + 1) mod B`` and is 0 when B == 1.
    """
    prediction = position_ce(positions, relu_cosine(student_random, teacher_base), eps).mean()
    if student_random.shape[0] > 1:
        partner_student, partner_teacher = student_base.roll(-1, dims=0), teacher_base.roll(-1, dims=0)
        soft_target = relu_cosine(teacher_random, partner_teacher).detach()
        inter = position_ce(soft_target, relu_cosine(student_random, partner_student), eps).mean()
    else:
        inter = prediction.new_zeros(())
    regulariser = base_regulariser(student_base).mean()
    return {"total": prediction + inter + regulariser, "prediction": prediction, "inter": inter,
            "regulariser": regulariser}


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``teacher <- momentum * teacher + (1 - momentum) * student`` on parameters; buffers are copied."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.lerp_(s, 1.0 - momentum)
    for t, s in zip(teacher.buffers(), student.buffers(), strict=True):
        t.copy_(s)


# --- objective -------------------------------------------------------------------------------------------


@dataclass
class VoCoConfig:
    """Settings of the VoCo objective (defaults: VoCo v2 where it applies)."""

    grid: int | tuple[int, ...] | None = None  # base cells per axis; None: v2's 3 x 3 in-plane, (3, 3, 1) in 3D
    random_crops: int = 2  # random crops per volume
    crop_size: int | None = None  # crops are resized to it; None: native cells (resized only if they misfit)
    crop_flip_p: float = 0.2  # v2: each crop flipped along each axis with this probability
    crop_rot90_p: float = 0.2  # v2: each crop rotated in-plane by 90, 180 or 270 degrees with this probability
    crop_shift: float = 0.1  # v2: intensity shift U(-x, x) ...
    crop_shift_p: float = 0.5  # ... applied to each crop with this probability
    head_hidden: int = 1024  # projection head width (v2: 1024)
    head_out: int = 1024  # projected dimension
    head_layers: int = 3  # Linear-BN-ReLU x 2, then Linear
    dropout: float = 0.2  # plain dropout on the student head's input (v2's Dropout1d dropped whole crops)
    ema_momentum: float = 0.9  # teacher <- 0.9 teacher + 0.1 student after every step
    eps: float = 1e-6  # inside the logs of the prediction loss


class VoCoObjective(Objective):
    """VoCo v2: crop-position prediction with a shared backbone and EMA student/teacher heads.

    Uses the first view of each sample only (the views of one sample are not different volumes, which the
    inter-volume term assumes); ``labels`` are ignored. Only the encoder is trained: under DDP, wrap the net
    with ``find_unused_parameters=True``.
    """

    name = "voco"
    requires_labels = False
    n_views = 1  # one rendering per volume: the crops come from it
    # VoCo v2: AdamW 1e-4 with AMSGrad and weight decay 0.01, 5,000 warm-up steps of 2M, cosine to 0, no
    # clipping (docs/fidelity.md). It trains the encoder only, so its features are the encoder's.
    optim = OptimSettings(lr=1e-4, weight_decay=0.01, amsgrad=True, warmup_fraction=0.0025)
    feature_source = "encoder"
    own_task = (("voco_position_acc", "crop position accuracy"), ("voco_position_acc_constant", "constant guess"))

    def __init__(self, net: UNet, dim: int, config: VoCoConfig | None = None):
        super().__init__(dim, net.dim)
        cfg = self.config = config or VoCoConfig()
        default_grid = (3, 3) if dim == 2 else (3, 3, 1)
        self.grid = default_grid if cfg.grid is None else (cfg.grid,) * dim if isinstance(cfg.grid, int) \
            else tuple(cfg.grid)
        if len(self.grid) != dim or min(self.grid) < 1 or max(self.grid) < 2:
            raise ValueError(f"grid must be an int >= 2 or {dim} ints >= 1 (one of them >= 2), "
                             f"got {cfg.grid!r}")
        if cfg.random_crops < 1:
            raise ValueError(f"random_crops must be >= 1, got {cfg.random_crops}")
        if not 0 <= cfg.ema_momentum <= 1:
            raise ValueError(f"ema_momentum must lie in [0, 1], got {cfg.ema_momentum}")
        self.factor = net.downsample_factor
        if cfg.crop_size is not None and (cfg.crop_size % self.factor or cfg.crop_size < 2 * self.factor):
            raise ValueError(f"crop_size must be a multiple of {self.factor} and at least {2 * self.factor} "
                             f"for this network, got {cfg.crop_size}")
        embedding = sum(net.encoder_channels)
        head = {"hidden": cfg.head_hidden, "out": cfg.head_out, "layers": cfg.head_layers,
                "norm_affine": False, "running_stats": False}  # v2: batch statistics always
        self.student = ProjectionHead(embedding, dropout=cfg.dropout, **head)
        self.teacher = ProjectionHead(embedding, **head)  # its own initialisation, as in v2
        self.teacher.requires_grad_(False)

    def crop_size_for(self, size: Sequence[int]) -> tuple[int, ...]:
        """Crop size for volumes of ``size``: the configured one, else the native cell size when the network takes
        it, else each cell side rounded to the network's downsample factor."""
        if self.config.crop_size is not None:
            return (self.config.crop_size,) * len(size)
        f = self.factor
        cells = [s / n for s, n in zip(size, self.grid, strict=True)]
        if all(c == int(c) and int(c) % f == 0 and c >= 2 * f for c in cells):
            return tuple(int(c) for c in cells)  # native: no resampling (v2's crops)
        return tuple(max(2 * f, round(c / f) * f) for c in cells)

    def forward(self, net: nn.Module, views: torch.Tensor, labels: torch.Tensor | None,
                generator: torch.Generator) -> LossOutput:
        self.check_batch(views, labels)
        volumes = views[:, 0]
        batch, size = volumes.shape[0], tuple(volumes.shape[2:])
        if any(s < n for s, n in zip(size, self.grid, strict=True)):
            raise ValueError(f"volume size {size} is too small for a grid of {self.grid} cells")
        base = grid_boxes(size, self.grid)
        n_base = base.shape[0]
        drawn = [random_boxes(size, self.grid, self.config.random_crops, generator) for _ in range(batch)]
        boxes = torch.stack([torch.cat([base, random]) for random in drawn])  # (B, K + R, dim, 2)
        positions = torch.stack([overlap_fractions(b[n_base:], base) for b in boxes]).to(volumes.device)

        crops = augment_crops(extract_crops(volumes, boxes, self.crop_size_for(size)), self.config, generator)
        embeddings = crop_embedding(net(crops, encoder_only=True))  # (B * (K + R), E)
        student = self.student(embeddings).unflatten(0, (batch, -1))
        with torch.no_grad():
            teacher = self.teacher(embeddings.detach()).unflatten(0, (batch, -1))
        parts = voco_loss(student[:, n_base:], student[:, :n_base], teacher[:, n_base:], teacher[:, :n_base],
                          positions, self.config.eps)
        logs = {"voco": float(parts["total"].detach())}
        logs.update({f"voco_{k}": float(v.detach()) for k, v in parts.items() if k != "total"})
        return LossOutput(parts["total"], logs)

    def after_step(self) -> None:
        """Move the teacher head towards the student head."""
        ema_update(self.teacher, self.student, self.config.ema_momentum)

    @torch.no_grad()
    def probe_metrics(self, net: nn.Module, views: torch.Tensor, generator: torch.Generator,
                      crops_per_volume: int = 32) -> dict[str, float]:
        """Is VoCo learning its task? Position accuracy on held-out crops of ``views``' first rendering: how often
        the base cell with the highest predicted similarity is the cell the crop overlaps most, beside the best
        constant guess (always answering the most frequent cell: 0.25 for a 3 x 3 grid and uniform crops)."""
        volumes = views[:, 0]
        batch, size = volumes.shape[0], tuple(volumes.shape[2:])
        base = grid_boxes(size, self.grid)
        n_base = base.shape[0]
        boxes = torch.stack([torch.cat([base, random_boxes(size, self.grid, crops_per_volume, generator)])
                             for _ in range(batch)])
        truth = torch.stack([overlap_fractions(b[n_base:], base) for b in boxes]).argmax(-1)  # (B, R)
        device = next(self.parameters()).device
        crops = extract_crops(volumes, boxes, self.crop_size_for(size)).to(device)  # no augmentation
        embeddings = crop_embedding(net(crops, encoder_only=True)).float()
        student = self.student(embeddings).unflatten(0, (batch, -1))
        teacher = self.teacher(embeddings).unflatten(0, (batch, -1))
        guess = relu_cosine(student[:, n_base:], teacher[:, :n_base]).argmax(-1).cpu()
        counts = torch.bincount(truth.flatten(), minlength=n_base)
        return {"voco_position_acc": float((guess == truth).float().mean()),
                "voco_position_acc_constant": float(counts.max() / counts.sum())}
