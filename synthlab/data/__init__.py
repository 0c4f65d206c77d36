"""Real images in and out: NIfTI with affines, dataset layouts, unlabeled volumes, input checks.

Evaluation needs images nobody here made; this package is the one door they come in by. ``nifti`` reads and
writes single volumes and checks them, ``label_ids`` says which label ids a set has and numbers them 1..n,
``layouts`` knows the MSD and co-registered folder layouts and where data lives, ``unlabeled`` feeds real volumes
to pretraining, ``download`` fetches a public data set once (``python -m synthlab.data download hippocampus``).
Everything but the download is re-exported here: ``synthlab.data.X``.
"""

from __future__ import annotations

from .label_ids import check_label_ids, declared_labels, label_counts, relabel, warn_stray_labels
from .layouts import (
    Case,
    Subject,
    data_name,
    downloaded_data_root,
    find_data_root,
    generated_data_folder,
    list_volumes,
    load_case,
    load_coregistered,
    load_icbm,
    load_msd,
    msd_entries,
    pick_name,
    resolve_data,
)
from .nifti import (
    NIFTI_SUFFIXES,
    DataWarning,
    Volume,
    check_pair,
    crop_or_pad,
    is_nifti,
    label_values,
    load_nifti,
    nifti_files,
    normalize_intensity,
    read_array,
    reorient,
    resample,
    save_nifti,
)
from .unlabeled import RealCropSource, load_unlabeled, unlabeled_files

__all__ = [
    "NIFTI_SUFFIXES",
    "Case",
    "DataWarning",
    "RealCropSource",
    "Subject",
    "Volume",
    "check_label_ids",
    "check_pair",
    "crop_or_pad",
    "data_name",
    "declared_labels",
    "downloaded_data_root",
    "generated_data_folder",
    "find_data_root",
    "is_nifti",
    "label_counts",
    "label_values",
    "list_volumes",
    "load_case",
    "load_coregistered",
    "load_icbm",
    "load_msd",
    "load_nifti",
    "load_unlabeled",
    "msd_entries",
    "nifti_files",
    "normalize_intensity",
    "pick_name",
    "read_array",
    "relabel",
    "reorient",
    "resample",
    "resolve_data",
    "save_nifti",
    "unlabeled_files",
    "warn_stray_labels",
]
