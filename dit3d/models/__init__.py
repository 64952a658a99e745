"""LightningModules: tokenizer + trunk + objective, one file per system."""
from dit3d.models.adit_autoencoder import ADiTAutoencoderModule
from dit3d.models.adit_latent import ADiTLatentModule
from dit3d.models.dit3d_module import DiT3DModule
from dit3d.models.dit3d_net import DIT3D_PRESETS, PAPER_WINDOW_BLOCKS, DiT3D, build_dit3d
from dit3d.models.dit3d_sampling import sample_point_clouds
from dit3d.models.ema import ema_copy, ema_decay, update_ema_
from dit3d.models.image_dit import IMAGE_DIT_PRESETS, ImageDiT, build_image_dit
from dit3d.models.image_dit_module import ImageDiTModule
from dit3d.models.image_dit_sampling import sample_images
from dit3d.models.video_dit import VideoDiT
from dit3d.models.video_dit_module import VideoDiTModule
from dit3d.models.video_dit_sampling import sample_videos
from dit3d.models.video_masks import VIDEO_TASKS, sample_task_masks, task_mask

__all__ = ["ADiTAutoencoderModule", "ADiTLatentModule", "DIT3D_PRESETS", "DiT3D", "DiT3DModule",
           "IMAGE_DIT_PRESETS", "ImageDiT", "ImageDiTModule", "PAPER_WINDOW_BLOCKS", "build_dit3d",
           "VIDEO_TASKS", "VideoDiT", "VideoDiTModule", "build_image_dit", "ema_copy", "ema_decay", "sample_images",
           "sample_point_clouds", "sample_task_masks", "sample_videos", "task_mask", "update_ema_"]
