"""Tokenizers: domain data <-> tokens for the shared trunk."""
from dit3d.tokenizers.atoms import CRYSTAL, MASK_TOKEN, MAX_Z, MOLECULE, AtomAutoencoder, Atoms

__all__ = ["AtomAutoencoder", "Atoms", "CRYSTAL", "MASK_TOKEN", "MAX_Z", "MOLECULE"]
