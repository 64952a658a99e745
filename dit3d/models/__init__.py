"""LightningModules: tokenizer + trunk + objective, one file per system."""
from dit3d.models.adit_autoencoder import ADiTAutoencoderModule
from dit3d.models.adit_latent import ADiTLatentModule
from dit3d.models.dit3d_module import DiT3DModule
from dit3d.models.dit3d_net import DIT3D_PRESETS, PAPER_WINDOW_BLOCKS, DiT3D, build_dit3d
from dit3d.models.dit3d_sampling import sample_point_clouds

__all__ = ["ADiTAutoencoderModule", "ADiTLatentModule", "DIT3D_PRESETS", "DiT3D", "DiT3DModule",
           "PAPER_WINDOW_BLOCKS", "build_dit3d", "sample_point_clouds"]
