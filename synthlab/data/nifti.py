"""NIfTI in and out with affines, plus the input checks every loader shares.

Real files are where things go wrong: truncated downloads, 4D series, NaNs, float label maps, image/label pairs
on different grids. Every function here checks for those and raises a ``ValueError`` (or ``FileNotFoundError``)
that names the offending file. A :class:`Volume` holds one 3D array (no channel axis) as a torch tensor,
``float32`` for images and ``int64`` for label maps, plus the 4x4 voxel-to-world (RAS+ mm) affine.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from nibabel import orientations

from ..dims import interp_mode
from ..spatial import gaussian_blur

__all__ = ["NIFTI_SUFFIXES", "DataWarning", "Volume", "check_pair", "crop_or_pad", "is_nifti", "load_nifti",
           "label_values", "nifti_files", "normalize_intensity", "read_array", "reorient", "resample", "save_nifti",
           "stem"]

Kind = Literal["image", "label"]
NIFTI_SUFFIXES = (".nii.gz", ".nii")  # the one list; ``.nii.gz`` first, so stripping a suffix strips it whole
# Errors nibabel, gzip and zlib raise on unreadable or truncated files (gzip.BadGzipFile is an OSError).
_READ_ERRORS = (nib.filebasedimages.ImageFileError, EOFError, OSError, zlib.error, ValueError)


class DataWarning(UserWarning):
    """Input that is usable but probably not what the person meant (a constant image, say)."""


def _memory_bytes() -> int | None:
    """Physical memory of this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _unreadable(path: Path, err: Exception) -> ValueError:
    """One line for a file nibabel, gzip or numpy could not read (their messages can span several lines)."""
    text = " ".join(str(err).split())  # one line, nothing cut: nibabel puts the file name on a line of its own
    return ValueError(f"cannot read {path} (corrupt or truncated?): {type(err).__name__}: {text}")


def is_nifti(path: Path) -> bool:
    """A file named like a NIfTI volume (``.nii`` or ``.nii.gz``)."""
    return path.name.endswith(NIFTI_SUFFIXES)


