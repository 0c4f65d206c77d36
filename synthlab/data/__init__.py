"""Real images in and out: NIfTI with affines, dataset layouts, unlabeled volumes, input checks.

Evaluation needs images nobody here made; this package is the one door they come in by. ``nifti`` reads and
writes single volumes and checks them, ``layouts`` knows the MSD and co-registered folder layouts and where data
lives, ``unlabeled`` feeds real volumes to pretraining. Everything is re-exported here: ``synthlab.data.X``.
"""

from __future__ import annotations

from .layouts import (
    Case,
    Subject,
    find_data_root,
    load_coregistered,
    load_icbm,
    load_msd,
    msd_entries,
    pick_name,
    resolve_data,
)
from .nifti import (
    NIFTI_SUFFIXES,
    Volume,
    check_pair,
    crop_or_pad,
    load_nifti,
    normalize_intensity,
    reorient,
    resample,
    save_nifti,
)
from .unlabeled import RealCropSource, list_nifti, load_unlabeled

__all__ = [
    "NIFTI_SUFFIXES",
    "Case",
    "RealCropSource",
    "Subject",
    "Volume",
    "check_pair",
    "crop_or_pad",
    "find_data_root",
    "list_nifti",
    "load_coregistered",
    "load_icbm",
    "load_msd",
    "load_nifti",
    "load_unlabeled",
    "msd_entries",
    "pick_name",
    "normalize_intensity",
    "reorient",
    "resample",
    "resolve_data",
    "save_nifti",
]
