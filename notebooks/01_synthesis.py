# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -papermill,-execution,-ExecuteTime
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Synthetic training data: label maps rendered into many contrasts
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/synthlab/synthlab/blob/main/notebooks/01_synthesis.ipynb)
#
# anatomix and RaSD pretrain networks on images that nobody acquired. Every sample is made in three stages:
#
# 1. **a label map**: random "anatomy", either procedural (RaSD: the argmax of warped random fields) or
#    real organ shapes re-arranged at random (anatomix: a *shape bank*);
# 2. **a shared geometric augmentation** of that label map;
# 3. **several independent renderings** ("views"): each label gets a random intensity, then texture, bias
#    field, blur, low resolution, k-space artefacts, noise and gamma, all drawn per view.
#
# Two views of the same label map share the anatomy voxel for voxel but look like different scanners or
# contrasts: a network that must match them learns features that ignore appearance. This notebook walks
# through each stage with `synthlab.synth`, in 2D and 3D.

# %%
import importlib.util
import subprocess
import sys
from pathlib import Path

if importlib.util.find_spec("synthlab") is None:  # Colab, a bare kernel: install synthlab, its data extra
    wheels = sorted(Path().glob("synthlab-*.whl"))  # a wheel uploaded beside the notebook wins
    source = f"{wheels[-1].resolve()}[data]" if wheels else "synthlab[data] @ git+https://github.com/synthlab/synthlab"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", source], check=True)

# %%
# %matplotlib inline
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from IPython.display import display

import synthlab
from synthlab import viz
from synthlab.data import data_name, find_data_root, load_icbm, save_nifti
from synthlab.noise import pyramid_noise, smooth_noise
from synthlab.profiles import use_profile
from synthlab.synth import (
    AppearanceConfig,
    ProceduralConfig,
    SpatialAugConfig,
    SynthConfig,
    SynthEngine,
)
from synthlab.synth import appearance as fx

# %% tags=["parameters"]
profile = None  # None: $SYNTHLAB_PROFILE, else "gpu" where CUDA is available, else "ci"
seed = 0

# %%
P = use_profile(profile)
SIZE_2D, SIZE_3D = P.example_size.pick(2), P.example_size.pick(3)
print(f"profile {P.name!r}: 2D images {SIZE_2D}^2, 3D volumes {SIZE_3D}^3")

# %%
# NBVAL_IGNORE_OUTPUT
print(f"synthlab {getattr(synthlab, '__version__', 'dev')}, torch {torch.__version__}, "
      f"python {sys.version.split()[0]}")

# %% [markdown]
# ## 1 · Label maps
#
# `viz.show_planes` draws 3D volumes as mid-slices in three planes; `viz.show_row` puts 2D images side by
# side (we pass them as `(H, W)`, since a `(1, H, W)` tensor would read as a thin 3D volume).
#
# ### Procedural anatomy (RaSD)
# `K` smooth random fields, each warped by its own smooth deformation; every voxel takes the label of the
# largest field. The result fills space with irregular blobs, labels `0 .. K-1`. Below: one 3D map shown as
# mid-slices in three planes, then a few 2D maps.

# %%
procedural_3d = SynthEngine(SynthConfig(dim=3, size=SIZE_3D, n_views=1), seed=seed)
labels_3d = procedural_3d.sample_labels(1)
print("3D label map", tuple(labels_3d.shape), "labels", labels_3d.unique().tolist())
viz.show_planes([labels_3d[0]], titles=["procedural"], kinds="labels")
plt.show()

# %%
procedural_2d = SynthEngine(SynthConfig(dim=2, size=SIZE_2D, n_views=1), seed=seed)
maps_2d = procedural_2d.sample_labels(4)
viz.show_row(list(maps_2d.squeeze(1)), titles=[f"{int(m.max()) + 1} labels" for m in maps_2d], kinds="labels")
plt.show()

# %% [markdown]
# ### Real shapes (anatomix shape bank)
# anatomix cuts every organ out of real segmentations, then paints 20-40 of them, each randomly scaled,
# rotated, sheared and flipped, at random places (later shapes cover earlier ones). A deformed-sphere
# foreground mask and an "envelope" shell make some samples look like a body or head.
#
# The shapes come from `totalseg_ct/labels.nii.gz` (41 organs and bones from TotalSegmentator, Apache-2.0)
# when the evaluation data is present, else from a grey/white/CSF map of the ICBM152 template shipped with
# nilearn.

