"""Tokenizers: domain data <-> tokens for the shared trunk."""
from dit3d.tokenizers.atoms import (CRYSTAL, LATTICE_MEAN, LATTICE_STD, MASK_TOKEN, MAX_Z, MOLECULE, AtomAutoencoder,
                                    Atoms, lattice_features, lattice_from_features)
from dit3d.tokenizers.patches import PatchTokenizer2D, patchify_2d, patchify_grid, unpatchify_2d, unpatchify_grid
from dit3d.tokenizers.tubelets import TubeletTokenizer, patchify_video, unpatchify_video
from dit3d.tokenizers.voxels import VoxelTokenizer, devoxelize, patchify, unpatchify, voxel_coords, voxelize

__all__ = ["AtomAutoencoder", "Atoms", "CRYSTAL", "LATTICE_MEAN", "LATTICE_STD", "MASK_TOKEN", "MAX_Z", "MOLECULE",
           "PatchTokenizer2D", "TubeletTokenizer", "VoxelTokenizer", "devoxelize", "lattice_features",
           "lattice_from_features", "patchify", "patchify_2d", "patchify_grid", "patchify_video", "unpatchify",
           "unpatchify_2d", "unpatchify_grid", "unpatchify_video", "voxel_coords", "voxelize"]
