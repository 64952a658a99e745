"""Tokenizers: domain data <-> tokens for the shared trunk."""
from dit3d.tokenizers.atoms import (CRYSTAL, LATTICE_MEAN, LATTICE_STD, MASK_TOKEN, MAX_Z, MOLECULE, AtomAutoencoder,
                                    Atoms, lattice_features, lattice_from_features)
from dit3d.tokenizers.patches import PatchTokenizer2D, patchify_2d, patchify_grid, unpatchify_2d, unpatchify_grid
from dit3d.tokenizers.voxels import VoxelTokenizer, devoxelize, patchify, unpatchify, voxel_coords, voxelize

__all__ = ["AtomAutoencoder", "Atoms", "CRYSTAL", "LATTICE_MEAN", "LATTICE_STD", "MASK_TOKEN", "MAX_Z", "MOLECULE",
           "PatchTokenizer2D", "VoxelTokenizer", "devoxelize", "lattice_features", "lattice_from_features",
           "patchify", "patchify_2d", "patchify_grid", "unpatchify", "unpatchify_2d", "unpatchify_grid",
           "voxel_coords", "voxelize"]
