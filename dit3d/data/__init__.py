"""Datasets and data modules: QM9 molecules in the shared molecule/crystal format."""
from dit3d.data.datamodule import QM9DataModule
from dit3d.data.qm9 import QM9, atom_count_histogram, atom_counts, qm9_smiles
from dit3d.data.samplers import SizeGroupedBatchSampler

__all__ = ["QM9", "QM9DataModule", "SizeGroupedBatchSampler", "atom_count_histogram", "atom_counts", "qm9_smiles"]
