"""The synthesis engine: configuration errors, label sources, each appearance effect, determinism, 2D/3D."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from synthlab.synth import (
    AppearanceConfig,
    ProceduralConfig,
    ShapeBank,
    ShapeBankConfig,
    SpatialAugConfig,
    SynthConfig,
    SynthEngine,
    augment_labels,
    procedural_labels,
    sample_appearance,
)
from synthlab.synth import appearance as ap
from synthlab.synth.config import ForegroundConfig
from synthlab.synth.labels import ForegroundDraw, apply_foreground, sample_foreground

DATA = Path(os.environ.get("SYNTHLAB_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SMALL = {2: 32, 3: 16}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def write_map(path: Path, data: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


@pytest.fixture
def label_file(tmp_path: Path) -> Path:
    """A 20^3 map: a 6^3 cube (1), a ball of radius 4 (2), a 2x3x4 box (5); label 3 absent."""
    data = np.zeros((20, 20, 20), np.int16)
    data[2:8, 2:8, 2:8] = 1
    grid = np.stack(np.meshgrid(*[np.arange(20)] * 3, indexing="ij"))
    data[((grid - 13) ** 2).sum(0) <= 16] = 2
    data[15:17, 2:5, 2:6] = 5
    return write_map(tmp_path / "map.nii.gz", data)


# --- configuration -------------------------------------------------------------------------------------


def test_int_size_expands_and_config_round_trips() -> None:
    cfg = SynthConfig(dim=2, size=24)
    assert cfg.size == (24, 24)
    again = SynthConfig.from_dict(dataclasses.asdict(cfg))
    assert again == cfg


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"dim": 4}, "dim"),
    ({"dim": 3, "size": (16, 16)}, "size"),
    ({"n_views": 0}, "n_views"),
    ({"appearance": AppearanceConfig(noise_p=1.5)}, "appearance.noise_p"),
    ({"appearance": AppearanceConfig(gamma=(2.0, 0.5))}, "appearance.gamma"),
    ({"appearance": AppearanceConfig(blur_sigma=(1.0, 0.0))}, "appearance.blur_sigma"),
    ({"spatial": SpatialAugConfig(flip_p=-0.1)}, "spatial.flip_p"),
    ({"spatial": SpatialAugConfig(scale=(1.2, 0.8))}, "spatial.scale"),
    ({"shape_bank": ShapeBankConfig(shear=0.7)}, "shape_bank.shear"),
    ({"procedural": ProceduralConfig(n_labels=(5, 3))}, "procedural.n_labels"),
    ({"shape_bank": ShapeBankConfig(n_shapes=(40, 20))}, "shape_bank.n_shapes"),
    ({"shape_bank": ShapeBankConfig(foreground=ForegroundConfig(p=2.0))}, "shape_bank.foreground.p"),
])
def test_bad_configuration_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        SynthConfig(**kwargs)


def test_validate_catches_later_mutation() -> None:
    cfg = SynthConfig(dim=2, size=16)
    cfg.appearance.bias_p = 3.0
    with pytest.raises(ValueError, match=r"appearance\.bias_p"):
        SynthEngine(cfg)


def test_bad_label_sources_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        SynthConfig(dim=3, size=16, labels=tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty"):
        SynthEngine(SynthConfig(dim=3, size=16, labels=empty))
    folder = tmp_path / "maps"
    folder.mkdir()
    write_map(folder / "good.nii.gz", np.ones((6, 6, 6), np.int16))
    write_map(folder / "soft.nii.gz", np.full((6, 6, 6), 0.5, np.float32))
    with pytest.raises(ValueError, match=r"soft\.nii\.gz"):
        SynthEngine(SynthConfig(dim=3, size=16, labels=folder))
    negative = write_map(tmp_path / "negative.nii.gz", -np.ones((6, 6, 6), np.int16))
    with pytest.raises(ValueError, match="negative"):
        ShapeBank.from_path(negative)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a label map")
    with pytest.raises(ValueError, match=r"notes\.txt"):
        ShapeBank.from_path(notes)


def test_atlas_with_large_label_ids(tmp_path: Path) -> None:
    data = np.zeros((12, 12, 12), np.int32)
    data[1:5, 1:5, 1:5] = 2001
    data[6:11, 6:11, 6:11] = 9170  # AAL-style ids: compacted internally, reported as they are
    bank = ShapeBank.from_path(write_map(tmp_path / "aal.nii.gz", data), dim=3)
    assert bank.sources == ["aal.nii.gz:2001", "aal.nii.gz:9170"]
    assert [int(bank.shape(k).sum()) for k in range(2)] == [64, 125]


# --- label sources --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [2, 3])
def test_procedural_labels_count_and_cover(dim: int) -> None:
    cfg = ProceduralConfig(n_labels=(3, 5))
    labels = procedural_labels(4, (SMALL[dim],) * dim, cfg, gen())
    assert labels.shape == (4, 1, *(SMALL[dim],) * dim) and labels.dtype == torch.int64
    assert int(labels.min()) >= 0 and int(labels.max()) <= 4
    assert all(2 <= sample.unique().numel() <= 5 for sample in labels)  # irregular regions, not one blob


def test_foreground_mask_and_envelope() -> None:
    size = (24, 24, 24)
    labels = torch.randint(0, 3, (2, 1, *size))
    cfg = ForegroundConfig(p=1.0, envelope_p=1.0, envelope_width=(2.0, 2.0), deform_std=(0.0, 0.0),
                           centre_offset=0.0, radius=(0.3, 0.3))
    draw = sample_foreground(2, size, cfg, gen())
    out = apply_foreground(labels, draw)
    centre, corner = (slice(None), 0, 12, 12, 12), (slice(None), 0, 0, 0, 0)
    assert torch.equal(out[centre], labels[centre] + 1)  # inside: shifted by one
    assert bool((out[corner] == 0).all())  # outside the sphere of radius 7.2
    shell = draw.distance.abs() < 2.0
    assert bool((out[shell] == 4).all())  # envelope = a fresh label above the shifted ones
    off = ForegroundDraw(draw.distance, torch.zeros(2, dtype=torch.bool), draw.envelope_width)
    assert torch.equal(apply_foreground(labels, off), labels)


def test_shape_bank_reads_every_label(label_file: Path) -> None:
    bank = ShapeBank.from_path(label_file, dim=3, max_side=64)
    assert sorted(s.split(":")[1] for s in bank.sources) == ["1", "2", "5"]
    cube = bank.shape(bank.sources.index("map.nii.gz:1"))
    assert cube.shape == (8, 8, 8) and int(cube.sum()) == 216  # 6^3 plus the one-voxel empty border
    assert not bool(cube[0].any())
    small = ShapeBank.from_path(label_file, dim=3, max_side=3)  # shapes shrink to fit max_side
    assert max(max(e) for e in small.extents) <= 3 + 2
    flat = ShapeBank.from_path(label_file, dim=2, min_voxels=1)
    assert len(flat) == 3 * 3 and all(len(e) == 2 for e in flat.extents)  # largest slice per axis
    assert len(ShapeBank.from_path(label_file, dim=2, min_voxels=8)) == 8  # label 5's 2x3 slice is too small


def test_shape_bank_paints_in_order_and_keeps_the_first_shape(label_file: Path) -> None:
    bank = ShapeBank.from_path(label_file, dim=3, max_side=64)
    still = ShapeBankConfig(n_shapes=(1, 1), scale=(1.0, 1.0), rotation=0.0, shear=0.0, flip_p=0.0,
                            spread=0.0)
    one = bank.sample(8, (24, 24, 24), still, gen())
    assert bool((one.flatten(1).amax(1) == 1).all())  # the only shape is label 1, never lost
    # An untransformed, centred shape is copied voxel for voxel.
    counts = sorted(int(bank.shape(k).sum()) for k in range(len(bank)))
    assert all(int((m == 1).sum()) in counts for m in one)
    three = bank.sample(4, (24, 24, 24), dataclasses.replace(still, n_shapes=(3, 3)), gen(1))
    assert set(three.unique().tolist()) <= {0, 1, 2, 3}
    assert bool((three.flatten(1).amax(1) == 3).all())  # painted last, hence always visible


@pytest.mark.parametrize("dim", [2, 3])
def test_spatial_augmentation_flips_and_identity(dim: int) -> None:
    labels = torch.randint(0, 7, (2, 1, *(SMALL[dim],) * dim))
    flip_all = SpatialAugConfig(flip_p=1.0, affine_p=0.0)
    assert torch.equal(augment_labels(labels, flip_all, gen()), labels.flip(list(range(2, 2 + dim))))
    still = SpatialAugConfig(flip_p=0.0, affine_p=1.0, scale=(1.0, 1.0), rotation=0.0)
    assert torch.equal(augment_labels(labels, still, gen()), labels)
    zoom_out = SpatialAugConfig(flip_p=0.0, affine_p=1.0, scale=(0.5, 0.5), rotation=0.0)
    shrunk = augment_labels(labels, zoom_out, gen())
    assert bool((shrunk[(..., 0)] == 0).all())  # content shrinks; the rim is filled with background
    fresh = augment_labels(labels, zoom_out, gen(), fill="fresh")
    top = labels.flatten(1).amax(1)
    for b in range(2):  # space-filling maps: the rim gets one new label above the map's own
        assert bool((fresh[b, 0, 0] == top[b] + 1).all())  # the first slab along axis 0
        assert int(fresh[b].max()) == int(top[b]) + 1


# --- appearance effects -----------------------------------------------------------------------------


def test_label_intensities_are_a_lookup() -> None:
    labels = torch.randint(0, 4, (2, 1, 8, 8))
    means = torch.rand(4, 4)  # 2 maps x 2 views
    flat = ap.apply_label_intensities(labels, means, torch.zeros(4, 4))
    for row in range(4):
        assert torch.equal(flat[row, 0], means[row][labels[row // 2, 0]])
    spread = ap.apply_label_intensities(torch.zeros(1, 1, 64, 64, dtype=torch.long), torch.full((1, 1), 0.5),
                                        torch.full((1, 1), 0.1), seeds=torch.tensor([3]))
    assert spread.std().item() == pytest.approx(0.1, rel=0.05)
    assert spread.mean().item() == pytest.approx(0.5, abs=0.01)


def test_noise_level_within_its_range() -> None:
    image = torch.ones(3, 1, 64, 64)
    std = torch.tensor([0.0, 0.05, 0.2])
    noisy = ap.apply_noise(image, std, seeds=torch.tensor([1, 2, 3]))
    assert torch.equal(noisy[0], image[0])
    for row in (1, 2):
        assert (noisy[row] - image[row]).std().item() == pytest.approx(std[row].item(), rel=0.05)
    cfg = AppearanceConfig(noise_p=1.0, noise_std=(0.02, 0.04))
    drawn = sample_appearance(cfg, torch.zeros(50, 1, 4, 4, dtype=torch.long), gen()).noise_std
    assert bool(((drawn >= 0.02) & (drawn <= 0.04)).all())
    maps = torch.zeros(50, 1, 4, 4, dtype=torch.long)
    never = sample_appearance(dataclasses.replace(cfg, noise_p=0.0), maps, gen()).noise_std
    assert bool((never == 0).all())


def test_bias_is_positive_and_smooth() -> None:
    cfg = AppearanceConfig(bias_p=1.0, bias_std=(0.5, 0.5))
    params = sample_appearance(cfg, torch.zeros(4, 1, 32, 32, 32, dtype=torch.long), gen())
    log_gain = ap.apply_bias(torch.ones(4, 1, 32, 32, 32), params.log_bias).log()  # finite: gain > 0
    assert bool(torch.isfinite(log_gain).all())
    assert log_gain.std().item() > 0.1  # it does vary...
    span = (log_gain.flatten(1).amax(1) - log_gain.flatten(1).amin(1)).view(4, 1, 1, 1, 1)
    for axis in (2, 3, 4):  # ...but slowly: a 4-point grid over 32 voxels, ~10 voxels per step
        assert bool((log_gain.diff(dim=axis).abs() <= 0.25 * span).all())


def test_texture_gain_averages_one() -> None:
    cfg = AppearanceConfig(texture_p=1.0, texture_std=(0.1, 0.1))
    params = sample_appearance(cfg, torch.zeros(8, 1, 32, 32, dtype=torch.long), gen())
    textured = ap.apply_texture(torch.ones(8, 1, 32, 32), params.texture)
    assert textured.mean().item() == pytest.approx(1.0, abs=0.05) and textured.std().item() > 0.02


def test_gamma_is_monotone_and_fixes_the_ends() -> None:
    ramp = torch.linspace(0, 1, 101).view(1, 1, 101).expand(3, 1, 101).unsqueeze(-1)
    out = ap.apply_gamma(ramp, torch.tensor([0.5, 1.0, 2.0]))
    assert bool((out.diff(dim=2) >= 0).all())
    assert torch.equal(out[:, :, 0], ramp[:, :, 0]) and torch.equal(out[:, :, -1], ramp[:, :, -1])
    assert out[2, 0, 50, 0].item() == pytest.approx(0.25) and torch.equal(out[1], ramp[1])


def test_blur_keeps_mean_and_has_the_delta_variance() -> None:
    delta = torch.zeros(2, 1, 64, 64)
    delta[:, :, 32, 32] = 1.0
    blurred = ap.apply_blur(delta, torch.tensor([0.0, 1.5]))
    assert torch.equal(blurred[0], delta[0])
    assert blurred[1].sum().item() == pytest.approx(1.0, abs=1e-5)
    offsets = torch.arange(64.0) - 32
    assert (blurred[1, 0].sum(1) * offsets**2).sum().item() == pytest.approx(2.25, rel=0.01)


def test_lowres_averages_along_the_chosen_axis_only() -> None:
    stripes = (torch.arange(32) % 2).float()
    across = stripes.view(1, 1, 32, 1).expand(1, 1, 32, 32).contiguous()  # varies along axis 0
    along = across.transpose(2, 3).contiguous()  # varies along axis 1
    zoom = torch.tensor([[0.5, 1.0]])
    assert torch.allclose(ap.apply_lowres(across, zoom), torch.full_like(across, 0.5), atol=1e-5)
    assert torch.allclose(ap.apply_lowres(along, zoom), along, atol=1e-5)


def test_gibbs_rings_at_edges_and_keeps_the_mean() -> None:
    step = torch.zeros(2, 1, 64, 64)
    step[:, :, :, 16:48] = 1.0
    out = ap.apply_gibbs(step, torch.tensor([0.0, 0.6]))
    assert torch.equal(out[0], step[0])
    assert out[1].max().item() > 1.03 and out[1].min().item() < -0.03  # over- and undershoot
    assert out[1].mean().item() == pytest.approx(0.5, abs=1e-4)


def test_spike_adds_a_stripe_pattern() -> None:
    image = torch.ones(1, 1, 32, 32)
    out = ap.apply_spike(image, torch.tensor([[4, 3]]), torch.tensor([0.2]))
    # A spike at (4, 3) is the plane wave 0.4 cos(2 pi (4 x + 3 y) / 32): amplitude 2 * 0.2 * mean.
    x, y = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    wave = 0.4 * torch.cos(2 * torch.pi * (4 * x + 3 * y) / 32)
    assert torch.allclose(out[0, 0] - 1.0, wave, atol=1e-5)
    cfg = AppearanceConfig(spike_p=1.0)
    index = sample_appearance(cfg, torch.zeros(64, 1, 8, 8, dtype=torch.long), gen()).spike_index
    assert bool(((index[:, 1] >= 1) & (index[:, 1] <= 3)).all())  # drawn off the self-conjugate planes


def test_ghosting_copies_along_its_axis_only() -> None:
    square = torch.zeros(1, 1, 64, 64)
    square[:, :, 24:40, 24:40] = 1.0
    same = ap.apply_ghosting(square, torch.tensor([0]), torch.tensor([0.0]), torch.tensor([2]))
    assert torch.equal(same, square)
    ghost = ap.apply_ghosting(square, torch.tensor([0]), torch.tensor([6.0]), torch.tensor([2]))
    assert ghost[0, 0, :, :24].abs().max().item() < 1e-5  # columns outside the object stay empty
    assert ghost[0, 0, :16, 24:40].abs().max().item() > 0.05  # a copy half a field of view away
    assert ghost.sum().item() == pytest.approx(square.sum().item(), rel=1e-4)


def test_normalize_minmax_maps_to_unit_range() -> None:
    x = torch.randn(3, 1, 10, 10) * 5
    out = ap.normalize_minmax(x)
    assert torch.allclose(out.flatten(1).amin(1), torch.zeros(3)) and torch.allclose(
        out.flatten(1).amax(1), torch.ones(3))
    assert bool((ap.normalize_minmax(torch.ones(1, 1, 4, 4)) == 0).all())


# --- the engine -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [2, 3])
def test_engine_shapes_ranges_and_shared_labels(dim: int) -> None:
    size = (SMALL[dim],) * dim
    engine = SynthEngine(SynthConfig(dim=dim, size=size, n_views=3), seed=0)
    batch = engine.sample(2)
    assert batch.labels.shape == (2, 1, *size) and batch.labels.dtype == torch.int64
    assert batch.views.shape == (2, 3, 1, *size) and batch.views.dtype == torch.float32
    assert bool(torch.isfinite(batch.views).all())
    assert float(batch.views.min()) >= 0.0 and float(batch.views.max()) <= 1.0
    assert not torch.equal(batch.views[:, 0], batch.views[:, 1])  # each view draws its own appearance


def test_views_are_renderings_of_the_shared_labels() -> None:
    plain = AppearanceConfig(std=(0.0, 0.0), texture_p=0.0, bias_p=0.0, blur_p=0.0, lowres_p=0.0, gibbs_p=0.0,
                             spike_p=0.0, ghost_p=0.0, noise_p=0.0, background_zero_p=0.0)
    engine = SynthEngine(SynthConfig(dim=2, size=24, n_views=2, appearance=plain), seed=3)
    batch = engine.sample(2)
    for b in range(2):
        for v in range(2):
            view, labels = batch.views[b, v, 0], batch.labels[b, 0]
            for label in labels.unique():
                region = view[labels == label]
                assert float(region.max() - region.min()) < 1e-6  # piecewise constant on the shared map


def test_same_seed_is_bit_identical_and_seeds_differ(label_file: Path) -> None:
    for source in ("procedural", label_file):
        cfg = SynthConfig(dim=3, size=16, labels=source)
        a, b = SynthEngine(cfg, seed=7).sample(2), SynthEngine(cfg, seed=7).sample(2)
        assert torch.equal(a.labels, b.labels) and torch.equal(a.views, b.views)
        c = SynthEngine(cfg, seed=8).sample(2)
        assert not torch.equal(a.views, c.views)


def test_stages_compose_and_render_is_a_deterministic_twin() -> None:
    engine = SynthEngine(SynthConfig(dim=2, size=24, n_views=2), seed=1)
    labels = engine.augment(engine.sample_labels(2))
    params = engine.sample_appearance(labels)
    first, second = engine.render(labels, params), engine.render(labels, params)
    assert first.shape == (2, 2, 1, 24, 24) and torch.equal(first, second)
    one = ap.render(labels[1:], params.select(slice(2, 4)))  # the second map's two views on their own
    assert torch.equal(one, first[1])
    state = engine.state_dict()
    x = engine.sample(1)
    engine.load_state_dict(state)
    assert torch.equal(engine.sample(1).views, x.views)
    with pytest.raises(ValueError, match="batch_size"):
        engine.sample_labels(0)


def test_shape_bank_engine_2d_and_3d(label_file: Path) -> None:
    for dim in (2, 3):
        cfg = SynthConfig(dim=dim, size=SMALL[dim], labels=label_file,
                          shape_bank=ShapeBankConfig(n_shapes=(4, 6)))
        batch = SynthEngine(cfg, seed=0).sample(2)
        assert batch.views.shape == (2, 2, 1, *(SMALL[dim],) * dim)
        assert int(batch.labels.max()) <= 6 + 2  # shapes, plus foreground shift and envelope


@pytest.mark.skipif(not (DATA / "totalseg_ct" / "labels.nii.gz").exists(), reason="shared data not available")
def test_real_totalsegmentator_map_feeds_the_bank() -> None:
    cfg = SynthConfig(dim=3, size=64, labels=DATA / "totalseg_ct" / "labels.nii.gz")
    engine = SynthEngine(cfg, seed=0)
    assert len(engine.bank) >= 30  # 41 organ and bone labels, a few too thin to survive
    assert int(engine.sample(1).labels.max()) >= 5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_rendering_agrees_with_cpu() -> None:
    quiet = AppearanceConfig(std=(0.0, 0.0), noise_p=0.0)  # per-voxel draws differ between devices
    labels = SynthEngine(SynthConfig(dim=3, size=24), seed=0).sample_labels(2)
    params = sample_appearance(quiet, labels, gen(), n_views=2)
    cpu, gpu = ap.render(labels, params), ap.render(labels.cuda(), params.to("cuda"))
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-4)
    batch = SynthEngine(SynthConfig(dim=3, size=24), device="cuda", seed=0).sample(2)
    assert batch.views.is_cuda and float(batch.views.max()) <= 1.0
