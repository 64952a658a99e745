r"""The DiT-3D denoiser (Mo et al. 2023, arXiv 2307.01831) and its named sizes.

.. math::
    \hat\epsilon(x_t, t, y) = \mathrm{Devox}\Big(\mathrm{Unpatchify}\big(
        \mathrm{DiT}(\mathrm{Patchify}(\mathrm{Vox}(x_t)) W_{in} + P_{3D},\ t,\ y)\big),\ s(x_t)\Big)

``Vox`` averages the noisy coordinates into an ``r^3`` grid, ``Patchify`` cuts it into
``(r/p)^3`` tokens of ``3 p^3`` features (with :math:`W_{in}` this is the paper's Conv3d
patch embedding, kernel = stride = ``p``), :math:`P_{3D}` is the fixed 3-D sin-cos table,
``DiT`` the shared adaLN-Zero trunk conditioned on time and label, and the final layer's
``3 p^3`` outputs per token are reassembled into a grid and trilinearly interpolated at
each point's voxel coordinates ``s``, giving one noise estimate per point.

Attention: global in every block by default, which is what the released DiT-3D code
runs and what every published number comes from (its window path mixes tokens across
samples and is never enabled). The paper's 3-D window attention, 4x4x4-token windows in
blocks 0, 3, 6 and 9, is ``window_blocks=(0, 3, 6, 9)`` (``window_size=(4, 4, 4)``, the
default): the trunk's window attention partitions each sample's token grid separately,
so samples never mix.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch  # used by the doctests
from torch import Tensor

from dit3d.nn import sincos_3d
from dit3d.models.tokenized_dit import TokenizedDiT
from dit3d.nn.presets import lookup_preset
from dit3d.tokenizers.voxels import VoxelTokenizer

#: the paper's window layout (blocks with 3-D window attention) for 12-block models
PAPER_WINDOW_BLOCKS: tuple[int, ...] = (0, 3, 6, 9)

_TRUNKS = {"Mini": "DiT-Mini", "S": "DiT-S", "B": "DiT-B", "L": "DiT-L-3D", "XL": "DiT-XL"}

#: ``"DiT-3D-S/4"`` -> :class:`DiT3D` arguments: trunk preset (L and XL are 1152 wide so
#: the 3-D sin-cos table divides by 6) and patch size; ``Mini`` (4 blocks, 96 wide) is
#: for CPUs and tests.
DIT3D_PRESETS: dict[str, dict[str, Any]] = {
    f"DiT-3D-{size}/{p}": dict(trunk=trunk, patch_size=p) for size, trunk in _TRUNKS.items() for p in (2, 4, 8)
}


class DiT3D(TokenizedDiT):
    """Point-cloud noise predictor: :class:`VoxelTokenizer` around a :class:`~dit3d.nn.DiT`.

    Args:
        trunk: trunk preset of :mod:`dit3d.nn.presets` (``"DiT-S"``...); ``depth``,
            ``hidden_size``, ``num_heads`` override it. The width must divide by 6.
        patch_size: patch edge ``p`` in voxels (2, 4 or 8); ``(r/p)^3`` tokens.
        resolution: voxels per axis ``r``.
        num_classes: shape categories (row ``num_classes`` is the null label); 0 makes an
            unconditional model without guidance.
        class_dropout: label dropout rate for classifier-free guidance.
        window_size: 3-D window in tokens for the blocks in ``window_blocks``.
        window_blocks: blocks with window attention; ``()`` (default) is global attention
            everywhere, as the released code; :data:`PAPER_WINDOW_BLOCKS` the paper's layout.
        **trunk_kwargs: passed to :class:`~dit3d.nn.DiTTrunk` (``mlp_ratio``, ``qk_norm``...).

    Shapes:
        x: ``(B, N, 3)`` noisy points; t: ``(B,)`` long DDPM steps; y: ``(B,)`` long
        -> ``(B, N, 3)``

    Example:
        >>> net = build_dit3d("DiT-3D-Mini/4", resolution=16)
        >>> net(torch.randn(2, 50, 3), torch.tensor([3, 999]), torch.tensor([0, 1])).shape
        torch.Size([2, 50, 3])
    """

    def __init__(self, trunk: str = "DiT-S", patch_size: int = 4, resolution: int = 32, num_classes: int = 1,
                 class_dropout: float = 0.1, window_size: Sequence[int] = (4, 4, 4),
                 window_blocks: Sequence[int] = (), depth: int | None = None, hidden_size: int | None = None,
                 num_heads: int | None = None, **trunk_kwargs: Any) -> None:
        super().__init__()
        #: constructor arguments, stored with the weights by generators
        self.config = dict(trunk=trunk, patch_size=patch_size, resolution=resolution, num_classes=num_classes,
                           class_dropout=class_dropout, window_size=tuple(window_size),
                           window_blocks=tuple(window_blocks), depth=depth, hidden_size=hidden_size,
                           num_heads=num_heads, **trunk_kwargs)
        self.tokenizer = VoxelTokenizer(resolution, patch_size)
        self.dit = self.build_dit(self.tokenizer.token_dim, self.tokenizer.grid_size, sincos_3d, trunk, num_classes,
                                  class_dropout, window_size, window_blocks, depth, hidden_size, num_heads,
                                  **trunk_kwargs)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        tokens, coords = self.tokenizer.encode(x)  # (B, T, 3p^3), (B, N, 3)
        out = self.dit(tokens, t, y, grid=self.tokenizer.grid_size)  # (B, T, 3p^3)
        return self.tokenizer.decode(out, coords)  # (B, N, 3)


def dit3d_preset(name: str) -> dict[str, Any]:
    """Arguments of a named DiT-3D size; unknown names raise with the closest matches."""
    return lookup_preset(DIT3D_PRESETS, name, "DiT-3D")


def build_dit3d(name: str, **overrides: Any) -> DiT3D:
    """Build a :class:`DiT3D` by preset name (``"DiT-3D-S/4"``), overriding any argument.

    Example:
        >>> build_dit3d("DiT-3D-Mini/8", resolution=16).tokenizer.grid_size
        (2, 2, 2)
    """
    return DiT3D(**{**dit3d_preset(name), **overrides})
