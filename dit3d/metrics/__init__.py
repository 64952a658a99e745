"""Metrics that judge generated outputs (files, RDKit Mols, atoms + coordinates, point clouds), never models.

Molecule metrics (EDM and ADiT protocols) are imported with the package; point-cloud
metrics (PointFlow protocol, :mod:`dit3d.metrics.pointclouds`), crystal metrics (CDVAE
protocol, :mod:`dit3d.metrics.crystals`) and image metrics (class-conditional accuracy and a
Frechet distance in a shipped digit classifier's features, :mod:`dit3d.metrics.images`) and
video metrics (MSE/PSNR of generated frames against ground truth, :mod:`dit3d.metrics.video`) on
first use, since they pull in torch, scipy, pymatgen and the optional ``crystals`` extra
(SMACT, matminer).
"""
from __future__ import annotations

import importlib
from typing import Any

from dit3d.metrics.molecules import ALLOWED_VALENCIES, atom_stability, canonical_smiles, evaluate_molecules

#: module -> the names it exports here, imported on first use
_LAZY_EXPORTS = {
    "dit3d.metrics.pointclouds": ("chamfer_distance", "earth_movers_distance", "evaluate_pointclouds",
                                  "generative_metrics", "normalize_pointclouds", "pairwise_cd", "pairwise_emd"),
    "dit3d.metrics.pointcloud_pairwise": ("evaluation_memory_bytes",),
    "dit3d.metrics.crystals": ("evaluate_crystals", "smact_validity", "structure_validity", "uniqueness_novelty"),
    "dit3d.metrics.images": ("class_conditional_accuracy", "evaluate_images", "frechet_classifier_distance",
                             "frechet_distance", "load_digit_classifier"),
    "dit3d.metrics.video": ("copy_baseline", "masked_mse_psnr"),
}
_MODULE_OF = {name: module for module, names in _LAZY_EXPORTS.items() for name in names}

__all__ = ["ALLOWED_VALENCIES", "atom_stability", "canonical_smiles", "evaluate_molecules", *_MODULE_OF]


def __getattr__(name: str) -> Any:
    if name in _MODULE_OF:
        return getattr(importlib.import_module(_MODULE_OF[name]), name)
    raise AttributeError(f"module 'dit3d.metrics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
