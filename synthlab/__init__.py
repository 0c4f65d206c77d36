"""synthlab: pretrain medical-image networks on synthetic or unlabeled data (anatomix, VoCo, RaSD)."""

from __future__ import annotations

__version__ = "0.1.0"
