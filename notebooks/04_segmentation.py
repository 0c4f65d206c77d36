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
# # 04 · Few-shot segmentation: does pretraining pay off with one, three, five labelled scans?
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/synthlab/synthlab/blob/main/notebooks/04_segmentation.ipynb)
#
# The test every pretraining method is judged by: fine-tune on a handful of labelled scans, measure Dice
# on held-out ones. The arms share the same architecture, training subjects and budget:
#
# * **pretrained**: start from a pretrained network and fine-tune all of it (optionally training the new head
#   alone for the first steps, so that a random head does not wreck what pretraining learned);
# * **scratch**: the same network from a random initialisation;
# * **probe**: freeze the pretrained network and fit a linear (1x1) head on every level of it, to convergence:
#   how much the features already know. Two baselines read the same head on the *untrained* network's levels
#   (**probe_random**) and on the raw intensity (**probe_intensity**).
#
# A fair comparison gives each arm the learning rate that suits it. In the `cpu` and `gpu` profiles
# `evaluate_segmentation(..., tune=True)` first tries a few learning rates per arm (and, for the pretrained arm,
# a frozen warm-up) on *validation* cases that are in no test list, and keeps each arm's best.
#
# Data: Medical Segmentation Decathlon Task04 Hippocampus (CC BY-SA 4.0): T1 crops, labels anterior (1)
# and posterior (2) hippocampus.

# %%
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("synthlab") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "synthlab @ git+https://github.com/synthlab/synthlab"], check=True)

# %% tags=["parameters"]
import os

profile = os.environ.get("SYNTHLAB_PROFILE", "ci")
checkpoint = "shipped"  # "shipped": synthlab's own weights for `dim`; a checkpoint path or name; "none": no pretrained arm
dim = 2  # 2: train on slices, predict slice by slice; 3: whole volumes
seed = 0  # which cases are shown below (the evaluation's seeds are 0 .. seg_seeds - 1)

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

import synthlab
from synthlab import viz
from synthlab.checkpoint import load_backbone
from synthlab.data import declared_labels, find_data_root, load_msd, normalize_intensity
from synthlab.eval_seg import evaluate_segmentation, split_subjects
from synthlab.profiles import get_profile
from synthlab.segment import ARMS, FineTuneConfig, fit_arm, predict, prepare_cases

settings = get_profile(profile)
checkpoint = f"synthlab-{dim}d" if checkpoint == "shipped" else checkpoint
print(f"pretrained arm: {checkpoint}")
data_root = find_data_root()
folder = data_root / "hippocampus" if data_root is not None else None
has_data = folder is not None and (folder / "dataset.json").is_file()
label_names = declared_labels(folder / "dataset.json") if has_data else None  # {0: "background", 1: ...}
print(f"profile {settings.name}: {settings.seg_steps} steps, shots {settings.seg_shots}, "
      f"{settings.seg_seeds} seeds, {settings.seg_max_test} test cases, dim {dim}")
if not has_data:
    print("hippocampus data not found (set SYNTHLAB_DATA): the cells below skip their work")

# %%
# NBVAL_IGNORE_OUTPUT
print("synthlab", synthlab.__version__, "| torch", torch.__version__, "| numpy", np.__version__)

# %% [markdown]
# ## The data: small crops around the hippocampus
#
# Each case is a T1 crop of about 35x50x36 voxels at 1 mm; the overlay marks the two labels that
# `dataset.json` declares (the legend gives their names).

# %%
if has_data:
    print("labels:", label_names)
    cases = load_msd(folder, limit=seed + 3)[seed:]
    for case in cases:
        fig = viz.show_planes([normalize_intensity(case.image.array)], titles=[case.name],
                              overlay=case.label.array, overlay_names=label_names)

# %% [markdown]
# ## Fine-tune every arm for every number of shots
#
# `evaluate_segmentation` trains each arm `seg_seeds` times per shot count (different training subjects
# per seed, the same for every arm) and scores mean foreground Dice on a fixed held-out list. With
# the default `checkpoint="shipped"` the pretrained arm starts from the network synthlab ships for this
# dimension (`voxnce`, trained for minutes on a GPU; `docs/experiments.md`), so at the `ci` budget this is a smoke
# test, not evidence. With `checkpoint="none"` there is nothing pretrained: that arm is None, and the probe
# reads the random features of the scratch initialisation, a floor for what a linear head can do.
#
# In the README's fair-protocol run (1 shot, 10 seeds, tuned learning rates) the shipped `voxnce` network
# gains nothing over scratch; anatomix's `supcon` network (`checkpoint="synthlab-supcon-2d"`) is the one that
# does (+0.034 ± 0.030, its linear probe 0.550): label identity, not voxel identity, is what segmentation reads.

