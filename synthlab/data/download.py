"""Fetch a public evaluation data set once: resumable, checksum-verified, extracted safely, never half-written.

On a machine without ``../shared/data`` (a Colab session, a laptop) the few-shot notebooks need the MSD
hippocampus set. ``python -m synthlab.data download hippocampus`` fetches the Decathlon archive from the mirror
MONAI's ``DecathlonDataset`` downloads from, with the MD5 sum MONAI checks it against, and unpacks it to
``DEST/hippocampus`` (the name every synthlab command looks for). An interrupted download resumes from its
``.part`` file; a wrong checksum or an unreachable server is one line naming the URL, and leaves no folder.
"""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..cli import USER_ERRORS, Parser, input_error

__all__ = ["SOURCES", "Source", "default_destination", "download", "main"]


@dataclass(frozen=True)
class Source:
    """Where a data set comes from and how to check it."""

    url: str
    md5: str
    top_folder: str  # the folder the archive unpacks to, renamed to the data set's name
    credit: str


SOURCES: dict[str, Source] = {
    # MONAI's DecathlonDataset resource and md5 tables (monai/apps/datasets.py) name this mirror and sum.
    "hippocampus": Source("https://msd-for-monai.s3-us-west-2.amazonaws.com/Task04_Hippocampus.tar",
                          "9d24dba78a72977dbd1d2e110310f31b", "Task04_Hippocampus",
                          "Medical Segmentation Decathlon Task04_Hippocampus, CC BY-SA 4.0"),
}
CHUNK = 1 << 20


def default_destination() -> Path:
    """``$SYNTHLAB_DATA`` when set, else the per-user cache that :func:`~synthlab.data.find_data_root` also reads."""
    from .layouts import downloaded_data_root, find_data_root

    return find_data_root() or downloaded_data_root()


def _fetch(url: str, part: Path, timeout: float) -> None:
    """Append the rest of ``url`` to ``part`` (an HTTP range request when part of it is already there)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the range starts at the end: the file is complete
            return
        raise OSError(f"{url}: the server answered HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise OSError(f"cannot reach {url} ({reason}); offline? Fetch the archive elsewhere and pass it with "
                      "--archive FILE") from err
    with response:
        resumed = have and response.status == 206
        with part.open("ab" if resumed else "wb") as out:  # a server that ignores the range sends it all
            while chunk := response.read(CHUNK):
                out.write(chunk)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _extract(archive: Path, top_folder: str, target: Path) -> None:
    """Unpack ``archive`` and move its ``top_folder`` to ``target``, refusing members that leave the folder."""
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".unpacking-") as scratch, \
            tarfile.open(archive) as tar:
        for member in tar.getmembers():
            path = Path(member.name)
            if path.is_absolute() or ".." in path.parts or not (member.isfile() or member.isdir()):
                raise ValueError(f"{archive}: refusing archive member {member.name!r} (outside the folder, or a link)")
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # the standard check where it exists
        tar.extractall(scratch, **safe)  # every member checked above: plain files and folders inside scratch
        unpacked = Path(scratch) / top_folder
        if not (unpacked / "dataset.json").is_file():
            raise ValueError(f"{archive}: no {top_folder}/dataset.json inside; not the expected archive")
        unpacked.rename(target)


def download(name: str, destination: str | Path | None = None, *, archive: str | Path | None = None,
             url: str | None = None, md5: str | None = None, timeout: float = 60.0) -> Path:
    """Make ``DEST/name`` hold the data set ``name``; returns that folder (at once if it is already there).

    Args:
        name: a key of :data:`SOURCES`.
        destination: the data root (default :func:`default_destination`).
        archive: a local copy of the archive instead of the download (checked against the same sum).
        url, md5: another mirror and its checksum (tests use a local server).
    """
    if name not in SOURCES:
        raise ValueError(f"unknown data set {name!r}; choose one of {sorted(SOURCES)}")
    source = SOURCES[name]
    root = Path(destination) if destination is not None else default_destination()
    target = root / name
    if (target / "dataset.json").is_file():
        return target
    if target.exists():
        raise ValueError(f"{target} exists but holds no dataset.json; move it away and run again")
    root.mkdir(parents=True, exist_ok=True)
    url, md5 = url or source.url, md5 or source.md5
    if archive is None:
        part = root / f".{name}.tar.part"
        _fetch(url, part, timeout)
        archive_path = part
    else:
        archive_path = Path(archive)
        if not archive_path.is_file():
            raise FileNotFoundError(f"archive: {archive_path} does not exist")
    found = _md5(archive_path)
    if found != md5:
        if archive is None:
            archive_path.unlink()  # a corrupt download must not be resumed
        raise ValueError(f"{archive if archive is not None else url}: MD5 {found} differs from the expected {md5}; "
                         "the file is damaged or not the expected archive")
    _extract(archive_path, source.top_folder, target)
    if archive is None:
        archive_path.unlink()
    return target


def main(argv: list[str] | None = None) -> int:
    """``python -m synthlab.data download NAME [--dest DIR] [--archive FILE]``; exit 2 with one line on error."""
    parser = Parser(prog="python -m synthlab.data", description="fetch a public evaluation data set")
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("download", help="download, verify and unpack a data set")
    fetch.add_argument("name", choices=sorted(SOURCES))
    fetch.add_argument("--dest", default=None, help="data root (default: $SYNTHLAB_DATA, else the user cache)")
    fetch.add_argument("--archive", default=None, help="a local copy of the archive instead of the download")
    args = parser.parse_args(argv)
    try:
        folder = download(args.name, args.dest, archive=args.archive)
    except (*USER_ERRORS, OSError) as err:
        return input_error("synthlab data download", err)
    print(f"{args.name}: {folder} ({SOURCES[args.name].credit}); point SYNTHLAB_DATA at {folder.parent} "
          "if it is not found by itself")
    return 0
