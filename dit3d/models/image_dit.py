r"""The class-conditional image DiT (Peebles & Xie 2023, arXiv 2212.09748) and its named sizes.

.. math::
    \hat\epsilon(x_t, t, y) = \mathrm{Unpatchify}\Big(\mathrm{DiT}\big(
        \mathrm{Patchify}(x_t)\, W_{in} + P_{2D},\ t,\ y\big)\Big)

``Patchify`` cuts a ``(B, C, H, W)`` image into ``(H/p)(W/p)`` tokens of ``p^2 C``
pixels (:mod:`dit3d.tokenizers.patches`; with :math:`W_{in}` this is the paper's
``Conv2d`` patch embedding, kernel = stride = ``p``), :math:`P_{2D}` is the fixed 2-D
sin-cos table (:func:`dit3d.nn.sincos_2d`: half the width encodes the row, half the
column), ``DiT`` the shared adaLN-Zero trunk conditioned on
:math:`c = \mathrm{TimeEmb}(t) + \mathrm{LabelEmb}(y)`, and its final layer's ``p^2 C``
outputs per token are reassembled into an image of noise predictions.

Learned variances (the paper's ``learn_sigma``, a second ``C`` output channels trained
with the hybrid :math:`L_{simple} + \lambda L_{vlb}` loss of Nichol & Dhariwal 2021) are
**not supported**: :class:`~dit3d.objectives.GaussianDiffusion` samples with the fixed
posterior variance :math:`\tilde\beta_t` and has no variational-bound term, so the
network predicts :math:`\epsilon` only (``C`` output channels).

Attention is global in every block by default (as DiT); the trunk's 2-D window
attention is available through ``window_size=(w_h, w_w)`` and ``window_blocks``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch  # used by the doctests
from torch import Tensor

from dit3d.nn import sincos_2d
from dit3d.models.tokenized_dit import TokenizedDiT
from dit3d.nn.presets import lookup_preset
from dit3d.tokenizers.patches import PatchTokenizer2D

_TRUNKS = {"Mini": "DiT-Mini", "Ti": "DiT-Ti", "S": "DiT-S", "B": "DiT-B", "L": "DiT-L", "XL": "DiT-XL"}

#: ``"DiT-Img-S/2"`` -> :class:`ImageDiT` arguments: trunk preset and patch size. S, B,
#: L and XL with patches 2, 4, 8 are the paper's DiT-S/2 ... DiT-XL/8 (Table 1); ``Mini``
#: (4 blocks, 96 wide) and ``Ti`` (12 blocks, 192 wide) are for CPUs and tests. Every
#: width divides by 4, as the 2-D sin-cos table needs.
IMAGE_DIT_PRESETS: dict[str, dict[str, Any]] = {
    f"DiT-Img-{size}/{p}": dict(trunk=trunk, patch_size=p) for size, trunk in _TRUNKS.items() for p in (2, 4, 8)
}


class ImageDiT(TokenizedDiT):
    """Image noise predictor: :class:`~dit3d.tokenizers.patches.PatchTokenizer2D` around a
    :class:`~dit3d.nn.DiT`, for images of one size.

    Args:
        trunk: trunk preset of :mod:`dit3d.nn.presets` (``"DiT-S"``...); ``depth``,
            ``hidden_size``, ``num_heads`` override it. The width must divide by 4.
        patch_size: patch edge ``p`` (or ``(p_h, p_w)``); must divide the image size.
        image_size: ``H`` (square) or ``(H, W)``; the positional table is built for it.
        in_channels: image channels ``C`` (1 for grey digits, 3 for RGB).
        num_classes: classes (row ``num_classes`` is the null label); 0 makes an
            unconditional model without guidance.
        class_dropout: label dropout rate for classifier-free guidance.
        window_size: 2-D window in tokens for the blocks in ``window_blocks``.
        window_blocks: blocks with window attention; ``()`` (default) is global attention.
        **trunk_kwargs: passed to :class:`~dit3d.nn.DiTTrunk` (``mlp_ratio``, ``qk_norm``...).

    Shapes:
        x: ``(B, C, H, W)`` noisy images; t: ``(B,)`` long DDPM steps; y: ``(B,)`` long
        -> ``(B, C, H, W)`` noise prediction

    Example:
        >>> net = build_image_dit("DiT-Img-Mini/2", image_size=16, in_channels=1)
        >>> net(torch.randn(2, 1, 16, 16), torch.tensor([3, 999]), torch.tensor([0, 9])).shape
        torch.Size([2, 1, 16, 16])
    """

    def __init__(self, trunk: str = "DiT-S", patch_size: int | Sequence[int] = 2, image_size: int | Sequence[int] = 32,
                 in_channels: int = 3, num_classes: int = 10, class_dropout: float = 0.1,
                 window_size: Sequence[int] = (4, 4), window_blocks: Sequence[int] = (), depth: int | None = None,
                 hidden_size: int | None = None, num_heads: int | None = None, **trunk_kwargs: Any) -> None:
        super().__init__()
        if trunk_kwargs.pop("learn_sigma", False):
            raise ValueError("learned variances (DiT's learn_sigma) are not supported: GaussianDiffusion samples with "
                             "the fixed posterior variance and has no variational-bound loss; drop learn_sigma")
        self.tokenizer = PatchTokenizer2D(image_size, patch_size, in_channels)
        #: constructor arguments (JSON-ready), stored with the weights by generators
        self.config = dict(trunk=trunk, patch_size=list(self.tokenizer.patch_size),
                           image_size=list(self.tokenizer.image_size), in_channels=in_channels,
                           num_classes=num_classes, class_dropout=class_dropout, window_size=list(window_size),
                           window_blocks=list(window_blocks), depth=depth, hidden_size=hidden_size,
                           num_heads=num_heads, **trunk_kwargs)
        self.dit = self.build_dit(self.tokenizer.token_dim, self.tokenizer.grid_size, sincos_2d, trunk, num_classes,
                                  class_dropout, window_size, window_blocks, depth, hidden_size, num_heads,
                                  **trunk_kwargs)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images this network takes and returns."""
        return (self.tokenizer.channels, *self.tokenizer.image_size)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        tokens = self.tokenizer.encode(x)  # (B, T, p^2 C)
        out = self.dit(tokens, t, y, grid=self.tokenizer.grid_size)  # (B, T, p^2 C)
        return self.tokenizer.decode(out)  # (B, C, H, W)


def image_dit_preset(name: str) -> dict[str, Any]:
    """Arguments of a named image-DiT size; unknown names raise with the closest matches."""
    return lookup_preset(IMAGE_DIT_PRESETS, name, "image DiT")


def build_image_dit(name: str, **overrides: Any) -> ImageDiT:
    """Build an :class:`ImageDiT` by preset name (``"DiT-Img-S/2"``), overriding any argument.

    Example:
        >>> build_image_dit("DiT-Img-Mini/4", image_size=32).tokenizer.grid_size
        (8, 8)
    """
    return ImageDiT(**{**image_dit_preset(name), **overrides})
