"""synthlab: pretrain medical-image networks on synthetic or unlabeled data (anatomix, VoCo, RaSD).

The data flows one way: ``spatial`` -> ``synth`` -> ``nets``/``losses`` -> ``train`` -> ``features`` ->
``register``/``segment`` -> ``eval_reg``/``eval_seg`` -> the command line; ``data`` feeds them from the side.
The public entry points most users need are re-exported here.
"""

from __future__ import annotations

from synthlab.checkpoint import load_pretrained
from synthlab.nets import UNet, build_unet
from synthlab.profiles import get_profile
from synthlab.synth import SynthConfig, SynthEngine

__version__ = "0.1.0"
__all__ = ["SynthConfig", "SynthEngine", "UNet", "build_unet", "get_profile", "load_pretrained"]
