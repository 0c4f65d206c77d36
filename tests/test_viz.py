"""Pictures: slice extraction, checkerboards and PCA colours are exact; figures have the expected panels."""

from __future__ import annotations

import matplotlib

matplotlib.use("agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from synthlab.viz import (  # noqa: E402
    checkerboard,
    mid_slices,
    pca_rgb,
    plot_deformation_grid,
    plot_logs,
    show_matrices,
    show_planes,
    show_row,
    slider,
)


def test_mid_slices_three_planes_through_centre() -> None:
    vol = torch.zeros(5, 7, 9)
    vol[2, 3, 4] = 1.0
    slices = mid_slices(vol)
    assert len(slices) == 3
    assert all(s.max() == 1.0 for s in slices)  # each plane passes through the centre voxel
    assert len(mid_slices(torch.zeros(1, 6, 8))) == 1  # (1, H, W) is a 2D image with a channel axis


def test_checkerboard_alternates_and_checks_shapes() -> None:
    a, b = np.zeros((8, 8)), np.ones((8, 8))
    board = checkerboard(a, b, tiles=2)
    assert board[0, 0] == 0 and board[0, 7] == 1 and board[7, 7] == 0
    assert board.mean() == 0.5
    with pytest.raises(ValueError, match="equal shapes"):
        checkerboard(np.zeros((4, 4)), np.zeros((4, 5)))


def test_pca_rgb_separates_two_feature_clusters() -> None:
    feats = torch.zeros(4, 6, 6)
    feats[0, :3] = 1.0  # top half differs from bottom half along one channel
    rgb = pca_rgb(feats)
    assert rgb.shape == (6, 6, 3)
    assert 0.0 <= float(rgb.min()) and float(rgb.max()) <= 1.0
    assert not torch.allclose(rgb[0, 0], rgb[5, 0])
    assert torch.allclose(rgb[0, 0], rgb[2, 5])


def test_figures_have_one_panel_per_plane_and_row() -> None:
    fig = show_planes([torch.rand(8, 8, 8), torch.randint(0, 3, (8, 8, 8))], titles=["image", "labels"],
                      kinds=["image", "labels"])
    assert len(fig.axes) == 6
    plt.close(fig)
    fig = show_row([torch.rand(8, 8)] * 4)
    assert len(fig.axes) == 4
    plt.close(fig)
    fig, ax = plt.subplots()
    plot_deformation_grid(ax, torch.zeros(2, 9, 9), step=4)
    assert len(ax.lines) == 6  # 3 horizontal + 3 vertical grid lines
    plt.close(fig)


def test_show_matrices_draws_each_matrix_on_one_shared_scale() -> None:
    fig = show_matrices({"a": torch.eye(3), "b": torch.full((3, 3), 0.5)})
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 2  # one panel per matrix (the other axes are their colour bars)
    assert all(image.get_clim() == (0.0, 1.0) for image in images)
    assert images[0].get_array().tolist() == torch.eye(3).tolist()
    plt.close(fig)


def test_plot_logs_skips_blank_probe_rows_and_draws_references_on_their_column():
    rows = [{"step": "0", "loss": "", "real_match": "0.5"}, {"step": "1", "loss": "2.0", "real_match": ""},
            {"step": "2", "loss": "1.5", "real_match": "0.6"}]
    fig = plot_logs({"run": rows}, ["loss", "real_match"], references={"real_match": {"MIND": 0.3}})
    loss_ax, match_ax = fig.axes
    assert list(loss_ax.lines[0].get_xdata()) == [1, 2]
    assert list(match_ax.lines[0].get_ydata()) == [0.5, 0.6]
    assert len(loss_ax.lines) == 1 and len(match_ax.lines) == 2  # the reference line on its own panel only
    plt.close(fig)


def test_shared_rows_put_every_map_on_one_scale_with_colorbars_and_overlays_get_a_legend() -> None:
    before, after = torch.rand(8, 8) * 0.9, torch.rand(8, 8) * 0.1
    fig = show_row([torch.rand(8, 8), before, after], kinds=["image", "auto", "auto"], shared=True)
    images = [ax.images[0] for ax in fig.axes[:3]]
    assert len(fig.axes) == 5  # three panels and a colorbar for each map
    assert images[1].get_clim() == images[2].get_clim() == (float(min(before.min(), after.min())),
                                                            float(before.max()))
    assert images[0].get_clim() == (0.0, 1.0)
    plt.close(fig)
    fig = show_row([before, after], kinds="auto")  # unshared: each map keeps its own range
    assert fig.axes[0].images[0].get_clim() != fig.axes[1].images[0].get_clim()
    plt.close(fig)
    labels = torch.zeros(8, 8, 8, dtype=torch.long)
    labels[2:4] = 1
    fig = show_planes([torch.rand(8, 8, 8)], overlay=labels, overlay_names={0: "background", 1: "anterior"})
    legend = fig.axes[2].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["anterior"]
    plt.close(fig)


def test_a_slider_panel_draws_nothing_until_a_slider_moves() -> None:
    calls: list[dict[str, float]] = []

    def render(**values: float) -> plt.Figure:
        calls.append(values)
        return plt.figure()

    panel = slider(render, strength=(0.0, 1.0, 0.1, 0.5), count=(1, 9, 1, 3))
    assert calls == []  # no render without a front end asking for one: papermill and nbval never wait on it
    sliders = panel.children[0].children
    sliders[1].value = 7
    assert calls == [{"strength": 0.5, "count": 7}]
