"""Data-set layouts: MSD folders, co-registered contrasts, where data lives, and the offline ICBM template.

Each loader checks what it loads (through :mod:`synthlab.data.nifti`) and names the offending file, so a
notebook fails on line one with a readable message instead of deep inside a loss.
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from ..io import write_atomic
from .label_ids import check_label_ids, declared_labels
from .nifti import Volume, check_pair, is_nifti, load_nifti, nifti_files, stem

__all__ = ["ICBM_NAME", "Case", "Subject", "data_name", "downloaded_data_root", "find_data_root", "icbm_folder",
           "list_volumes", "load_case", "load_coregistered", "load_icbm", "load_msd", "msd_entries", "pick_name",
           "resolve_data"]

_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Case:
    """One image (and optional label map) of a segmentation data set."""

    name: str
    image: Volume
    label: Volume | None = None


@dataclass(frozen=True)
class Subject:
    """Several co-registered contrasts of one subject, an optional label map, and optional probability maps."""

    name: str
    contrasts: dict[str, Volume]
    label: Volume | None = None
    maps: dict[str, Volume] = field(default_factory=dict)


def msd_entries(folder: str | Path, split: str = "training") -> list[tuple[Path, Path | None]]:
    """Validated ``(image, label)`` paths from a Medical Segmentation Decathlon ``dataset.json``, without loading.

    Use it to load cases lazily; :func:`load_msd` loads them eagerly.
    """
    folder = Path(folder)
    manifest = folder / "dataset.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"no dataset.json in {folder} (expected the MSD layout)")
    try:
        entries = json.loads(manifest.read_text())[split]
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{manifest} is not valid JSON: {err}") from err
    except (KeyError, TypeError) as err:
        raise ValueError(f"{manifest} has no {split!r} list") from err
    if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("image"), str)
                                                and isinstance(e.get("label") or "", str) for e in entries):
        raise ValueError(f"{manifest}: {split!r} must be a list of objects with an 'image' path (and optionally "
                         "a 'label' path), both strings")
    if not entries:
        raise ValueError(f"{manifest}: the {split!r} list is empty, so there are no cases to use")
    pairs = []
    for entry in entries:
        image = folder / entry["image"]
        label = folder / entry["label"] if entry.get("label") else None
        for path in (image, label):
            if path is not None and not path.is_file():
                raise FileNotFoundError(f"{manifest} names {path}, which does not exist")
        pairs.append((image, label))
    return pairs


def load_case(image_path: Path, label_path: Path | None, manifest: Path | None = None,
              declared: dict[int, str] | None = None) -> Case:
    """One image and its label map, checked: the same grid, and only ``declared`` ids (from ``manifest``).

    The one place a labelled case is loaded, so segmentation and registration refuse the same bad pairs.
    """
    image = load_nifti(image_path)
    label = load_nifti(label_path, kind="label") if label_path is not None else None
    if label is not None:
        check_pair(image, label)
        if declared is not None:
            check_label_ids(label, declared, manifest or label_path)
    return Case(stem(image_path), image, label)


def load_msd(folder: str | Path, *, limit: int | None = None, split: str = "training") -> list[Case]:
    """Load the first ``limit`` (default all) cases of an MSD-layout folder, checking each image/label pair.

    When ``dataset.json`` declares its ``labels``, a label map holding any other id is a ValueError naming the
    file and the value.
    """
    pairs = msd_entries(folder, split)[:limit]
    manifest = Path(folder) / "dataset.json"
    declared = declared_labels(manifest)
    return [load_case(image, label, manifest, declared) for image, label in pairs]


def list_volumes(path: str | Path, flag: str, kind: str = "image") -> list[Path]:
    """The NIfTI files a ``--data`` or ``--labels`` argument names, checked before anything is read.

    ``path`` may be one NIfTI file, a folder (searched recursively; any other file in it is a ValueError naming
    it and ``flag``) or an MSD folder, whose ``dataset.json`` lists the images (``kind="image"``) or label maps
    (``kind="label"``) to use.
    """
    path = Path(path)
    if path.is_file():
        if not is_nifti(path):
            raise ValueError(f"{flag}: {path} is not a NIfTI file (.nii or .nii.gz)")
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{flag}: no such folder or file: {path}")
    if (path / "dataset.json").is_file():
        pairs = msd_entries(path)
        files = [image for image, _ in pairs] if kind == "image" else [label for _, label in pairs if label]
    else:
        files = nifti_files(path, recursive=True, flag=flag)
    if not files:
        raise ValueError(f"{flag}: {path} holds no NIfTI {'label maps' if kind == 'label' else 'volumes'}")
    return files


def _is_label_name(name: str) -> bool:
    lowered = name.lower()
    return "label" in lowered or "seg" in lowered


def load_coregistered(folder: str | Path) -> Subject:
    """Load every NIfTI in ``folder`` as one contrast of one subject (name = file stem).

    A file whose name contains ``label`` or ``seg`` is the label map (at most one). All volumes must share
    shape and affine: that is what makes the set usable as registration ground truth (identity).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder not found: {folder}")
    files = nifti_files(folder)
    label_files = [p for p in files if _is_label_name(stem(p))]
    contrast_files = [p for p in files if p not in label_files]
    if not contrast_files:
        raise ValueError(f"{folder} holds no NIfTI contrast (.nii or .nii.gz)")
    if len(label_files) > 1:
        raise ValueError(f"{folder} holds several label maps: {', '.join(p.name for p in label_files)}")
    contrasts = {stem(p): load_nifti(p) for p in contrast_files}
    label = load_nifti(label_files[0], kind="label") if label_files else None
    reference = next(iter(contrasts.values()))
    for volume in [*contrasts.values(), *([label] if label is not None else [])]:
        check_pair(reference, volume)
    return Subject(folder.name, contrasts, label)


