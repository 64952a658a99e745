"""Datasets and data modules: QM9 molecules, crystals (CDVAE CSVs), ShapeNet PC15k point clouds, shape converters,
scikit-learn's handwritten digits as images and as moving-digit clips.

Names are imported on first use (PyG and Lightning take seconds to load), so that
``dit3d.data.shapes`` or ``dit3d.data.pointcloud_io`` can be used without them.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "QM9": "dit3d.data.qm9", "atom_count_histogram": "dit3d.data.qm9", "atom_counts": "dit3d.data.qm9",
    "qm9_smiles": "dit3d.data.qm9", "QM9DataModule": "dit3d.data.datamodule",
    "SizeGroupedBatchSampler": "dit3d.data.samplers",
    "PointCloudDataModule": "dit3d.data.pointclouds", "ShapeNetPC15k": "dit3d.data.pc15k",
    "resolve_category": "dit3d.data.pc15k", "convert_shapes": "dit3d.data.shapes",
    "PointCloudFileError": "dit3d.data.pointcloud_io", "read_pointclouds": "dit3d.data.pointcloud_io",
    "write_npy": "dit3d.data.pointcloud_io", "write_ply": "dit3d.data.pointcloud_io",
    "CrystalDataset": "dit3d.data.crystals", "DEV_SPLITS": "dit3d.data.crystals",
    "combine_crystal_csvs": "dit3d.data.crystals", "dev_split_files": "dit3d.data.crystals",
    "read_crystal_csv": "dit3d.data.crystals", "shared_fields": "dit3d.data.crystals",
    "CrystalDataModule": "dit3d.data.crystal_datamodule",
    "JointDataModule": "dit3d.data.joint", "JointDataset": "dit3d.data.joint",
    "MixedBatchSampler": "dit3d.data.joint",
    "DigitsDataModule": "dit3d.data.digits", "DigitsDataset": "dit3d.data.digits",
    "digit_images": "dit3d.data.digits", "digits_split": "dit3d.data.digits",
    "MovingDigits": "dit3d.data.moving_digits", "MovingDigitsDataModule": "dit3d.data.moving_digits",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dit3d.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
