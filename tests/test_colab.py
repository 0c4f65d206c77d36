"""Tests for what a Colab user meets: badges and install cells that agree with pyproject.toml, the GPU profile."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from synthlab import colab
from synthlab.profiles import get_profile, use_profile

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_every_notebook_opens_and_installs_from_the_repository_that_pyproject_names() -> None:
    url = colab.repository_url()
    assert url.startswith("https://github.com/") and colab.check() == []
    for path in sorted(NOTEBOOKS.glob("[0-9]*.py")):
        text = path.read_text()
        assert colab.badge(path.stem, url) in text and f"synthlab[data] @ git+{url}" in text
        paired = path.with_suffix(".ipynb").read_text()  # the stored notebook a Colab user opens
        assert f"github/{url.removeprefix('https://github.com/')}/blob/main/notebooks/{path.stem}.ipynb" in paired
        assert "synthlab[data] @ git+" in paired


def test_a_new_url_is_caught_by_check_and_fixed_by_write(tmp_path: Path) -> None:
    for path in NOTEBOOKS.glob("[0-9]*.py"):
        shutil.copy(path, tmp_path / path.name)
    moved = "https://github.com/someone/synthlab-fork"
    assert len(colab.check(tmp_path, moved)) == len(list(tmp_path.glob("*.py"))) > 0
    assert colab.write(tmp_path, moved) and colab.check(tmp_path, moved) == []
    assert "git+https://github.com/someone/synthlab-fork" in (tmp_path / "04_segmentation.py").read_text()
    compile(colab.install_cell(moved), "install cell", "exec")  # valid Python as written into the notebook


def test_the_url_comes_from_pyproject(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\n\n[project.urls]\nRepository = "https://github.com/a/b/"\n')
    assert colab.repository_url(pyproject) == "https://github.com/a/b"
    pyproject.write_text('[project]\nname = "x"\n')
    with pytest.raises(ValueError, match="Repository"):
        colab.repository_url(pyproject)


def test_a_notebook_on_a_gpu_runs_the_gpu_profile_and_takes_the_command_lines_threads(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNTHLAB_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_profile().name == "gpu" and get_profile("ci").name == "ci"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_profile().name == "ci"
    monkeypatch.setenv("SYNTHLAB_PROFILE", "cpu")
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("SYNTHLAB_THREADS", "3")
        assert use_profile().name == "cpu" and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
