"""Tokenizers: domain data <-> tokens for the shared trunk."""
from dit3d.tokenizers.atoms import CRYSTAL, MASK_TOKEN, MAX_Z, MOLECULE, AtomAutoencoder, Atoms
from dit3d.tokenizers.voxels import VoxelTokenizer, devoxelize, patchify, unpatchify, voxel_coords, voxelize

__all__ = ["AtomAutoencoder", "Atoms", "CRYSTAL", "MASK_TOKEN", "MAX_Z", "MOLECULE", "VoxelTokenizer", "devoxelize",
           "patchify", "unpatchify", "voxel_coords", "voxelize"]
