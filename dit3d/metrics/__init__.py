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

_POINTCLOUD_EXPORTS = ("chamfer_distance", "earth_movers_distance", "evaluate_pointclouds", "generative_metrics",
                       "normalize_pointclouds", "pairwise_cd", "pairwise_emd")

_PAIRWISE_EXPORTS = ("evaluation_memory_bytes",)

_CRYSTAL_EXPORTS = ("evaluate_crystals", "smact_validity", "structure_validity", "uniqueness_novelty")

_IMAGE_EXPORTS = ("class_conditional_accuracy", "evaluate_images", "frechet_classifier_distance", "frechet_distance",
                  "load_digit_classifier")

_VIDEO_EXPORTS = ("copy_baseline", "masked_mse_psnr")

__all__ = ["ALLOWED_VALENCIES", "atom_stability", "canonical_smiles", "evaluate_molecules", *_POINTCLOUD_EXPORTS,
           *_PAIRWISE_EXPORTS, *_CRYSTAL_EXPORTS, *_IMAGE_EXPORTS, *_VIDEO_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _POINTCLOUD_EXPORTS:
        return getattr(importlib.import_module("dit3d.metrics.pointclouds"), name)
    if name in _PAIRWISE_EXPORTS:
        return getattr(importlib.import_module("dit3d.metrics.pointcloud_pairwise"), name)
    if name in _CRYSTAL_EXPORTS:
        return getattr(importlib.import_module("dit3d.metrics.crystals"), name)
    if name in _IMAGE_EXPORTS:
        return getattr(importlib.import_module("dit3d.metrics.images"), name)
    if name in _VIDEO_EXPORTS:
        return getattr(importlib.import_module("dit3d.metrics.video"), name)
    raise AttributeError(f"module 'dit3d.metrics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_POINTCLOUD_EXPORTS) | set(_PAIRWISE_EXPORTS) | set(_CRYSTAL_EXPORTS) | set(_IMAGE_EXPORTS)
                  | set(_VIDEO_EXPORTS))
