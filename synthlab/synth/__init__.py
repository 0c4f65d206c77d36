"""Synthetic training data: random label maps rendered into many-contrast images (anatomix, RaSD).

``SynthEngine(SynthConfig(...), device, seed).sample(B)`` gives a :class:`SynthBatch` with ``labels``
``(B, 1, *size)`` and ``views`` ``(B, n_views, 1, *size)``. The stages are importable on their own:
:mod:`~synthlab.synth.labels` (procedural fields, shape bank, foreground), :mod:`~synthlab.synth.appearance`
(intensity model and artefacts, sampled then applied) and :mod:`~synthlab.synth.config` (every range and
probability, with its source).
"""

from __future__ import annotations

from .appearance import AppearanceParams, render, sample_appearance
from .config import (
    AppearanceConfig,
    ForegroundConfig,
    ProceduralConfig,
    ShapeBankConfig,
    SpatialAugConfig,
    SynthConfig,
)
from .engine import SynthBatch, SynthEngine, augment_labels
from .labels import ShapeBank, procedural_labels

__all__ = [
    "AppearanceConfig",
    "AppearanceParams",
    "ForegroundConfig",
    "ProceduralConfig",
    "ShapeBank",
    "ShapeBankConfig",
    "SpatialAugConfig",
    "SynthBatch",
    "SynthConfig",
    "SynthEngine",
    "augment_labels",
    "procedural_labels",
    "render",
    "sample_appearance",
]