# %%
if has_data:
    report = evaluate_segmentation(folder, checkpoint=checkpoint, shots=settings.seg_shots,
                                   seeds=settings.seg_seeds, steps=settings.seg_steps, dim=dim,
                                   max_test=settings.seg_max_test, batch_size=settings.for_dim("seg_batch", dim),
                                   tune=settings.seg_tune, probe_steps=settings.seg_probe_steps, progress=False)
    print(f"{report['settings']['seconds']:.0f} s; learning rates {report['settings']['lrs']}; "
          f"probe backbone: {report['settings']['probe_backbone']}")

# %%
if has_data:
    print(f"{'arm':<16}" + "".join(f"{f'{k} shot(s)':>20}" for k in settings.seg_shots))
    for arm in ARMS:
        if report[arm] is None:
            print(f"{arm:<16}" + f"{'not run':>20}" * len(settings.seg_shots))
            continue
        cells = [report[arm][str(k)] for k in settings.seg_shots]
        print(f"{arm:<16}" + "".join(f"{c['mean']:>12.3f} ± {c['sem'] or 0:.3f}" for c in cells))

# %% [markdown]
# ## Dice versus number of labelled scans
#
# Error bars are the standard error over seeds. In the `ci` profile the budgets are tiny, so the numbers
# only show that the pipeline runs; the `cpu` and `gpu` profiles give meaningful curves.

# %%
if has_data:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    colours = ("tab:red", "tab:blue", "tab:grey", "tab:olive", "tab:brown")
    for arm, colour in zip(ARMS, colours, strict=True):
        if report[arm] is None:
            continue
        cells = [report[arm][str(k)] for k in settings.seg_shots]
        ax.errorbar(settings.seg_shots, [c["mean"] for c in cells], yerr=[c["sem"] or 0 for c in cells],
                    marker="o", capsize=3, color=colour, label=arm)
    ax.set_xlabel("labelled training scans (shots)")
    ax.set_ylabel("mean foreground Dice")
    ax.set_xticks(settings.seg_shots)
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title(f"hippocampus, {dim}D, {settings.seg_steps} steps")
    fig.tight_layout()

# %%
if has_data and report["gain"] is not None:
    for k, gain in report["gain"].items():
        print(f"{k} shot(s): pretrained - scratch = {gain['mean']:+.3f} ± {gain['sem'] or 0:.3f} (paired SEM)")

# %% [markdown]
# ## Example predictions
#
# What does a few-shot model output? One model of the evaluation above, refitted: seed 0, the largest shot
# count, the same budget, fine-tuned from the checkpoint (or from scratch when there is none), predicting two
# held-out cases: first the manual labels, then the prediction. (The `ci` budget, 120 steps, is just past the
# point where training leaves the all-background prediction, so expect rough outlines there, not anatomy.)

# %%
if has_data:
    backbone = load_backbone(checkpoint, dim)  # "none": a seeded random network of the profile's preset
    prepared, grid = prepare_cases(load_msd(folder), backbone.downsample_factor, dim)
    shots = max(settings.seg_shots)
    train, test = split_subjects(len(prepared), shots, 0, settings.seg_max_test, stride=shots)
    arm = "scratch" if checkpoint == "none" else "pretrained"
    budget = FineTuneConfig(steps=settings.seg_steps, batch_size=settings.for_dim("seg_batch", dim))
    model = fit_arm(arm, backbone, prepared, train, len(label_names), (0, shots), budget, torch.device("cpu"))
    for i in test[:2]:
        prediction = predict(model, prepared[i].image) * prepared[i].valid
        for title, labels in (("manual", prepared[i].label), (f"{arm}, {shots} shot(s)", prediction)):
            fig = viz.show_planes([prepared[i].image], titles=[title], overlay=labels, overlay_names=label_names)
        plt.show()

# %% [markdown]
# A pretrained network should lift the curve most at one shot, where scratch training has least to
# learn from; the probe tells whether the gain comes from the features themselves.
#
# ## Try it: how the cases look across the data set
#
# Pick a case to view with its labels (needs a live kernel; a static page shows only the control).

# %%
def render(index: int) -> plt.Figure:
    case = load_msd(folder, limit=index + 1)[index]
    return viz.show_planes([normalize_intensity(case.image.array)], titles=[case.name], overlay=case.label.array,
                           overlay_names=label_names)


if has_data:
    display(viz.slider(render, index=(0, 20, 1, seed)))