# %%
data_root = find_data_root()
totalseg = data_root / "totalseg_ct" / "labels.nii.gz" if data_root is not None else None
shape_source: Path | None = None
if totalseg is not None and totalseg.exists():
    shape_source = totalseg
    print(f"shape bank from {data_name(shape_source)} (TotalSegmentator test files, Apache-2.0)")
else:
    try:
        scratch = Path(tempfile.mkdtemp(prefix="synthlab_icbm_"))
        shape_source = save_nifti(load_icbm(resolution=2).label, scratch / "icbm_labels.nii.gz")
        print("no totalseg_ct data; shape bank from the ICBM152 tissue labels (written to a temporary file)")
    except ImportError as err:
        print(f"skipping the shape bank: no totalseg_ct data and no ICBM template ({err})")

# %%
if shape_source is not None:
    bank_3d = SynthEngine(SynthConfig(dim=3, size=SIZE_3D, n_views=1, labels=shape_source), seed=seed)
    print(f"{len(bank_3d.bank)} shapes in the 3D bank, e.g. {bank_3d.bank.sources[:3]}")
    bank_labels_3d = bank_3d.sample_labels(1)
    viz.show_planes([bank_labels_3d[0]], titles=["shape bank"], kinds="labels")
    bank_2d = SynthEngine(SynthConfig(dim=2, size=SIZE_2D, n_views=1, labels=shape_source), seed=seed)
    viz.show_row(list(bank_2d.sample_labels(4).squeeze(1)), kinds="labels")
    plt.show()

# %% [markdown]
# ## 2 · Shared geometric augmentation
# Flips, a random affine (and optionally a smooth deformation) move the label map *before* rendering, so
# every view of a sample sees the same moved anatomy. Here the affine is forced on to make the effect visible.
#
# Where a transform pulls in space from outside the original field of view there is no anatomy to copy. In a
# procedural map every id, 0 included, is an ordinary region, so those voxels get a *fresh* label, one above the
# map's largest: the uniform band along the edges of the augmented maps, in a colour of its own. The renderer paints it as one
# more tissue; it is not background. Shape-bank maps, whose 0 really is background, fill with 0 instead
# (`SynthEngine.augment`).

# %%
forced = SpatialAugConfig(affine_p=1.0, deform_p=1.0)
augmenter = SynthEngine(SynthConfig(dim=2, size=SIZE_2D, spatial=forced), seed=seed)
original = augmenter.sample_labels(1)
moved = [augmenter.augment(original) for _ in range(3)]
viz.show_row([original[0, 0]] + [m[0, 0] for m in moved], titles=["original", "aug 1", "aug 2", "aug 3"],
             kinds="labels")
plt.show()

# %% [markdown]
# ## 3 · Appearance, one effect at a time
# The renderer is a chain of pure functions in `synthlab.synth.appearance`. Here each one runs alone, at a
# fixed strength (some stronger than the defaults draw, to make them visible), on the same 2D label map.
# We start from per-label Gaussian intensities (a random mean per label, a small within-label spread).

# %%
gen = torch.Generator().manual_seed(seed)
label_map = maps_2d[:1]                        # (1, 1, H, W)
n_labels = int(label_map.max()) + 1
means = torch.rand(1, n_labels, generator=gen) * 0.9 + 0.1
stds = torch.full((1, n_labels), 0.03)
seeds = torch.tensor([seed])
base = fx.apply_label_intensities(label_map, means, stds, seeds)
size = base.shape[2:]
one = torch.ones(1)

effects = {
    "intensities": base,
    "texture (SD 0.1)": fx.apply_texture(base, pyramid_noise(1, 1, size, (32, 16, 8, 4), gen, 0.1)),
    "bias (log SD 0.4)": fx.apply_bias(base, smooth_noise(1, 1, (4, 4), 4, gen, 0.4)),
    "low res (x0.25, axis 0)": fx.apply_lowres(base, torch.tensor([[0.25, 1.0]])),
    "blur (sigma 1.5)": fx.apply_blur(base, 1.5 * one),
    "Gibbs (alpha 0.6)": fx.apply_gibbs(base, 0.6 * one),
    "spike (0.3)": fx.apply_spike(base, torch.tensor([[5, 7]]), 0.3 * one),
    "ghosting (shift 6)": fx.apply_ghosting(base, torch.tensor([0]), 6 * one, torch.tensor([3])),
    "noise (SD 0.1)": fx.apply_noise(base, 0.1 * one, seeds),
    "gamma 0.5": fx.apply_gamma(fx.normalize_minmax(base), 0.5 * one),
    "gamma 2": fx.apply_gamma(fx.normalize_minmax(base), 2.0 * one),
}
names = list(effects)
for start in range(0, len(names), 4):
    row = names[start:start + 4]
    viz.show_row([fx.normalize_minmax(effects[name])[0, 0] for name in row], titles=row)
