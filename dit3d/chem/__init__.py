"""Chemistry I/O and bond perception: molecule files, element symbols, bonds from 3D;
crystals (pymatgen ``Structure`` <-> arrays <-> ASE ``Atoms``, CIF and extxyz).

Imports RDKit, pymatgen, ASE and NumPy only; knows nothing of models. The crystal names
(:mod:`dit3d.chem.crystals`) are imported on first use, so molecule code does not pay
for importing pymatgen.
"""
from __future__ import annotations

import importlib
from typing import Any

from dit3d.chem.bonds import (BOND_PERCEPTION_PROP, EDM_DOUBLE_BOND_PM, EDM_MARGINS_PM, EDM_SINGLE_BOND_PM,
                              EDM_TRIPLE_BOND_PM, edm_bond_matrix, edm_bond_order, mol_from_coords)
from dit3d.chem.io import (MoleculeFileError, MoleculeRecord, atomic_number, atomic_output, atomic_write,
                           element_symbol, read_molecules, read_sdf, read_xyz, to_atomic_numbers, write_sdf,
                           write_xyz)

_CRYSTAL_EXPORTS = (
    "CrystalFileError", "CrystalRecord", "ase_to_structure", "canonical_structure", "check_structure",
    "parse_cif", "read_cif", "read_crystals", "read_extxyz", "structure_from_arrays", "structure_to_arrays",
    "structure_to_ase", "write_cif", "write_cif_dir", "write_extxyz",
)

__all__ = [
    "BOND_PERCEPTION_PROP", "EDM_DOUBLE_BOND_PM", "EDM_MARGINS_PM", "EDM_SINGLE_BOND_PM",
    "EDM_TRIPLE_BOND_PM", "MoleculeFileError", "MoleculeRecord", "atomic_number", "atomic_output",
    "atomic_write", "edm_bond_matrix", "edm_bond_order", "element_symbol", "mol_from_coords",
    "read_molecules", "read_sdf", "read_xyz", "to_atomic_numbers", "write_sdf", "write_xyz",
    *_CRYSTAL_EXPORTS,
]


def __getattr__(name: str) -> Any:
    if name in _CRYSTAL_EXPORTS:
        return getattr(importlib.import_module("dit3d.chem.crystals"), name)
    raise AttributeError(f"module 'dit3d.chem' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_CRYSTAL_EXPORTS))
