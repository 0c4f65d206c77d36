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
# # 02 · Pretraining: four ways to learn features without real labels
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/synthlab/synthlab/blob/main/notebooks/02_pretraining.ipynb)
#
# A UNet maps every voxel of an image to a feature vector. Three published objectives teach it features with
# no human annotation:
#
# * **supcon** (anatomix): two renderings of one synthetic label map go through the network; voxels with
#   the same label are pulled together *across views*, all others pushed apart;
# * **voco** (VoCo): cut the image into a grid of base crops plus a random crop; the network must tell where
#   the random crop lies from how similar its embedding is to each base crop;
# * **rasd** (RaSD): every region of a synthetic label map gets a *prototype* (its mean feature); prototypes
#   must differ from each other and every voxel must be closest to its own region's prototype.
#
# and synthlab adds a fourth, its own (not from the papers):
#
# * **voxnce**: the two renderings share one grid, so voxel *x* of view 1 and voxel *x* of view 2 are the same
#   anatomy; the network must pick that one voxel out of hundreds of others, nearby ones included.
#
# We first draw each idea, then train one objective with `synthlab.train.pretrain`, read the curves of the
# weights synthlab ships (a run that learns), and look at what the network learned.

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
import tempfile

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display
from matplotlib.patches import Rectangle

import synthlab
from synthlab import shipped, viz
from synthlab.checkpoint import load_pretrained, random_backbone
from synthlab.correspondence import CorrespondenceConfig, TrainingProbe, evaluate_features
from synthlab.data import find_data_root, load_icbm
from synthlab.features import extract_features, normalize_features, prototype_similarity, view_agreement
from synthlab.io import read_csv_log
from synthlab.losses.supcon import sample_voxels
from synthlab.losses.voco import grid_boxes, overlap_fractions, random_boxes
from synthlab.nets import unet_config
from synthlab.profiles import use_profile
from synthlab.spatial import identity_grid, resize
from synthlab.studies.render import render_training_table
from synthlab.synth import SynthConfig, SynthEngine
from synthlab.train import TrainConfig, pretrain

# %% tags=["parameters"]
profile = None  # None: $SYNTHLAB_PROFILE, else "gpu" where CUDA is available, else "ci"
objective = "supcon"  # "supcon", "voco", "rasd" or "voxnce"
dim = 2  # 2 or 3
seed = 0

# %%
P = use_profile(profile)
SIZE, STEPS, BATCH = (P.setting(TrainConfig, name, dim) for name in ("size", "steps", "batch_size"))
PRESET = P.preset(dim)
SHIPPED = f"synthlab-{objective}-{dim}d"  # the weights synthlab ships for this objective (section 6)
print(f"profile {P.name!r}: {objective} in {dim}D, crops {SIZE}^{dim}, preset {PRESET!r}, "
      f"{STEPS} steps of batch {BATCH}")

# %%
# NBVAL_IGNORE_OUTPUT
print(f"synthlab {getattr(synthlab, '__version__', 'dev')}, torch {torch.__version__}, python {sys.version.split()[0]}")

# %% [markdown]
# ## 1 · The training data: one label map, two views
#
# The synthetic engine (notebook 01) draws a label map and renders it twice with independent appearance.
# The idea pictures below use a 2D image (in 3D, the central axial slice).

# %%
engine = SynthEngine(SynthConfig(dim=dim, size=SIZE, n_views=2), seed=seed)
batch = engine.sample(1)
labels, views = batch.labels[0], batch.views[0]  # (1, *size) and (2, 1, *size)
fig = viz.show_row([labels[0], views[0, 0], views[1, 0]], ["label map", "view 1", "view 2"],
                   kinds=["labels", "image", "image"])
plt.show()

