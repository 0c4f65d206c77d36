"""Pictures for the notebooks: mid-slices in three planes, label overlays, checkerboards, grids, widgets.

Static matplotlib figures come first (they render under papermill, nbval and on GitHub); widgets are added on
top for interactive sessions. Every function takes tensors or arrays shaped ``(*size)`` or ``(1, *size)`` in 2D
or 3D and never changes them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

__all__ = [
    "checkerboard",
    "label_cmap",
    "mid_slices",
    "pca_rgb",
    "plot_deformation_grid",
    "plot_fewshot",
    "plot_logs",
    "show_matrices",
    "show_planes",
    "show_row",
    "slider",
]

PLANES = ("axial", "coronal", "sagittal")


def _as_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if torch.is_tensor(x):
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x)
    while x.ndim > 2 and x.shape[0] == 1:  # drop leading batch/channel axes of size 1 ((1, H, W) is 2D)
        x = x[0]
    return x


def label_cmap(n: int = 64, seed: int = 0) -> ListedColormap:
    """A categorical colour map with black for label 0 and well-separated random hues for the rest."""
    rng = np.random.default_rng(seed)
    colours = np.concatenate([[[0, 0, 0]], 0.25 + 0.75 * rng.random((n - 1, 3))])
    return ListedColormap(colours)


def mid_slices(volume: torch.Tensor | np.ndarray, index: Sequence[int] | None = None) -> list[np.ndarray]:
    """The three orthogonal slices through ``index`` (default: the centre) of a 3D volume; a 2D image as is."""
    v = _as_numpy(volume)
    if v.ndim == 2:
        return [v]
    index = [s // 2 for s in v.shape] if index is None else index
    # Axis 2 is axial in RAS-ordered volumes; show each plane with the first in-plane axis vertical.
    return [np.rot90(v[:, :, index[2]]), np.rot90(v[:, index[1], :]), np.rot90(v[index[0], :, :])]


def _draw(ax: plt.Axes, image: np.ndarray, kind: str, vmax: float | None, vmin: float | None = None) -> None:
    if kind == "labels":
        n = max(int(image.max()) + 1, 2)
        ax.imshow(image, cmap=label_cmap(max(n, 64)), vmin=0, vmax=max(n, 64) - 1, interpolation="nearest")
    elif kind == "rgb":
        ax.imshow(np.clip(image, 0, 1))
    else:
        shown = ax.imshow(image, cmap="gray", vmin=0 if kind == "image" else vmin, vmax=vmax,
                          interpolation="nearest")
        if kind == "auto":  # a map in its own units: the colorbar says what grey means
            ax.figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=7)
    ax.set_xticks([])
    ax.set_yticks([])


def show_planes(volumes: Sequence[torch.Tensor | np.ndarray], titles: Sequence[str] | None = None,
                kinds: Sequence[str] | str = "image", overlay: torch.Tensor | np.ndarray | None = None,
                size: float = 2.2, overlay_names: Mapping[int, str] | None = None) -> plt.Figure:
    """One row per volume, one column per plane (three for 3D, one for 2D).

    Args:
        volumes: images, label maps (``kind="labels"``) or RGB volumes ``(*size, 3)`` (``kind="rgb"``).
        titles: row titles.
        kinds: ``"image"`` (grey, [0, 1]), ``"labels"``, ``"rgb"`` or ``"auto"`` (grey, own range); one or per row.
        overlay: optional label map drawn semi-transparently over every row.
        overlay_names: names of the overlay's labels (e.g. from ``dataset.json``) for a legend in its colours.
    """
    kinds = [kinds] * len(volumes) if isinstance(kinds, str) else list(kinds)
    rows = [mid_slices(v) if k != "rgb" else _rgb_slices(v) for v, k in zip(volumes, kinds, strict=True)]
    over = mid_slices(overlay) if overlay is not None else None
    ncols = len(rows[0])
    fig, axes = plt.subplots(len(rows), ncols, figsize=(size * ncols, size * len(rows)), squeeze=False)
    for r, (slices, kind) in enumerate(zip(rows, kinds, strict=True)):
        vmax = 1.0 if kind == "image" else None
        for c, image in enumerate(slices):
            _draw(axes[r, c], image, kind, vmax)
            if over is not None:
                masked = np.ma.masked_where(over[c] == 0, over[c])
                axes[r, c].imshow(masked, cmap=label_cmap(), alpha=0.45, vmin=0, vmax=63, interpolation="nearest")
            if r == 0 and ncols == 3:
                axes[r, c].set_title(PLANES[c], fontsize=9)
        if titles is not None:
            axes[r, 0].set_ylabel(titles[r], fontsize=9)
    if overlay_names:
        colours = label_cmap()
        handles = [Patch(color=colours(int(label)), alpha=0.6, label=name)
                   for label, name in overlay_names.items() if int(label) != 0]
        axes[0, -1].legend(handles=handles, fontsize=7, loc="upper right", framealpha=0.8)
    fig.tight_layout()
    return fig


def show_row(images: Sequence[torch.Tensor | np.ndarray], titles: Sequence[str] | None = None,
             kinds: Sequence[str] | str = "image", size: float = 2.4, shared: bool = False) -> plt.Figure:
    """A row of 2D images (or the axial mid-slice of 3D volumes), e.g. one effect at several strengths.

    Args:
        kinds: per panel, as in :func:`show_planes`; ``"auto"`` panels get a colorbar.
        shared: draw every ``"auto"`` panel on one grey scale (the row's overall range), so that two maps of the
            same quantity, such as the difference before and after registration, compare by eye.
    """
    kinds = [kinds] * len(images) if isinstance(kinds, str) else list(kinds)
    fig, axes = plt.subplots(1, len(images), figsize=(size * len(images), size), squeeze=False)
    planes = [(mid_slices(image) if kind != "rgb" else _rgb_slices(image))[0]
              for image, kind in zip(images, kinds, strict=True)]
    maps = [plane for plane, kind in zip(planes, kinds, strict=True) if kind == "auto"]
    low = high = None
    if shared and maps:
        low, high = float(min(m.min() for m in maps)), float(max(m.max() for m in maps))
    for c, (plane, kind) in enumerate(zip(planes, kinds, strict=True)):
        _draw(axes[0, c], plane, kind, 1.0 if kind == "image" else high, low)
        if titles is not None:
            axes[0, c].set_title(titles[c], fontsize=9)
    fig.tight_layout()
    return fig


def _rgb_slices(volume: torch.Tensor | np.ndarray) -> list[np.ndarray]:
    v = _as_numpy(volume)
    if v.ndim == 3:
        return [v]
    channels = [mid_slices(v[..., k]) for k in range(3)]
    return [np.stack([channels[k][p] for k in range(3)], -1) for p in range(len(channels[0]))]


def checkerboard(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray, tiles: int = 8) -> np.ndarray:
    """Interleave two images of the same shape in a checkerboard, to judge alignment at the tile edges."""
    a, b = _as_numpy(a), _as_numpy(b)
    if a.shape != b.shape:
        raise ValueError(f"checkerboard needs equal shapes, got {a.shape} and {b.shape}")
    idx = np.indices(a.shape)
    cells = sum((i * tiles // s) for i, s in zip(idx, a.shape, strict=True)) % 2
    return np.where(cells == 0, a, b)


def plot_deformation_grid(ax: plt.Axes, displacement: torch.Tensor | np.ndarray, step: int = 4,
                          colour: str = "tab:orange") -> None:
    """Draw a 2D displacement ``(2, H, W)`` (voxels) as a deformed grid: lines of the fixed grid, moved."""
    d = _as_numpy(displacement)
    h, w = d.shape[1:]
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    py, px = yy + d[0], xx + d[1]
    for i in range(0, h, step):
        ax.plot(px[i, :], py[i, :], color=colour, lw=0.7)
    for j in range(0, w, step):
        ax.plot(px[:, j], py[:, j], color=colour, lw=0.7)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def pca_rgb(features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Project per-voxel features ``(C, *size)`` onto their first three principal components, as RGB in [0, 1].

    Voxels that a network considers alike get alike colours, which makes a learned representation visible.
    """
    c = features.shape[0]
    flat = features.reshape(c, -1).T.float()
    fit = flat if mask is None else flat[mask.reshape(-1).bool()]
    mean = fit.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(fit - mean, full_matrices=False)
    proj = (flat - mean) @ v[:3].T
    lo, hi = proj.quantile(0.01, dim=0), proj.quantile(0.99, dim=0)
    rgb = ((proj - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)
    return rgb.T.reshape(3, *features.shape[1:]).movedim(0, -1)


def show_matrices(matrices: dict[str, torch.Tensor | np.ndarray], vmin: float = 0.0, vmax: float = 1.0,
                  label: str = "region") -> plt.Figure:
    """Square matrices side by side on one colour scale (e.g. prototype similarities before/after training).

    A shared scale makes "closer to the identity" visible at a glance; ``label`` names both axes.
    """
    fig, axes = plt.subplots(1, len(matrices), figsize=(3.6 * len(matrices), 3.2), squeeze=False)
    for ax, (title, matrix) in zip(axes[0], matrices.items(), strict=True):
        shown = ax.imshow(_as_numpy(matrix), cmap="magma", vmin=vmin, vmax=vmax)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(label)
        ax.set_ylabel(label)
        fig.colorbar(shown, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def plot_logs(logs: dict[str, Sequence[dict[str, str]]], columns: Sequence[str],
              titles: Sequence[str] | None = None,
              references: dict[str, dict[str, float]] | None = None) -> plt.Figure:
    """Curves of ``log.csv`` columns against the step, one panel per column, one line per run.

    Rows with a blank entry (probes run every N steps) are skipped for that column. ``references`` draws dotted
    horizontal lines per column (e.g. ``{"real_match": {"MIND-SSC": 0.26}}``), so a curve is read against its
    baselines. The step-0 row of a probed log is the untrained network.
    """
    titles = list(titles or columns)
    fig, axes = plt.subplots(1, len(columns), figsize=(4.2 * len(columns), 3.2), squeeze=False)
    for ax, column, title in zip(axes[0], columns, titles, strict=True):
        for name, rows in logs.items():
            points = [(int(r["step"]), float(r[column])) for r in rows if r.get(column) not in (None, "")]
            if points:
                ax.plot(*zip(*points, strict=True), marker="." if len(points) < 40 else None, label=name)
        for (label, value), style in zip((references or {}).get(column, {}).items(), (":", "-.", "--"),
                                         strict=False):
            ax.axhline(value, color="gray", linestyle=style, linewidth=1, label=label)
        ax.set(xlabel="step", title=title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


ARM_COLOURS = {"pretrained": "tab:red", "scratch": "tab:blue", "probe": "tab:grey", "probe_random": "tab:olive",
               "probe_intensity": "tab:brown"}


def _seed_offsets(n: int, width: float = 0.25) -> np.ndarray:
    """Fixed horizontal offsets that spread ``n`` per-seed dots around their column (no random jitter)."""
    return np.linspace(-width, width, n) if n > 1 else np.zeros(1)


def _seed_counts(entries: Sequence[Mapping]) -> str:
    """``"20"`` when every point has 20 seeds, ``"20/10/10"`` when a curve joins studies of different sizes."""
    counts = [str(len(entry["per_seed"])) for entry in entries]
    return counts[0] if len(set(counts)) == 1 else "/".join(counts)


def plot_fewshot(report: Mapping, title: str = "") -> plt.Figure:
    """A few-shot report (:func:`synthlab.eval_seg.evaluate_segmentation`, or any arms side by side) as its seeds
    show it.

    Left: every seed's test Dice as a dot, per arm (one shot count) or against the shot count (several), with the
    mean ± standard error. Right: the paired gain pretrained - scratch of each seed, its mean ± SE and bootstrap
    95 % interval against the zero line, which is what decides a claim; one column per shot count, or per
    network when ``report["gain"]`` is keyed by network (:func:`synthlab.studies.networks_report`). A single
    seed draws no error bar, and dots at zero are runs stuck at all-background, not low scores.
    """
    arms = [arm for arm, entry in report.items() if arm not in ("settings", "gain", "provenance") and entry]
    cycle = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"][4:] * 3)  # other arms: colours not used above
    colours = {arm: ARM_COLOURS.get(arm) or next(cycle) for arm in arms}
    shots = [int(k) for k in report[arms[0]]] if arms else []
    gain = report.get("gain")
    columns = len(gain) if gain else 0  # many gain columns (networks x shot counts) widen their panel
    fig, axes = plt.subplots(1, 2 if gain else 1, figsize=(9.5 + 0.5 * max(0, columns - 4) if gain else 5.5, 3.6),
                             squeeze=False,
                             gridspec_kw={"width_ratios": [1.6, 1 + 0.2 * max(0, columns - 4)]} if gain else None)
    ax = axes[0][0]
    for position, arm in enumerate(arms):
        entries = [report[arm][str(k)] for k in shots]
        xs = np.array(shots, float) + (position - (len(arms) - 1) / 2) * 0.12 if len(shots) > 1 else [position]
        for x, entry in zip(xs, entries, strict=True):
            seeds = entry["per_seed"]
            ax.scatter(x + _seed_offsets(len(seeds), 0.04 if len(shots) > 1 else 0.25), seeds, s=9, alpha=0.45,
                       color=colours[arm], linewidths=0)
        means = [e["mean"] for e in entries]
        errors = [e["sem"] if e.get("sem") is not None else 0.0 for e in entries]
        ax.errorbar(xs, means, yerr=errors, color=colours[arm], marker="o", capsize=4, lw=1.5,
                    linestyle="-" if len(shots) > 1 else "none", label=f"{arm} (n={_seed_counts(entries)})")
    if len(shots) > 1:
        ax.set(xticks=shots, xlabel="labelled training scans (shots)")
    else:
        ax.set_xticks(range(len(arms)), arms, rotation=20, fontsize=8)
        ax.set_xlabel(f"{shots[0]} shot(s)" if shots else "")
    ax.set(ylim=(-0.02, 1), ylabel="test Dice per seed")
    if len(shots) > 1:  # below the axes: inside, the key would hide the low dots of collapsed runs
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    else:
        ax.legend(fontsize=7, loc="best")
    ax.set_title(title or "few-shot Dice", fontsize=9)
    if gain:
        ax = axes[0][1]
        for position, k in enumerate(gain):
            entry = gain[k]
            ax.scatter(position + _seed_offsets(len(entry["per_seed"])), entry["per_seed"], s=12, alpha=0.6,
                       color=ARM_COLOURS["pretrained"], linewidths=0)
            if entry.get("ci95"):
                ax.vlines(position + 0.35, *entry["ci95"], color="black", lw=3, alpha=0.35,
                          label="bootstrap 95 % interval" if position == 0 else None)
            ax.errorbar(position + 0.35, entry["mean"], yerr=entry["sem"] or 0.0, color="black", marker="o",
                        capsize=4, label="mean ± SE" if position == 0 else None)
        ax.axhline(0.0, color="gray", lw=1, linestyle=":")
        ax.set_xticks(range(len(gain)), [f"{k} shot(s)" if k.isdigit() else k for k in gain],
                      rotation=0 if len(gain) < 3 else 20 if len(gain) < 5 else 35, fontsize=8,
                      ha="center" if len(gain) < 5 else "right")
        ax.set(ylabel="pretrained − scratch (Dice, same seed)")
        # The key goes in the title: a legend box would hide the outlying seeds a reader most needs to see.
        ax.set_title("paired gain per seed\nblack: mean ± SE; grey bar: bootstrap 95 % interval", fontsize=8)
    fig.tight_layout()
    return fig


def slider(render: Callable[..., plt.Figure], **ranges: tuple) -> object:
    """Sliders that redraw ``render(**values)`` when one is released; each range is (min, max, step, default).

    Nothing is drawn when the panel is built: the notebook shows the defaults as an ordinary static figure (the
    one GitHub, nbval and papermill keep), and only a moved slider renders into the panel's output area. So a
    notebook run with no front end (papermill, nbval, CI) creates the widgets and never waits on them, and
    heavy renders (3D synthesis) run only when someone asks for them.
    """
    import ipywidgets as widgets

    controls = {}
    for name, (lo, hi, step, value) in ranges.items():
        cls = widgets.IntSlider if all(isinstance(x, int) for x in (lo, hi, step, value)) else widgets.FloatSlider
        controls[name] = cls(min=lo, max=hi, step=step, value=value, description=name, continuous_update=False)
    output = widgets.Output()

    def redraw(_change: object = None) -> None:
        with output:
            output.clear_output(wait=True)
            fig = render(**{name: control.value for name, control in controls.items()})
            plt.show()
            plt.close(fig)

    for control in controls.values():
        control.observe(redraw, names="value")
    return widgets.VBox([widgets.HBox(list(controls.values())), output])
