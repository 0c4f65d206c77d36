"""Which label ids a data set has, and numbering them 1..n.

Evaluation must take its labels from what the data set declares (MSD's ``dataset.json`` ``labels``) or, failing
that, from the values present, never from ``max()``: one stray voxel labelled 1000 would otherwise create 998
empty classes that each score a perfect Dice, and id 100000 a one-hot of 100001 channels. Ids are then numbered
``1..n`` (0 stays background) so every per-class tensor is as small as the number of classes.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from .nifti import DataWarning, Volume

__all__ = ["STRAY_VOXELS", "check_label_ids", "declared_labels", "label_counts", "relabel", "warn_stray_labels"]

STRAY_VOXELS = 10  # a label covering fewer voxels than this in a whole data set is probably a stray value


def declared_labels(manifest: str | Path) -> dict[int, str] | None:
    """The ids and names a ``dataset.json`` declares under ``labels`` (``{0: "background", 1: ...}``), or None.

    Raises:
        ValueError: ``labels`` is not an object whose keys are non-negative integers; names the file.
    """
    manifest = Path(manifest)
    try:
        declared = json.loads(manifest.read_text()).get("labels")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
        raise ValueError(f"{manifest} is not a valid dataset.json ({err})") from err
    if declared is None:
        return None
    if not isinstance(declared, dict) or not declared:
        raise ValueError(f"{manifest}: 'labels' must be an object mapping label ids to names, like "
                         '{"0": "background", "1": "tumour"}')
    ids = {}
    for key, name in declared.items():
        if not str(key).isdigit():
            raise ValueError(f"{manifest}: label id {key!r} under 'labels' is not a non-negative integer")
        ids[int(key)] = str(name)
    return dict(sorted(ids.items()))


def label_counts(volumes: Iterable[Volume]) -> Counter[int]:
    """Voxels per label id over all ``volumes`` (one ``unique`` per map, never a table sized by the largest id)."""
    counts: Counter[int] = Counter()
    for volume in volumes:
        values, numbers = torch.unique(volume.array, return_counts=True)
        counts.update(dict(zip(values.tolist(), numbers.tolist(), strict=True)))
    return counts


def check_label_ids(volume: Volume, allowed: Iterable[int], source: str | Path) -> None:
    """A ValueError naming the file and the value unless every id in ``volume`` is among ``allowed``."""
    allowed = set(allowed)
    values, numbers = torch.unique(volume.array, return_counts=True)
    stray = [(v, n) for v, n in zip(values.tolist(), numbers.tolist(), strict=True) if v not in allowed]
    if stray:
        value, voxels = stray[0]
        raise ValueError(f"{volume.name} holds label {value} ({voxels} voxel{'s' * (voxels != 1)}), which {source} "
                         f"does not declare (declared: {', '.join(map(str, sorted(allowed)))})")


def warn_stray_labels(counts: Counter[int], source: str | Path) -> None:
    """A :class:`DataWarning` for each foreground id covering fewer than :data:`STRAY_VOXELS` voxels in all."""
    for value, voxels in sorted(counts.items()):
        if value != 0 and voxels < STRAY_VOXELS:
            warnings.warn(f"label {value} covers only {voxels} voxel{'s' * (voxels != 1)} in all of {source}; "
                          "a stray value? It is scored as a class of its own", DataWarning, stacklevel=2)


def relabel(volume: Volume, ids: Sequence[int]) -> Volume:
    """``volume`` with foreground ids ``ids`` numbered ``1..len(ids)`` in their sorted order (0 stays 0).

    Every value must be 0 or in ``ids`` (check with :func:`check_label_ids` first).
    """
    table = torch.tensor(sorted({0, *ids}), dtype=volume.array.dtype, device=volume.array.device)
    index = torch.searchsorted(table, volume.array.contiguous())
    if bool((table[index.clamp_max(len(table) - 1)] != volume.array).any()):
        raise ValueError(f"{volume.name} holds a label outside {sorted(ids)}")
    return Volume(index.to(volume.array.dtype), volume.affine, volume.path)
