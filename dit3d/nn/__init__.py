"""The shared DiT trunk: blocks, attention, conditioning, positional embeddings, presets.

Imports torch only; knows nothing of molecules, voxels or pixels.
"""
from dit3d.nn.attention import Attention, key_padding_to_attn_mask
from dit3d.nn.blocks import DiTBlock, FactorisedDiTBlock, FinalLayer, Mlp, modulate
from dit3d.nn.compiled import compile_for_sampling, compile_for_training, is_compiled
from dit3d.nn.dit import DiT
from dit3d.nn.conditioning import LabelEmbedder, TimestepEmbedder, timestep_embedding
from dit3d.nn.init import initialize_weights
from dit3d.nn.modes import eval_mode, frozen_copy
from dit3d.nn.norms import make_norm
from dit3d.nn.pos_embed import sincos_1d, sincos_2d, sincos_3d, sincos_grid
from dit3d.nn.step_cache import BranchCache, branch_caching
from dit3d.nn.presets import PRESETS, build_trunk, preset_config
from dit3d.nn.quantize import Int8Linear, quantize_int8
from dit3d.nn.trunk import DiTTrunk
from dit3d.nn.window import axes_window, window_attention_mask, window_ids, window_partition, window_reverse

__all__ = [
    "Attention", "BranchCache", "DiT", "DiTBlock", "DiTTrunk", "FactorisedDiTBlock", "FinalLayer", "Int8Linear",
    "LabelEmbedder", "Mlp", "PRESETS", "TimestepEmbedder", "axes_window", "branch_caching", "build_trunk",
    "compile_for_sampling", "compile_for_training", "eval_mode", "frozen_copy", "initialize_weights", "is_compiled",
    "key_padding_to_attn_mask",
    "make_norm", "modulate", "preset_config", "quantize_int8",
    "sincos_1d", "sincos_2d", "sincos_3d", "sincos_grid", "timestep_embedding", "window_attention_mask",
    "window_ids", "window_partition", "window_reverse",
]