def find_data_root() -> Path | None:
    """``$SYNTHLAB_DATA`` if set and existing, else ``<repo>/../shared/data`` if it exists, else the folder
    ``python -m synthlab.data download`` fills (:func:`downloaded_data_root`) if it exists, else None."""
    env = os.environ.get("SYNTHLAB_DATA")
    if env and Path(env).expanduser().is_dir():
        return Path(env).expanduser()
    shared = _REPO_ROOT.parent / "shared" / "data"
    if shared.is_dir():
        return shared
    downloaded = downloaded_data_root()
    return downloaded if downloaded.is_dir() else None


def downloaded_data_root() -> Path:
    """Where downloaded data sets go when ``$SYNTHLAB_DATA`` is unset: a ``data`` folder in synthlab's cache."""
    return _cache_dir() / "data"


ICBM_NAME = "icbm152"  # always available offline: the nilearn wheel's template, written to the cache on first use


def generated_data_folder(name: str) -> Path:
    """Where a data set synthlab makes itself (``python -m synthlab.dev_pairs``) goes: a cache folder that
    :func:`resolve_data` finds by ``name``."""
    return _cache_dir() / name


def _cache_dir() -> Path:
    """``<repo>/data/cache`` in a checkout, else ``~/.cache/synthlab``."""
    repo_cache = _REPO_ROOT / "data"
    return repo_cache / "cache" if repo_cache.is_dir() else Path.home() / ".cache" / "synthlab"


def icbm_folder() -> Path:
    """A folder holding the ICBM152 2009a T1 template at 1 mm (``t1.nii.gz``, skull-stripped) and its tissue
    labels (``labels.nii.gz``), written once from the nilearn wheel, so that ``--data icbm152`` (real
    unlabeled MRI for VoCo-style pretraining) and ``--labels icbm152/labels.nii.gz`` work offline."""
    folder = _cache_dir() / ICBM_NAME
    if not (folder / "t1.nii.gz").is_file():
        subject = load_icbm(resolution=1)
        folder.mkdir(parents=True, exist_ok=True)
        for name, volume in (("labels", subject.label), ("t1", subject.contrasts["t1"])):
            write_atomic(folder / f"{name}.nii.gz",
                         lambda stream, v=volume: stream.write(_nifti_bytes(v)))  # t1 last: it marks completion
    return folder


def _nifti_bytes(volume: Volume) -> bytes:
    data = volume.array.cpu().numpy().astype(np.int16 if volume.is_label else np.float32)
    return gzip.compress(nib.Nifti1Image(data, volume.affine).to_bytes())


