"""The catalog of measured studies: each a question and the ``python -m synthlab`` arguments that answer it.

One entry a study, grouped by protocol; :data:`TABLES` names the studies a README table joins. Running, loading
and rendering them is :mod:`synthlab.studies` and :mod:`synthlab.studies.render`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["STUDIES", "TABLES", "Study"]


@dataclass(frozen=True)
class Study:
    """A named, reproducible measurement: the ``python -m synthlab`` arguments that produce its file."""

    name: str
    question: str
    argv: tuple[str, ...]  # without --out, which is always this folder's NAME.json
    cost: str  # wall time measured on the machine named in the file's provenance
    scratch_from: str | None = None  # a few-shot study whose scratch arm (same seeds, subjects, draws) pairs with it
    makes_data: tuple[str, ...] = ()  # the python -m command that writes its --data set when it is missing


# The fair few-shot protocol (docs/experiments.md): 2D hippocampus, 400 steps at batch 8, 40 fixed test volumes,
# each arm's learning rate (and the pretrained arm's frozen warm-up) tuned on 10 validation volumes with seeds
# after the evaluated ones, linear probes fitted to convergence.
_SPLIT_2D = ("eval-seg", "--data", "hippocampus", "--dim", "2", "--steps", "400", "--batch-size", "8",
             "--max-test", "40")
_FEWSHOT_2D = (*_SPLIT_2D, "--tune")

# The 3D setting anatomix reports: whole hippocampus volumes (padded to a multiple of 16), 400 steps at batch 2,
# the same test list, validation cases and tuning as in 2D; a GPU study (the anatomix-preset networks are the GPU
# builds), its arms' runs spread over processes sharing the device.
_FEWSHOT_3D = ("eval-seg", "--data", "hippocampus", "--dim", "3", "--steps", "400", "--batch-size", "2",
               "--max-test", "40", "--tune")

# Registration with a known answer (README "Registration"): brain_tumor_mri/study1, T1 fixed, FLAIR moving, a known
# smooth deformation per seed, 128 voxels a side, 3 seeds; each feature set with synthlab's solver and anatomix's.
_BRAIN = ("eval-reg", "--data", "brain_tumor_mri/study1", "--fixed", "T1prereg", "--moving", "FLAIRreg", "--seeds",
          "3", "--size", "128")

# The shipped 2D networks whose studies borrow a supcon study's scratch arm, and how a question names each.
_OTHER_2D = (("voco", "VoCo's"), ("rasd", "RaSD's"), ("voxnce", "synthlab's own same-voxel"))

STUDIES: dict[str, Study] = {study.name: study for study in (
    Study("fewshot-2d-supcon-1shot",
          "Does anatomix's supcon network gain over tuned scratch training with one labelled scan (20 seeds)?",
          (*_FEWSHOT_2D, "--checkpoint", "synthlab-supcon-2d", "--shots", "1", "--seeds", "20"),
          "about 80 minutes on 2 cores"),
    Study("fewshot-2d-supcon-3-5shot",
          "Does the gain of anatomix's supcon network over tuned scratch grow or fade with 3 and 5 labelled scans "
          "(10 seeds)?",
          (*_FEWSHOT_2D, "--checkpoint", "synthlab-supcon-2d", "--shots", "3", "5", "--seeds", "10"),
          "about 2 hours on 2 cores"),
    Study("fewshot-2d-supcon-1shot-lpft",
          "Fine-tuned from a head fitted on the frozen network first (LP-FT, its learning rate tuned on the "
          "validation cases), does the 1-shot study's pretrained arm stop dropping a label (20 seeds)?",
          (*_FEWSHOT_2D, "--checkpoint", "synthlab-supcon-2d", "--shots", "1", "--seeds", "20", "--tune-heads",
           "probe", "--arms", "pretrained"),
          "about 20 minutes on 2 cores", scratch_from="fewshot-2d-supcon-1shot"),
    Study("fewshot-2d-supcon-1shot-lpft-40seeds",
          "With twice the seeds, is the 1-shot gain of supcon with its head fitted first at least +0.05, and its "
          "standard error at most 0.015 (40 seeds, the two 1-shot studies' chosen settings, no tuning)?",
          (*_SPLIT_2D, "--hold-validation", "--checkpoint", "synthlab-supcon-2d", "--shots", "1", "--seeds", "40",
           "--arms", "pretrained", "scratch", "--lr-scratch", "0.01", "--lr-finetune", "0.001", "--head-finetune",
           "probe", "--freeze-fraction", "0"),
          "about 25 minutes on 2 cores"),
    Study("fewshot-2d-supcon-3-5shot-lpft-20seeds",
          "With twice the seeds at 3 and 5 labelled scans, does supcon with its head fitted first gain over "
          "scratch, and on which side of zero does each interval lie (20 seeds, the two 3-5-shot studies' chosen "
          "settings, no tuning)?",
          (*_SPLIT_2D, "--hold-validation", "--checkpoint", "synthlab-supcon-2d", "--shots", "3", "5", "--seeds",
           "20", "--arms", "pretrained", "scratch", "--lr-scratch", "0.03", "--lr-finetune", "0.003",
           "--head-finetune", "probe", "--freeze-fraction", "0"),
          "about 25 minutes on 2 cores"),
    Study("fewshot-2d-supcon-3-5shot-lpft",
          "With the head fitted first (LP-FT), does fine-tuning stop dropping a label at 3 and 5 labelled scans, "
          "where the random head collapsed in 3 of 20 runs (10 seeds)?",
          (*_FEWSHOT_2D, "--checkpoint", "synthlab-supcon-2d", "--shots", "3", "5", "--seeds", "10", "--tune-heads",
           "probe", "--arms", "pretrained"),
          "about 25 minutes on 2 cores", scratch_from="fewshot-2d-supcon-3-5shot"),
    *(Study(f"fewshot-2d-{objective}-1shot",
            f"Does {paper} network gain over the tuned scratch arm of the 1-shot study, on its seeds and subjects "
            "(20 seeds)?",
            (*_FEWSHOT_2D, "--checkpoint", f"synthlab-{objective}-2d", "--shots", "1", "--seeds", "20", "--arms",
             "pretrained", "probe"),
            "about 30 minutes on 2 cores", scratch_from="fewshot-2d-supcon-1shot")
      for objective, paper in _OTHER_2D),
    *(Study(f"fewshot-2d-{objective}-3-5shot",
            f"With 3 and 5 labelled scans, does {paper} network gain over the tuned scratch arm of the 3- and "
            "5-shot study, on its seeds and subjects (10 seeds)?",
            (*_FEWSHOT_2D, "--checkpoint", f"synthlab-{objective}-2d", "--shots", "3", "5", "--seeds", "10",
             "--arms", "pretrained", "probe"),
            "about 45-60 minutes on 2 cores", scratch_from="fewshot-2d-supcon-3-5shot")
      for objective, paper in _OTHER_2D),
    *(Study(f"fewshot-2d-{objective}-3-5shot-20seeds",
            f"With twice the seeds at 3 and 5 labelled scans, does {paper} network gain over the scratch arm of "
            "the 20-seed 3-5-shot study, on its seeds and subjects (its 10-seed study's chosen settings, no tuning)?",
            (*_SPLIT_2D, "--hold-validation", "--checkpoint", f"synthlab-{objective}-2d", "--shots", "3", "5",
             "--seeds", "20", "--arms", "pretrained", "--lr-finetune", "0.01", "--freeze-fraction", "0"),
            "about 11 minutes on 2 cores", scratch_from="fewshot-2d-supcon-3-5shot-lpft-20seeds")
      for objective, paper in _OTHER_2D),
    *(Study(f"fewshot-2d-{objective}-3-5shot-lpft-20seeds",
            f"Fine-tuned from a head fitted first (LP-FT, its learning rate tuned at 3 shots) instead of a random "
            f"one, does {paper} network gain at 3 and 5 labelled scans over the 20-seed scratch arm (20 seeds)?",
            (*_FEWSHOT_2D, "--checkpoint", f"synthlab-{objective}-2d", "--shots", "3", "5", "--seeds", "20",
             "--tune-heads", "probe", "--arms", "pretrained"),
            "about 17 minutes on 2 cores", scratch_from="fewshot-2d-supcon-3-5shot-lpft-20seeds")
      for objective, paper in _OTHER_2D),
    Study("registration-brain-synthlab",
          "Which features recover a known deformation between two contrasts best, with synthlab's solver?",
          (*_BRAIN, "--checkpoint", "synthlab-3d", "--features", "intensity", "mind", "network", "network+mind"),
          "about 8 minutes on one core"),
    Study("registration-brain-synthlab-random",
          "The same with a random network: what do trained features add over untrained ones?",
          (*_BRAIN, "--checkpoint", "none", "--features", "network", "network+mind"), "about 5 minutes on one core"),
    Study("registration-brain-anatomix",
          "MIND and network + MIND with anatomix's published solver settings (docs/fidelity.md section 4)",
          (*_BRAIN, "--checkpoint", "synthlab-3d", "--features", "mind", "network+mind", "--solver", "anatomix"),
          "about 6 minutes on one core"),
    Study("registration-brain-anatomix-random",
          "network + MIND with anatomix's solver and a random network",
          (*_BRAIN, "--checkpoint", "none", "--features", "network+mind", "--solver", "anatomix"),
          "about 4 minutes on one core"),
    Study("registration-brain-anatomix-wide",
          "The check on a held-out protocol: MIND and network + MIND with anatomix's solver widened for large motion "
          "(the anatomix-wide preset, chosen on the abdomen development pair)",
          (*_BRAIN, "--checkpoint", "synthlab-3d", "--features", "mind", "network+mind", "--solver", "anatomix-wide"),
          "about 9 minutes on one core"),
    Study("registration-brain-anatomix-supcon",
          "network + MIND with anatomix's solver and anatomix's own objective's network (supcon)",
          (*_BRAIN, "--checkpoint", "synthlab-supcon-3d", "--features", "network+mind", "--solver", "anatomix"),
          "about 6 minutes on one core"),
    Study("fewshot-3d-supcon-1shot",
          "In 3D, as anatomix reports it, does its supcon network gain over tuned scratch training with one "
          "labelled scan (10 seeds)?",
          (*_FEWSHOT_3D, "--checkpoint", "synthlab-supcon-3d", "--shots", "1", "--seeds", "10"),
          "about 7 minutes on one H200 (4 workers)"),
    Study("fewshot-3d-voxnce-1shot",
          "In 3D, does synthlab's own same-voxel network gain over the tuned scratch arm of the 3D 1-shot study, on "
          "its seeds and subjects (10 seeds)?",
          (*_FEWSHOT_3D, "--checkpoint", "synthlab-voxnce-3d", "--shots", "1", "--seeds", "10", "--arms",
           "pretrained", "probe"),
          "about 3-4 minutes on one H200 (4 workers)", scratch_from="fewshot-3d-supcon-1shot"),
)}

# Inter-subject hippocampus pairs (README "Registration"): 5 labelled pairs in one world frame, the moving image
# unchanged or remapped by a monotone or non-monotone intensity curve; Dice of the warped labels.
_HIPPOCAMPUS = ("eval-reg", "--data", "hippocampus", "--seeds", "5")
STUDIES.update({study.name: study for study in (
    Study("registration-hippocampus-synthlab",
          "Across subjects and contrast changes, does a network add to MIND (synthlab's solver)?",
          (*_HIPPOCAMPUS, "--checkpoint", "synthlab-3d", "--features", "intensity", "mind", "network+mind"),
          "about 2 minutes on one core"),
    Study("registration-hippocampus-anatomix", "The same with anatomix's solver settings",
          (*_HIPPOCAMPUS, "--checkpoint", "synthlab-3d", "--features", "mind", "network+mind", "--solver", "anatomix"),
          "about 1 minute on one core"),
    Study("registration-hippocampus-anatomix-random", "anatomix's solver with a random network",
          (*_HIPPOCAMPUS, "--checkpoint", "none", "--features", "network+mind", "--solver", "anatomix"),
          "about 1 minute on one core"),
    Study("registration-hippocampus-anatomix-wide",
          "anatomix's solver widened for large motion (chosen on the abdomen pair): what it costs on small crops",
          (*_HIPPOCAMPUS, "--checkpoint", "synthlab-3d", "--features", "mind", "network+mind", "--solver",
           "anatomix-wide"), "about 2 minutes on one core"),
    Study("registration-hippocampus-anatomix-supcon", "anatomix's solver with anatomix's own objective's network",
          (*_HIPPOCAMPUS, "--checkpoint", "synthlab-supcon-3d", "--features", "network+mind", "--solver",
           "anatomix"), "about 1 minute on one core"),
)})

# A hard development pair (README "Registration"): the shared abdominal CT against 5 MR-like cases made from its
# label map, deformed and stored with other axes (python -m synthlab.dev_pairs abdomen-mrct writes them first).
_ABDOMEN = ("eval-reg", "--data", "abdomen-mrct", "--fixed", "ct", "--seeds", "5", "--changes", "none")
_MAKE_ABDOMEN = ("synthlab.dev_pairs", "abdomen-mrct")
STUDIES.update({study.name: study for study in (
    Study("registration-abdomen-synthlab",
          "MR-like to CT across a large motion and a flipped storage order: does a network add to MIND (synthlab's "
          "solver)?", (*_ABDOMEN, "--checkpoint", "synthlab-3d", "--features", "intensity", "mind", "network+mind"),
          "about 3 minutes on one core", makes_data=_MAKE_ABDOMEN),
    Study("registration-abdomen-anatomix", "The same with anatomix's solver settings",
          (*_ABDOMEN, "--checkpoint", "synthlab-3d", "--features", "mind", "network+mind", "--solver", "anatomix"),
          "about 3 minutes on one core", makes_data=_MAKE_ABDOMEN),
    Study("registration-abdomen-anatomix-random", "anatomix's solver with a random network",
          (*_ABDOMEN, "--checkpoint", "none", "--features", "network+mind", "--solver", "anatomix"),
          "about 2 minutes on one core", makes_data=_MAKE_ABDOMEN),
    Study("registration-abdomen-anatomix-wide",
          "anatomix's solver widened for large motion (search 5 grid voxels, diffusion 2, network weight 0.4; tuned "
          "on these pairs for each feature set): do the trained features pay, best against best?",
          (*_ABDOMEN, "--checkpoint", "synthlab-3d", "--features", "mind", "network+mind", "--solver",
           "anatomix-wide"), "about 3 minutes on one core", makes_data=_MAKE_ABDOMEN),
    Study("registration-abdomen-anatomix-supcon", "anatomix's solver with anatomix's own objective's network "
          "(supcon, the paper's architecture): the pairing the paper reports on MR to CT",
          (*_ABDOMEN, "--checkpoint", "synthlab-supcon-3d", "--features", "network+mind", "--solver", "anatomix"),
          "about 3 minutes on one core", makes_data=_MAKE_ABDOMEN),
)})

# The correspondence probe (README "Shipped weights"): every shipped network of one dimension on the four
# co-registered contrast pairs of brain_tumor_mri (study2 has no pre-contrast T1: its query image is T1post).
_PAIRS = ("--pair", "brain_tumor_mri/study1", "T1prereg", "FLAIRreg", "--pair", "brain_tumor_mri/study1", "T1prereg",
          "T2reg", "--pair", "brain_tumor_mri/study2", "T1post", "FLAIRreg", "--pair", "brain_tumor_mri/study2",
          "T1post", "T2reg")
STUDIES.update({f"features-{dim}d": Study(
    f"features-{dim}d",
    f"Do the shipped {dim}D networks' features find the same voxel in another contrast, against their untrained "
    "selves and MIND-SSC?",
    ("eval-features", *_PAIRS, "--dim", str(dim), "--checkpoint",
     *(f"synthlab-{objective}-{dim}d" for objective in ("supcon", "voco", "rasd", "voxnce"))),
    f"about {({2: 22, 3: 15})[dim]} minutes of one thread (beside a two-worker study)")
    for dim in (2, 3)})

# README tables that join several studies of one protocol (rendered by make results: registration tables when
# every file exists, few-shot tables from the first study and those run so far).
TABLES: dict[str, tuple[str, ...]] = {
    **{f"fewshot-2d-{shots}-networks": (f"fewshot-2d-supcon-{shots}", *(f"fewshot-2d-{objective}-{shots}"
                                                                       for objective in ("voco", "rasd", "voxnce")))
       for shots in ("1shot", "3-5shot")},
    "fewshot-2d-3-5shot-20seeds-networks": ("fewshot-2d-supcon-3-5shot-lpft-20seeds",
                                            *(f"fewshot-2d-{objective}-3-5shot-20seeds" for objective, _ in _OTHER_2D)),
    "fewshot-2d-3-5shot-lpft-networks": ("fewshot-2d-supcon-3-5shot-lpft-20seeds",
                                         *(f"fewshot-2d-{objective}-3-5shot-lpft-20seeds"
                                           for objective, _ in _OTHER_2D)),
    "fewshot-3d-1shot-networks": ("fewshot-3d-supcon-1shot", "fewshot-3d-voxnce-1shot"),
    "registration-brain": ("registration-brain-synthlab", "registration-brain-synthlab-random",
                           "registration-brain-anatomix", "registration-brain-anatomix-random",
                           "registration-brain-anatomix-supcon", "registration-brain-anatomix-wide"),
    "registration-abdomen": ("registration-abdomen-synthlab", "registration-abdomen-anatomix",
                             "registration-abdomen-anatomix-random", "registration-abdomen-anatomix-supcon",
                             "registration-abdomen-anatomix-wide"),
    "registration-hippocampus": ("registration-hippocampus-synthlab", "registration-hippocampus-anatomix",
                                 "registration-hippocampus-anatomix-random",
                                 "registration-hippocampus-anatomix-supcon", "registration-hippocampus-anatomix-wide"),
    "features": ("features-2d", "features-3d"),  # the claims table's correspondence cells (each renders alone)
}
