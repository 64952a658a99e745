"""Hand-written CIFs shared by the crystal tests (no data files needed)."""

# Rock salt (conventional cell, expanded by the space group) and simple cubic polonium, by hand.
NACL_CIF = """data_NaCl
_cell_length_a 5.64
_cell_length_b 5.64
_cell_length_c 5.64
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'F m -3 m'
_symmetry_Int_Tables_number 225
loop_
_atom_site_type_symbol
_atom_site_label
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Na Na1 0 0 0 1
Cl Cl1 0.5 0.5 0.5 1
"""
PO_CIF = """data_Po
_cell_length_a 3.359
_cell_length_b 3.359
_cell_length_c 3.359
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
loop_
_symmetry_equiv_pos_as_xyz
'x, y, z'
loop_
_atom_site_type_symbol
_atom_site_label
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Po Po1 1.0 -0.0 0.0 1
"""