# %%
# The idea pictures work on 2D images: the central axial slice of a 3D sample.
slice_2d = (Ellipsis, SIZE // 2) if dim == 3 else (Ellipsis,)
labels_2d, views_2d = labels[slice_2d], views[slice_2d]  # (1, H, W) and (2, 1, H, W)
generator = torch.Generator().manual_seed(seed)

# %% [markdown]
# ## 2 · supcon: the same voxels in both views
#
# `sample_voxels` picks the same voxel locations in every view and returns their features and labels. Handing
# it the voxel *coordinates* as the "features" shows where it sampled. In training, each dot is a feature
# vector; dots of one colour (one label, either view) are positives of each other, all others negatives.

# %%
coords = identity_grid(labels_2d.shape[1:]).expand(1, 2, -1, -1, -1)  # (B=1, V=2, 2, H, W)
picked, picked_labels = sample_voxels(coords, labels_2d[None], 48, generator)  # (1, 2, n, 2), (1, n)
fig, axes = plt.subplots(1, 2, figsize=(7, 3.5))
for v, ax in enumerate(axes):
    ax.imshow(views_2d[v, 0], cmap="gray", vmin=0, vmax=1)
    ax.scatter(picked[0, v, :, 1], picked[0, v, :, 0], c=picked_labels[0], cmap=viz.label_cmap(),
               vmin=0, vmax=63, s=22, edgecolors="white", linewidths=0.6)
    ax.set_title(f"view {v + 1}: {picked.shape[2]} sampled voxels", fontsize=9)
    ax.set_axis_off()
plt.show()

# %% [markdown]
# ## 3 · voco: where does the random crop lie?
#
# The image is tiled by a 3 x 3 grid of base crops (white). A random crop of the same size (orange) overlaps
# a few of them; the fraction of its area inside each base crop is its *position label*. The network is
# trained so that the similarity between the random crop's embedding and each base crop's embedding equals
# that fraction.

# %%
grid = (3, 3)
size_2d = tuple(labels_2d.shape[1:])
base = grid_boxes(size_2d, grid)  # (9, 2, 2) [start, stop) per axis
crop = random_boxes(size_2d, grid, 1, generator)  # (1, 2, 2)
positions = overlap_fractions(crop, base).view(grid)

fig, (ax_image, ax_labels) = plt.subplots(1, 2, figsize=(7, 3.5))
ax_image.imshow(views_2d[0, 0], cmap="gray", vmin=0, vmax=1)
for box, colour, width in [*((b, "white", 0.8) for b in base), (crop[0], "tab:orange", 2.0)]:
    (row0, row1), (col0, col1) = box.tolist()
    ax_image.add_patch(Rectangle((col0 - 0.5, row0 - 0.5), col1 - col0, row1 - row0, fill=False,
                                 edgecolor=colour, linewidth=width))
ax_image.set_title("base grid and a random crop", fontsize=9)
ax_image.set_axis_off()
ax_labels.imshow(positions, cmap="magma", vmin=0, vmax=1)
for (r, c), value in zip(torch.cartesian_prod(torch.arange(3), torch.arange(3)).tolist(),
                         positions.flatten().tolist(), strict=True):
    ax_labels.text(c, r, f"{value:.2f}", ha="center", va="center", color="white" if value < 0.5 else "black")
ax_labels.set_title("position labels (sum to 1)", fontsize=9)
ax_labels.set_axis_off()
plt.show()

# %% [markdown]
# ## 4 · rasd: one prototype per region
#
# `prototypes` averages the network's output features over each label region. RaSD's loss makes the
# prototypes of different regions dissimilar and pulls every voxel towards its own prototype. Its "push"
# term is a softmax over prototype dot products, ``softmax_k(p_j . p_k / t)``: row ``j`` says which prototype
# region ``j`` resembles most. A perfect network gives the identity. Below, the prototypes of view 1 under an
# *untrained* network (the initialisation the training run starts from): regions are barely told apart.

# %%
untrained_net = random_backbone(unet_config(PRESET, dim), seed).eval()  # the network `pretrain` starts from
before = prototype_similarity(untrained_net, views[0], labels)
viz.show_matrices({"softmax(p_j . p_k / t), untrained": before})
plt.show()

# %% [markdown]
# ## 5 · Train
#
# `pretrain` runs the whole loop: synthetic batches, the chosen objective, AdamW with warm-up and cosine
# decay, a CSV log and a self-describing checkpoint. A *probe* rides along: every few steps it measures, on a
# fixed synthetic pair, whether the network finds the same voxel in both views (`synth_match`) and whether
# its features collapsed (`synth_pair_cosine` near 1). A loss curve alone cannot say whether anything useful
# was learned. The `ci` profile trains the tiny network for a few dozen steps (about half a minute on one CPU
# thread): this run shows the loop, not a result. The `cpu` and `gpu` profiles train longer and larger.

# %%
# NBVAL_IGNORE_OUTPUT
run_dir = tempfile.mkdtemp(prefix=f"synthlab_{objective}{dim}d_")
config = P.configure(TrainConfig, dim, objective=objective, out=run_dir, seed=seed, device="auto",
                     probe_every=max(1, STEPS // 3))  # the profile's size, steps, batch and preset
result = pretrain(config, probe=TrainingProbe.for_run(config))
print(f"{result['steps']} steps in {result['seconds']:.1f} s on {result['device']}, "
      f"final loss {result['final_loss']:.3f}\ncheckpoint: {result['checkpoint']}")

# %%
rows = read_csv_log(result["log"])
fig = viz.plot_logs({f"this run ({objective})": rows}, ["loss", "synth_match", "synth_pair_cosine"],
                    ["training loss", "same voxel found across views", "cosine of random voxel pairs"])
plt.show()

# %% [markdown]
# ## 5b · A run that learns: the weights synthlab ships
#
# `make weights` trains every shipped network from a committed recipe (`synthlab/weights/*.json`, a few
# minutes of one CPU thread each) and keeps its log; the two `voxnce` networks ship from the recipes' `gpu`
# profile (`make gpu-weights`: minutes on one GPU), which measured better. The recipe was found by the experiments in
# `docs/experiments.md`. Here are those logs: the loss on the left, and the probes that say whether the
# features transfer. `real_match` asks the question on *real* MRI: for voxels of a patient's T1, is the most
# similar feature in the same patient's FLAIR at the same place (within one voxel, among 169 candidates;
# chance 0.05)? Step 0 is the untrained network; MIND-SSC, a hand-made descriptor built for exactly this, is
# the dotted line. Only a curve that rises above its own step 0 has learned something that transfers.

# %%
# NBVAL_IGNORE_OUTPUT
logs = {}
for name in ("supcon", "voco", "rasd", "voxnce"):
    try:
        logs[name] = shipped.read_log(f"synthlab-{name}-{dim}d")
    except FileNotFoundError as err:
        print(err)
data_root = find_data_root()
references = {}
if data_root is not None and (data_root / "brain_tumor_mri" / "study1").is_dir():
    baseline = evaluate_features("brain_tumor_mri/study1", "T1prereg", "FLAIRreg", None,
                                 CorrespondenceConfig.for_dim(dim, queries=500))  # as the shipped logs were probed
    references["real_match"] = {"MIND-SSC": baseline["methods"]["mind"]["match_rate"]}
if logs:
    fig = viz.plot_logs(logs, ["loss", "synth_match", "real_match"],
                        ["loss (each objective its own scale)", "synthetic: same voxel across views",
                         "real: T1 voxel found in FLAIR"], references)
    plt.show()

# %% [markdown]
# A falling loss does not say the network learned what its paper trains it for. Each objective therefore logs
# its *own* task on a fixed synthetic batch: `supcon` whether voxels of one label look alike across two
# renderings and unlike other labels, `voco` whether it can tell where a crop came from (against always
# guessing the most common cell), `rasd` whether regions separate in feature space, `voxnce` whether it finds
# the same voxel across renderings. The table reads the first and last probed rows of each shipped log (the
# README renders the same table); set it beside the real-image column: learning one's own task and transferring
# to real contrasts are different things.

# %%
names = [f"synthlab-{name}-{dim}d" for name in logs]
display(Markdown(render_training_table(names)) if names else "no shipped logs found")

# %% [markdown]
# ## 6 · What did the network learn?
#
# From here on we look at the shipped network of the chosen objective (`SHIPPED`), which trained for
# minutes rather than the seconds of the run above; `load_pretrained` rebuilds either from its file alone
# (`load_pretrained(result["checkpoint"])` for the run above). Projecting each voxel's
# features on their first three principal components and showing them as RGB makes the representation
# visible: voxels the network considers alike get alike colours. We look at a fresh synthetic image and at a
# real brain (the ICBM152 T1 template shipped with nilearn) resized to the training size.

# %%
trained = load_pretrained(SHIPPED)
untrained = random_backbone(trained.config, seed).eval()  # the same architecture before training
test = SynthEngine(SynthConfig(dim=dim, size=SIZE, n_views=2), seed=seed + 1).sample(1)
test_labels, test_views = test.labels[0], test.views[0]
synthetic_features = extract_features(trained, test_views[0], progress=False)
fig = viz.show_row([test_labels[0], test_views[0, 0], viz.pca_rgb(synthetic_features)],
                      ["label map", "view 1", "features (PCA)"], kinds=["labels", "image", "rgb"])
plt.show()

# %%
try:
    t1 = load_icbm(resolution=2).contrasts["t1"].array
except ImportError as err:
    t1 = None
    print(f"skipping the real image: {err}")
if t1 is not None:
    real = t1[..., t1.shape[-1] // 2] if dim == 2 else t1  # the axial mid-slice in 2D
    real = resize(real[None, None], (SIZE,) * dim)[0, 0]  # the template is skull-stripped, in [0, 1]
    real_features = extract_features(trained, real, progress=False)
    fig = viz.show_row([real, viz.pca_rgb(real_features, mask=real > 0.05)],
                          ["ICBM152 T1", "features (PCA)"], kinds=["image", "rgb"])
    plt.show()

# %% [markdown]
# ### Are features the same in both views?
#
# Both views show the same anatomy, so a good representation gives each voxel (nearly) the same feature in
# both. Per voxel, the cosine similarity between the features of view 1 and view 2, for the trained network
# and for the same network before training, on one shared grey scale (the colorbars).
#
# One trap first. An untrained network's features all share one large common direction, so the plain cosine
# of any two of its feature vectors is close to 1, whatever the two images show; and training, which spreads
# features apart to tell regions apart, *lowers* that plain cosine. `view_agreement` therefore centres each
# channel (subtracts its mean over the image) before the cosine: it compares how a voxel differs from the rest
# of its image in view 1 with how it differs in view 2. The printout gives both, so you can see the trap.

# %%
agreement = {name: view_agreement(net, test_views[0], test_views[1])
             for name, net in (("untrained", untrained), ("trained", trained))}
fig = viz.show_row([test_views[0, 0], test_views[1, 0], *agreement.values()],
                   ["view 1", "view 2", *(f"cosine, {name}" for name in agreement)],
                   kinds=["image", "image", "auto", "auto"], shared=True)
plt.show()
for name, net in (("untrained", untrained), ("trained", trained)):
    plain = view_agreement(net, test_views[0], test_views[1], centred=False)
    print(f"{name:>9}: mean per-voxel cosine between views, centred {agreement[name].mean():.3f} "
          f"(plain, uncentred: {plain.mean():.3f})")

# %% [markdown]
# And the prototype picture of section 4 again, now with the trained network next to the untrained one. This
# matrix is RaSD's own training quantity: only `objective = "rasd"` is asked to put its weight on the diagonal
# (each region recognising its own prototype). It is a softmax over raw dot products, so for the other
# objectives a prototype of large norm takes every row (one bright column), and an untrained network, whose
# prototypes are all alike, gives one flat colour: neither says the features are bad, only that they were not
# trained for this picture.

# %%
viz.show_matrices({"untrained": prototype_similarity(untrained, views[0], labels),
                   "trained": prototype_similarity(trained, views[0], labels)})
plt.show()

# %% [markdown]
# ## 7 · Explore: which voxels does the network find alike?
#
# Pick a voxel of view 1; the maps show the cosine similarity of its trained feature to every voxel of view 1
# and view 2. A network that learned anatomy lights up the same region in both views.

# %%
test_features = [normalize_features(extract_features(trained, view, progress=False)) for view in test_views]


def similarity_to_voxel(row: int, col: int) -> plt.Figure:
    point = (row, col) + (SIZE // 2,) * (dim - 2)
    query = test_features[0][(slice(None), *point)]
    maps = [torch.einsum("c,c...->...", query, features) for features in test_features]
    fig = viz.show_row([test_views[0, 0], *maps], ["view 1", "similarity in view 1", "similarity in view 2"],
                       kinds=["image", "auto", "auto"], shared=True)
    if dim == 2:  # 3D panels show a rotated mid-slice, where (row, col) would land elsewhere
        fig.axes[0].plot(col, row, "r+", markersize=12)
    return fig


fig = similarity_to_voxel(SIZE // 2, SIZE // 2)
plt.show()

# %%
display(viz.slider(similarity_to_voxel, row=(0, SIZE - 1, 1, SIZE // 2), col=(0, SIZE - 1, 1, SIZE // 2)))

# %% [markdown]
# ## Next
#
# Change `objective` (and `dim`) in the parameters cell and run again to compare the four objectives. For
# real runs use the command line, e.g. `python -m synthlab pretrain --objective supcon --dim 3 --size 64
# --steps 2000 --out runs/supcon3d`, or `torchrun` for several GPUs. Notebooks 03 and 04 use such
# checkpoints for registration and few-shot segmentation.
