"""Metrics that judge generated outputs (files, RDKit Mols, atoms + coordinates), never models."""
from dit3d.metrics.molecules import ALLOWED_VALENCIES, atom_stability, canonical_smiles, evaluate_molecules

__all__ = ["ALLOWED_VALENCIES", "atom_stability", "canonical_smiles", "evaluate_molecules"]
