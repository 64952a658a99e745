"""LightningModules: tokenizer + trunk + objective, one file per system."""
from dit3d.models.adit_autoencoder import ADiTAutoencoderModule
from dit3d.models.adit_latent import ADiTLatentModule

__all__ = ["ADiTAutoencoderModule", "ADiTLatentModule"]
