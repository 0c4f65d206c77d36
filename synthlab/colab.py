"""The notebooks' Colab badges and install cells, generated from the one repository URL in ``pyproject.toml``.

A badge that opens another repository, or an install cell that pip cannot resolve, is the first thing a Colab
user meets; so neither is written by hand. ``[project.urls] Repository`` is the only place the URL lives:

    python -m synthlab.colab --check   # exit 1 naming each notebook whose badge or install cell disagrees
    python -m synthlab.colab --write   # rewrite them in notebooks/*.py (then `make sync` pairs the .ipynb)
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

from .cli import USER_ERRORS, Parser, input_error

__all__ = ["badge", "check", "install_cell", "main", "repository_url", "write"]

_ROOT = Path(__file__).resolve().parents[1]
_BADGE = re.compile(r"^# \[!\[Open In Colab\]\(.*$", re.MULTILINE)
_INSTALL = re.compile(r"^# %%\nimport importlib\.util\n.*?(?=^# %%)", re.MULTILINE | re.DOTALL)


def repository_url(pyproject: Path = _ROOT / "pyproject.toml") -> str:
    """``[project.urls] Repository`` of the checkout, else of the installed package's metadata."""
    if pyproject.is_file():
        found = re.search(r'^Repository\s*=\s*"([^"]+)"', pyproject.read_text(), re.MULTILINE)
        if found is None:
            raise ValueError(f"{pyproject}: [project.urls] has no Repository entry")
        return found.group(1).rstrip("/")
    for entry in metadata.metadata("synthlab").get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if label.strip() == "Repository":
            return url.strip().rstrip("/")
    raise ValueError("synthlab's metadata names no Repository URL")


def badge(notebook: str, url: str) -> str:
    """The markdown line of the badge that opens ``notebooks/<notebook>.ipynb`` of ``url``'s main branch in Colab."""
    path = url.removeprefix("https://github.com/")
    return (f"# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{path}/blob/main/notebooks/{notebook}.ipynb)")


def install_cell(url: str) -> str:
    """The first code cell: install synthlab with its data extra where it is missing (Colab), from a wheel
    uploaded beside the notebook when there is one (README, "On Colab"), else from the repository."""
    return (
        "# %%\n"
        "import importlib.util\n"
        "import subprocess\n"
        "import sys\n"
        "from pathlib import Path\n"
        "\n"
        "if importlib.util.find_spec(\"synthlab\") is None:  # Colab, a bare kernel: install synthlab, its data extra\n"
        "    wheels = sorted(Path().glob(\"synthlab-*.whl\"))  # a wheel uploaded beside the notebook wins\n"
        f"    source = f\"{{wheels[-1].resolve()}}[data]\" if wheels else \"synthlab[data] @ git+{url}\"\n"
        "    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"-q\", source], check=True)\n"
        "\n"
    )


def _expected(text: str, notebook: str, url: str) -> str:
    text = _BADGE.sub(lambda _: badge(notebook, url), text, count=1)
    return _INSTALL.sub(lambda _: install_cell(url), text, count=1)


def _notebooks(folder: Path) -> list[Path]:
    return sorted(folder.glob("[0-9]*.py"))


def check(folder: Path = _ROOT / "notebooks", url: str | None = None) -> list[str]:
    """One line per notebook whose badge or install cell differs from the generated ones (or is missing)."""
    url = url or repository_url()
    problems = []
    for path in _notebooks(folder):
        text = path.read_text()
        if not _BADGE.search(text) or not _INSTALL.search(text):
            problems.append(f"{path}: no Colab badge or no install cell where the generator expects them")
        elif _expected(text, path.stem, url) != text:
            problems.append(f"{path}: badge or install cell differs from {url} (python -m synthlab.colab --write)")
    return problems


def write(folder: Path = _ROOT / "notebooks", url: str | None = None) -> list[Path]:
    """Rewrite every notebook's badge and install cell; returns the notebooks that changed."""
    url = url or repository_url()
    changed = []
    for path in _notebooks(folder):
        text = path.read_text()
        if (updated := _expected(text, path.stem, url)) != text:
            path.write_text(updated)
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m synthlab.colab", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 if a notebook disagrees with pyproject.toml")
    mode.add_argument("--write", action="store_true", help="rewrite the badges and install cells")
    args = parser.parse_args(argv)
    try:
        if args.write:
            for path in write():
                print(f"rewrote {path}; run `make sync` to pair its .ipynb")
            return 0
        problems = check()
    except USER_ERRORS as err:
        return input_error("synthlab colab", err)
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
