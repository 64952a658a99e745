"""dit3d: Diffusion Transformers for 3D and molecular generation."""
__version__ = "0.1.0"
