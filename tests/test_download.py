"""Tests for synthlab.data.download against a local HTTP server: checksum, resume, bad archives, offline."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import socket
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from synthlab.data import download as fetch


def _archive(top: str = "Task04_Hippocampus", extra: tarfile.TarInfo | None = None) -> bytes:
    """A small MSD-shaped tar: dataset.json and one image entry, like the Decathlon archive."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, payload in ((f"{top}/dataset.json", json.dumps({"labels": {"0": "background"}}).encode()),
                              (f"{top}/imagesTr/hippocampus_001.nii.gz", b"\0" * 5000)):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        if extra is not None:
            tar.addfile(extra)
    return buffer.getvalue()


class _Served:
    """What the local server sends, and the Range headers it was asked for."""

    def __init__(self) -> None:
        self.body, self.ranges = b"", []


@pytest.fixture()
def server() -> Iterator[tuple[str, _Served]]:
    served = _Served()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server interface)
            wanted = self.headers.get("Range")
            served.ranges.append(wanted)
            start = int(wanted.removeprefix("bytes=").rstrip("-")) if wanted else 0
            body = served.body[start:]
            self.send_response(206 if wanted else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/Task04_Hippocampus.tar", served
    httpd.shutdown()
    httpd.server_close()


def test_download_verifies_unpacks_under_the_data_name_and_is_done_once(tmp_path: Path, server) -> None:
    url, served = server
    served.body = _archive()
    folder = fetch.download("hippocampus", tmp_path, url=url, md5=hashlib.md5(served.body).hexdigest())
    assert folder == tmp_path / "hippocampus" and (folder / "dataset.json").is_file()
    assert (folder / "imagesTr" / "hippocampus_001.nii.gz").stat().st_size == 5000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hippocampus"]  # no .part, no scratch folder left
    assert fetch.download("hippocampus", tmp_path, url=url, md5="0" * 32) == folder and len(served.ranges) == 1


def test_an_interrupted_download_resumes_from_its_part_file(tmp_path: Path, server) -> None:
    url, served = server
    served.body = _archive()
    (tmp_path / ".hippocampus.tar.part").write_bytes(served.body[:3000])  # what a killed download left
    fetch.download("hippocampus", tmp_path, url=url, md5=hashlib.md5(served.body).hexdigest())
    assert served.ranges == ["bytes=3000-"] and (tmp_path / "hippocampus" / "dataset.json").is_file()


def test_a_wrong_checksum_names_the_url_and_leaves_nothing_behind(tmp_path: Path, server) -> None:
    url, served = server
    served.body = _archive()
    with pytest.raises(ValueError, match=r"Task04_Hippocampus\.tar: MD5 .* differs"):
        fetch.download("hippocampus", tmp_path, url=url, md5="0" * 32)
    assert list(tmp_path.iterdir()) == []  # the damaged file is not kept for a resume


def test_an_archive_escaping_its_folder_is_refused(tmp_path: Path, server) -> None:
    url, served = server
    served.body = _archive(extra=tarfile.TarInfo("../outside.txt"))
    with pytest.raises(ValueError, match="refusing archive member"):
        fetch.download("hippocampus", tmp_path, url=url, md5=hashlib.md5(served.body).hexdigest())
    assert not (tmp_path / "hippocampus").exists() and not (tmp_path.parent / "outside.txt").exists()


def test_offline_is_one_line_naming_the_url_and_exit_code_2(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/Task04_Hippocampus.tar"
    with pytest.raises(OSError, match="cannot reach http://127.0.0.1"):
        fetch.download("hippocampus", tmp_path, url=closed, md5="0" * 32, timeout=5)
    assert fetch.main(["download", "hippocampus", "--dest", str(tmp_path), "--archive", str(tmp_path / "no.tar")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no.tar" in error and not (tmp_path / "hippocampus").exists()