plt.show()

# %% [markdown]
# ## 4 · All effects together
# `sample_appearance` draws every parameter above (each effect fires with its own probability, see
# `AppearanceConfig`) and `render` applies the whole chain. Four draws for the same label map:

# %%
params = procedural_2d.sample_appearance(label_map.expand(4, -1, -1, -1))
rendered = fx.render(label_map.expand(4, -1, -1, -1), params)
print("blur sigma", params.blur_sigma.round(decimals=2).tolist(), "| noise SD",
      params.noise_std.round(decimals=3).tolist(), "| gamma", params.gamma.round(decimals=2).tolist())
viz.show_row([label_map[0, 0]] + list(rendered.squeeze(1)),
             titles=["labels"] + [f"render {i + 1}" for i in range(4)], kinds=["labels"] + ["image"] * 4)
plt.show()

# %% [markdown]
# ## 5 · Several views of one label map
# `engine.sample(B)` runs all three stages: `labels (B, 1, *size)` and `views (B, n_views, 1, *size)`. The
# views share the anatomy exactly, which is what the contrastive losses of notebook 02 rely on.

# %%
views_2d = SynthEngine(SynthConfig(dim=2, size=SIZE_2D, n_views=4), seed=seed).sample(1)
viz.show_row([views_2d.labels[0, 0]] + list(views_2d.views[0].squeeze(1)),
             titles=["labels"] + [f"view {i + 1}" for i in range(4)], kinds=["labels"] + ["image"] * 4)
plt.show()

# %%
views_3d = SynthEngine(SynthConfig(dim=3, size=SIZE_3D, n_views=3), seed=seed).sample(1)
print("labels", tuple(views_3d.labels.shape), "views", tuple(views_3d.views.shape))
viz.show_planes([views_3d.labels[0]] + list(views_3d.views[0]),
                titles=["labels", "view 1", "view 2", "view 3"], kinds=["labels", "image", "image", "image"])
plt.show()

# %%
if shape_source is not None:
    bank_config = SynthConfig(dim=3, size=SIZE_3D, n_views=2, labels=shape_source)
    bank_views = SynthEngine(bank_config, seed=seed).sample(1)
    viz.show_planes([bank_views.labels[0]] + list(bank_views.views[0]),
                    titles=["shape bank", "view 1", "view 2"], kinds=["labels", "image", "image"])
    plt.show()

# %% [markdown]
# ## 6 · Turn the knobs
# Fix a few ranges (`lo == hi` fixes a value) and force those effects on, then render three views. The static
# figure below shows the defaults; in a live kernel, the sliders redraw it.


# %%
def knob_views(n_labels: int = 8, bias_std: float = 0.3, noise_std: float = 0.05,
               gamma: float = 1.0) -> plt.Figure:
    """Three 2D views of one procedural map with the number of labels, bias, noise and gamma fixed."""
    config = SynthConfig(
        dim=2, size=SIZE_2D, n_views=3,
        procedural=ProceduralConfig(n_labels=(n_labels, n_labels)),
        spatial=SpatialAugConfig(affine_p=0.0, flip_p=0.0),
        appearance=AppearanceConfig(bias_p=1.0, bias_std=(bias_std, bias_std), noise_p=1.0,
                                    noise_std=(noise_std, noise_std), gamma_p=1.0, gamma=(gamma, gamma)),
    )
    batch = SynthEngine(config, seed=seed).sample(1)
    return viz.show_row([batch.labels[0, 0]] + list(batch.views[0].squeeze(1)),
                        titles=[f"{n_labels} labels", "view 1", "view 2", "view 3"],
                        kinds=["labels", "image", "image", "image"])


knob_views()
plt.show()

# %%
display(viz.slider(knob_views, n_labels=(2, 16, 1, 8), bias_std=(0.0, 1.0, 0.05, 0.3),
                   noise_std=(0.0, 0.3, 0.01, 0.05), gamma=(0.5, 2.0, 0.1, 1.0)))

# %% [markdown]
# **Takeaways.** The label map carries the anatomy; appearance is drawn afresh for every view. Procedural maps
# need no data at all; shape-bank maps borrow realistic organ shapes from any segmentation. Notebook 02
# pretrains a network to give the same features to every view of a label.
