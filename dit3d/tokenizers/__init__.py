"""Tokenizers: domain data <-> tokens for the shared trunk."""
from dit3d.tokenizers.atoms import MASK_TOKEN, MAX_Z, AtomAutoencoder, Atoms

__all__ = ["AtomAutoencoder", "Atoms", "MASK_TOKEN", "MAX_Z"]
