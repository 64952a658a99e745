"""Datasets and data modules: QM9 molecules in the shared molecule/crystal format."""
from dit3d.data.datamodule import QM9DataModule
from dit3d.data.qm9 import QM9, atom_count_histogram, qm9_smiles

__all__ = ["QM9", "QM9DataModule", "qm9_smiles", "atom_count_histogram"]
