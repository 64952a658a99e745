"""Chemistry I/O and bond perception: molecule files, element symbols, bonds from 3D.

Imports RDKit and NumPy only; knows nothing of models.
"""
from dit3d.chem.bonds import (BOND_PERCEPTION_PROP, EDM_DOUBLE_BOND_PM, EDM_MARGINS_PM, EDM_SINGLE_BOND_PM,
                              EDM_TRIPLE_BOND_PM, edm_bond_matrix, edm_bond_order, mol_from_coords)
from dit3d.chem.io import (MoleculeFileError, MoleculeRecord, atomic_number, atomic_output, atomic_write,
                           element_symbol, read_molecules, read_sdf, read_xyz, to_atomic_numbers, write_sdf,
                           write_xyz)

__all__ = [
    "BOND_PERCEPTION_PROP", "EDM_DOUBLE_BOND_PM", "EDM_MARGINS_PM", "EDM_SINGLE_BOND_PM",
    "EDM_TRIPLE_BOND_PM", "MoleculeFileError", "MoleculeRecord", "atomic_number", "atomic_output",
    "atomic_write", "edm_bond_matrix", "edm_bond_order", "element_symbol", "mol_from_coords",
    "read_molecules", "read_sdf", "read_xyz", "to_atomic_numbers", "write_sdf", "write_xyz",
]