def data_name(folder: str | Path) -> str:
    """``folder`` relative to the data root or the cache of data synthlab makes when it lies there
    (``"hippocampus"``, ``"abdomen-mrct"``), so a results file names the data set, not one machine's path; any
    other folder as given (the inverse of :func:`resolve_data`)."""
    resolved = Path(folder).resolve()
    for root in (find_data_root(), _cache_dir()):
        if root is not None and resolved.is_relative_to(root.resolve()):
            return str(resolved.relative_to(root.resolve()))
    return str(folder)


def resolve_data(name_or_path: str | Path) -> Path:
    """Find a data set: an existing path, else ``$SYNTHLAB_DATA/<name>``, ``<repo>/../shared/data/<name>``,
    then the ignored cache ``<repo>/data/cache/<name>``; ``icbm152`` (and paths under it) is the ICBM152
    template of the nilearn wheel (:func:`icbm_folder`).

    Raises:
        FileNotFoundError: listing every place it looked.
    """
    name = str(name_or_path)
    if name == ICBM_NAME or name.startswith(ICBM_NAME + "/"):
        return icbm_folder().parent / name
    candidates = [Path(name_or_path).expanduser()]
    env = os.environ.get("SYNTHLAB_DATA")
    if env:
        candidates.append(Path(env).expanduser() / str(name_or_path))
    candidates += [_REPO_ROOT.parent / "shared" / "data" / name, _cache_dir() / name]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    looked = ", ".join(dict.fromkeys(str(c) for c in candidates))  # each place once, on one line
    raise FileNotFoundError(f"data set {str(name_or_path)!r} not found; looked in: {looked}. "
                            "Set SYNTHLAB_DATA or see data/README.md.")


def load_icbm(resolution: int = 2, threshold: float = 0.5) -> Subject:
    """The ICBM152 2009a template shipped inside the nilearn wheel: a real brain that needs no download.

    Returns a :class:`Subject` with contrast ``"t1"`` (skull-stripped, in [0, 1]), probability maps ``"gm"``
    and ``"wm"`` in ``maps``, and a label map: 0 background, 1 grey matter, 2 white matter (the likelier
    of the two where GM + WM >= ``threshold``), 3 CSF (the rest of nilearn's brain mask).

    Args:
        resolution: voxel size in mm (nilearn resamples the 1 mm template; 2 gives 99x117x95 voxels).
        threshold: tissue probability above which a voxel is GM or WM rather than CSF.
    """
    try:
        from nilearn import datasets
    except ImportError as err:
        raise ImportError("load_icbm needs nilearn: pip install 'synthlab[data]' (or pip install nilearn)") from err
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")

    def as_volume(img: nib.Nifti1Image) -> Volume:
        return Volume(torch.from_numpy(img.get_fdata(dtype=np.float32)), np.asarray(img.affine, np.float64))

    t1 = as_volume(datasets.load_mni152_template(resolution=resolution))
    gm = as_volume(datasets.load_mni152_gm_template(resolution=resolution))
    wm = as_volume(datasets.load_mni152_wm_template(resolution=resolution))
    mask = as_volume(datasets.load_mni152_brain_mask(resolution=resolution))
    tissue = torch.stack([gm.array, wm.array])
    label = torch.where(mask.array > 0.5, 3, 0)
    label = torch.where(tissue.sum(0) >= threshold, tissue.argmax(0) + 1, label).long()
    for volume in (gm, wm, mask):
        check_pair(t1, volume)
    return Subject(f"icbm152_2009a_{resolution}mm", {"t1": t1}, Volume(label, t1.affine), {"gm": gm, "wm": wm})


def pick_name(names: list[str] | tuple[str, ...], wanted: str, what: str) -> str:
    """Match a name exactly, else case-insensitively, else as a unique case-insensitive prefix.

    Lets a user say ``--fixed t1pre`` for ``T1prereg``; an ambiguous or unknown name is a ValueError that lists
    the choices.
    """
    if wanted in names:
        return wanted
    matches = ([n for n in names if n.lower() == wanted.lower()]
               or [n for n in names if n.lower().startswith(wanted.lower())])
    if len(matches) == 1:
        return matches[0]
    reason = "is ambiguous" if matches else "is unknown"
    raise ValueError(f"{what} {wanted!r} {reason}; available: {', '.join(sorted(names))}")