def nifti_files(folder: str | Path, *, recursive: bool = False, flag: str | None = None) -> list[Path]:
    """The NIfTI files in ``folder`` (and its sub-folders with ``recursive``), sorted; hidden entries are skipped.

    With ``flag`` (the command-line option the folder came from), any other file is a ValueError naming it and
    the flag: a stray file is pointed out before any work starts rather than skipped in silence. Without it,
    other files are ignored (a subject folder may hold a README beside its contrasts).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{flag or 'data'}: folder not found: {folder}")
    found, strays = [], []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if recursive:
                found += nifti_files(entry, recursive=True, flag=flag)
            elif flag is not None:
                strays.append(entry)
        elif entry.is_file() and is_nifti(entry):
            found.append(entry)
        elif flag is not None:
            strays.append(entry)
    if strays:
        kind = "a folder" if strays[0].is_dir() else "not a NIfTI file (.nii or .nii.gz)"
        more = f" (and {len(strays) - 1} more stray entries)" if len(strays) > 1 else ""
        raise ValueError(f"{flag}: {strays[0]} is {kind}{more}; the folder may hold NIfTI volumes only")
    return found


def read_array(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The voxel array (scaling applied) and 4x4 affine of a NIfTI file, checked before it can do harm.

    The header is read first: a shape that would not fit this machine's memory (a corrupt or hostile header)
    or a non-real data type is refused before a byte of voxel data is read. Read errors of truncated or
    non-NIfTI files become one ``ValueError`` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NIfTI file not found: {path}")
    try:
        img = nib.load(path)
        shape, dtype = tuple(int(n) for n in img.shape), img.get_data_dtype()
    except _READ_ERRORS as err:
        raise _unreadable(path, err) from err
    if dtype.kind not in "biuf":
        raise ValueError(f"{path} stores {dtype} voxels; synthlab reads real-valued images and label maps only")
    needed = math.prod(shape) * max(dtype.itemsize, 4) * 2  # on-disk array plus the float32/int copy made of it
    memory = _memory_bytes()
    if memory is not None and needed > memory:
        raise ValueError(f"{path}: the header claims a {'x'.join(map(str, shape))} volume ({needed / 2**30:.0f} "
                         f"GiB to load), more than this machine's {memory / 2**30:.0f} GiB; is the header corrupt?")
    try:
        data = np.asanyarray(img.dataobj)  # on-disk dtype with scl_slope/inter applied; reads (and inflates) it all
    except _READ_ERRORS as err:
        raise _unreadable(path, err) from err
    return data, np.asarray(img.affine, dtype=np.float64)


@dataclass(frozen=True)
class Volume:
    """One 3D image or label map on a world grid.

    Attributes:
        array: spatial tensor ``(X, Y, Z)``; float32 for images, int64 for label maps.
        affine: 4x4 voxel-index -> world (mm, RAS+) matrix.
        path: the file it came from, or None when built in memory (error messages use :attr:`name`).
    """

    array: torch.Tensor
    affine: np.ndarray
    path: Path | None = None

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else "<in-memory volume>"

    @property
    def is_label(self) -> bool:
        return not self.array.is_floating_point()

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size in mm along each array axis (column norms of the affine, so obliques are handled)."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def orientation(self) -> str:
        """Axis codes such as ``"RAS"``: the world direction each array axis points to (what :func:`reorient`
        takes, to store one scan as another is stored)."""
        return "".join(nib.aff2axcodes(self.affine))


def stem(path: Path) -> str:
    """File name without ``.nii.gz`` / ``.nii``."""
    for suffix in NIFTI_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.stem


def load_nifti(path: str | Path, *, kind: Kind = "image") -> Volume:
    """Read a 3D NIfTI, keeping its affine, and reject what would silently break evaluation.

    Args:
        path: ``.nii`` or ``.nii.gz`` file.
        kind: ``"image"`` (float32) or ``"label"`` (int64; values must be non-negative integers).
    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unreadable/truncated file, not 3D (a trailing singleton 4th axis is allowed), NaN/inf values,
            or for labels non-integer or negative values. The message names the file.
    """
    if kind not in ("image", "label"):
        raise ValueError(f"kind must be 'image' or 'label', got {kind!r}")
    path = Path(path)
    data, affine = read_array(path)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path} has shape {data.shape}; expected a 3D volume (split 4D series first)")
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        raise ValueError(f"{path} contains NaN or infinite values")
    if data.size == 0:
        raise ValueError(f"{path} has shape {data.shape}: it holds no voxels")
    if not np.isfinite(affine).all() or abs(float(np.linalg.det(affine[:3, :3]))) < 1e-12:
        raise ValueError(f"{path} has a degenerate voxel-to-world affine (zero or non-finite voxel sizes); "
                         "its header needs fixing")
    if kind == "image":
        with np.errstate(over="ignore"):  # overflow to inf is refused just below, naming the file
            array = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
        if not bool(torch.isfinite(array).all()):
            raise ValueError(f"{path} holds values beyond the float32 range (about 3.4e38)")
        if data.min() == data.max():
            warnings.warn(f"{path} is constant (every voxel {float(data.flat[0]):g}): it carries no image "
                          "content, so every score computed on it is meaningless", DataWarning, stacklevel=2)
    else:
        array = torch.from_numpy(label_values(data, path))
    return Volume(array, affine, path)


def label_values(data: np.ndarray, path: str | Path) -> np.ndarray:
    """``data`` as an int64 label map; NaN, non-integer, negative or over-large ids are a ValueError naming ``path``.

    The one check of label values, shared by evaluation (:func:`load_nifti`) and the synthetic shape bank.
    """
    whole = not np.issubdtype(data.dtype, np.floating) or (np.isfinite(data).all()
                                                            and np.array_equal(data, np.round(data)))
    if not whole:
        raise ValueError(f"{path} is loaded as a label map but holds non-integer values")
    if data.size and data.min() < 0:
        raise ValueError(f"{path} is loaded as a label map but holds negative values (min {data.min()})")
    if data.size and data.max() > 2**31 - 1:
        raise ValueError(f"{path} holds label {data.max():g}, too large for a label id (at most 2**31 - 1)")
    return np.ascontiguousarray(data, dtype=np.int64)


def save_nifti(volume: Volume, path: str | Path) -> Path:
    """Write ``volume`` with its affine (labels as int16 or int32, images as float32) and return the path."""
    path = Path(path)
    data = volume.array.detach().cpu().numpy()
    if volume.is_label:
        data = data.astype(np.int16 if data.size == 0 or data.max() < 2**15 else np.int32)
    else:
        data = data.astype(np.float32)
    nib.save(nib.Nifti1Image(data, volume.affine), path)
    return path


def reorient(volume: Volume, target: str = "RAS") -> Volume:
    """Permute/flip the array axes so they point to ``target`` (e.g. ``"RAS"``, ``"LPS"``); world positions kept.

    Only axis swaps and flips are applied (no interpolation): each axis goes to the target direction closest
    to it, so an oblique scan stays oblique.
    """
    target = target.upper()
    if len(target) != 3 or any(sum(c in pair for c in target) != 1 for pair in ("LR", "PA", "IS")):
        raise ValueError(f"target must name one of L/R, P/A, I/S each, like 'RAS'; got {target!r}")
    current = orientations.io_orientation(volume.affine)
    transform = orientations.ornt_transform(current, orientations.axcodes2ornt(tuple(target)))
    shape = tuple(volume.array.shape)
    reoriented = orientations.apply_orientation(volume.array.cpu().numpy(), transform)
    array = torch.from_numpy(np.ascontiguousarray(reoriented)).to(volume.array.device)
    affine = volume.affine @ orientations.inv_ornt_aff(transform, shape)
    return dataclasses.replace(volume, array=array, affine=affine)


def resample(volume: Volume, spacing: float | tuple[float, float, float], kind: Kind | None = None,
             *, antialias: bool = True) -> Volume:
    """Resample to (about) ``spacing`` mm, keeping the field of view; the affine is updated to match.

    The new shape is ``round(shape * old_spacing / spacing)``, so the realised spacing can differ slightly from
    the request (it is exact for integer factors). Voxel edges stay aligned (``align_corners=False``).

    Args:
        spacing: target voxel size in mm, one number or one per array axis.
        kind: ``"image"`` (linear) or ``"label"`` (nearest); None picks it from the array dtype.
        antialias: for images, blur with sigma ``(factor - 1) / 2`` voxels along downsampled axes first so that
            fine texture does not alias into the coarse grid.
    """
    kind = kind or ("label" if volume.is_label else "image")
    target = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,))
    if (target <= 0).any():
        raise ValueError(f"spacing must be positive, got {spacing!r}")
    old_shape = np.asarray(volume.array.shape)
    new_shape = np.maximum(1, np.round(old_shape * np.asarray(volume.spacing) / target)).astype(int)
    factor = old_shape / new_shape  # input voxels per output voxel, per axis
    x = volume.array[None, None].float()
    if kind == "label":
        out = F.interpolate(x, size=tuple(new_shape.tolist()), mode="nearest-exact")[0, 0].to(volume.array.dtype)
    else:
        if antialias and (factor > 1).any():
            sigma = torch.tensor(np.maximum(0.0, (factor - 1) / 2), dtype=x.dtype, device=x.device)
            x = gaussian_blur(x, sigma[None])
        out = F.interpolate(x, size=tuple(new_shape.tolist()), mode=interp_mode(3), align_corners=False)[0, 0]
    # Output voxel j sits at input coordinate (j + 0.5) * factor - 0.5.
    index_map = np.eye(4)
    index_map[:3, :3] = np.diag(factor)
    index_map[:3, 3] = (factor - 1) / 2
    return dataclasses.replace(volume, array=out, affine=volume.affine @ index_map)


def _crop_pad_starts(shape: tuple[int, ...], size: tuple[int, ...]) -> list[int]:
    """Per axis, the input index of output voxel 0 (negative: that much padding before).

    Both directions round the leading margin down, so padding then cropping back returns the original.
    """
    return [(s - t) // 2 if s >= t else -((t - s) // 2) for s, t in zip(shape, size, strict=True)]


def crop_or_pad(array: torch.Tensor, size: tuple[int, ...], value: float = 0.0) -> torch.Tensor:
    """Centre-crop or constant-pad the last ``len(size)`` axes of ``array`` to ``size`` (works for 2D and 3D)."""
    size = tuple(int(s) for s in size)
    if len(size) > array.ndim or any(s < 1 for s in size):
        raise ValueError(f"size {size} does not fit an array of shape {tuple(array.shape)}")
    spatial = tuple(array.shape[-len(size):])
    out = array
    for k, (start, target) in enumerate(zip(_crop_pad_starts(spatial, size), size, strict=True)):
        axis = array.ndim - len(size) + k
        if start > 0:
            out = out.narrow(axis, start, target)
        elif out.shape[axis] < target:
            before, after = -start, target - out.shape[axis] + start
            out = F.pad(out, [0, 0] * (out.ndim - axis - 1) + [before, after], value=value)
    return out


def normalize_intensity(array: torch.Tensor, lower: float = 0.5, upper: float = 99.5,
                        mask: torch.Tensor | None = None) -> torch.Tensor:
    """Map the ``lower``/``upper`` percentiles to 0/1 and clip: robust to hot voxels and scanner units.

    Args:
        array: one image, any shape.
        lower, upper: percentiles in [0, 100], ``lower < upper``.
        mask: optional boolean tensor (same shape); percentiles are taken inside it only (e.g. the brain),
            so a large background does not set the scale. The whole array is mapped.
    Returns:
        float tensor in [0, 1]; all zeros when the two percentiles coincide (a constant image).
    """
    if not 0 <= lower < upper <= 100:
        raise ValueError(f"need 0 <= lower < upper <= 100, got lower={lower}, upper={upper}")
    values = array.float()
    sample = values[mask.bool()] if mask is not None else values.flatten()
    if sample.numel() == 0:
        raise ValueError("mask selects no voxels")
    lo, hi = _percentiles(sample, (lower, upper))
    if hi <= lo:
        return torch.zeros_like(values)
    return ((values - lo) / (hi - lo)).clamp_(0.0, 1.0)


def _percentiles(values: torch.Tensor, qs: tuple[float, ...]) -> list[torch.Tensor]:
    """Linear-interpolated percentiles by one sort (torch.quantile refuses inputs above 2**24 elements)."""
    ordered = values.flatten().sort().values
    last = ordered.numel() - 1
    out = []
    for q in qs:
        pos = q / 100 * last
        below = int(np.floor(pos))
        above = min(below + 1, last)
        out.append(ordered[below] + (pos - below) * (ordered[above] - ordered[below]))
    return out


def check_pair(first: Volume, second: Volume, atol: float = 1e-3) -> None:
    """Raise a ValueError naming both files unless the two volumes share shape and affine (within ``atol`` mm)."""
    if tuple(first.array.shape) != tuple(second.array.shape):
        raise ValueError(f"shape mismatch: {first.name} is {tuple(first.array.shape)} but "
                         f"{second.name} is {tuple(second.array.shape)}")
    if not np.allclose(first.affine, second.affine, rtol=0.0, atol=atol):
        worst = float(np.abs(first.affine - second.affine).max())
        raise ValueError(f"affine mismatch (max difference {worst:.4g}) between {first.name} and {second.name}")
