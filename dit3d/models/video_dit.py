r"""The video DiT with VDT's mask modelling (Lu et al. 2023, arXiv 2305.13311) on the shared trunk.

.. math::
    \hat\epsilon(\tilde x_t, t, m) = \mathrm{Untubelet}\Big(\mathrm{DiT}\big(
        [\mathrm{Tubelet}(\tilde x_t) \,\|\, m]\, W_{in} + P_{3D},\ t\big)\Big)

``Tubelet`` cuts a ``(B, C, F, H, W)`` clip into :math:`T = F' H' W'` tokens of
:math:`p_t p^2 C` pixels (:mod:`dit3d.tokenizers.tubelets`), :math:`P_{3D}` is the fixed
sin-cos table of the token positions ``(t, h, w)`` (:func:`dit3d.nn.sincos_3d`), and
:math:`m \in \{0, 1\}^T` flags the tokens given clean (VDT's conditioning frames or
regions; :mod:`dit3d.objectives.known` puts the clean values into
:math:`\tilde x_t`). Appending :math:`m` as one more input feature makes
:math:`W_{in}` add a learned vector :math:`w_m` to every given token: a learned
"given / generated" embedding. The trunk's blocks use, per block, factorised attention
(within each frame over ``(h, w)``, then across time slots at each ``(h, w)``; VDT's
layout) or joint space-time attention over all :math:`T` tokens; see
:class:`~dit3d.nn.blocks.FactorisedDiTBlock`. Besides the given part of the clip, the
network is optionally conditioned on a class label :math:`y` (``num_classes >= 1``; e.g. the
digit of a moving-digits clip), added to the time embedding as in DiT, with row
``num_classes`` of the label table the null class. Training drops labels to the null class
with probability ``class_dropout`` so that sampling can use classifier-free guidance (Ho &
Salimans 2022, :func:`~dit3d.models.video_dit_sampling.sample_videos`). With
``num_classes = 0`` (the default) it is unconditional in class labels.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from dit3d.models.tokenized_dit import TokenizedDiT
from dit3d.nn import preset_config, sincos_3d
from dit3d.tokenizers.tubelets import TubeletTokenizer

__all__ = ["ATTENTION_LAYOUTS", "VideoDiT", "factorised_blocks"]

ATTENTION_LAYOUTS = ("factorised", "joint")


def factorised_blocks(attention: str | Sequence[str], depth: int) -> tuple[int, ...]:
    """Indices of the factorised blocks for one layout for all blocks, or one per block.

    Example:
        >>> factorised_blocks("factorised", 3), factorised_blocks(["joint", "factorised"], 2)
        ((0, 1, 2), (1,))
    """
    layouts = [attention] * depth if isinstance(attention, str) else list(attention)
    if len(layouts) != depth or any(a not in ATTENTION_LAYOUTS for a in layouts):
        raise ValueError(f"attention must be one of {ATTENTION_LAYOUTS} or a list of them, one per block "
                         f"({depth} blocks), got {attention!r}")
    return tuple(i for i, a in enumerate(layouts) if a == "factorised")


class VideoDiT(TokenizedDiT):
    """Video noise predictor: :class:`~dit3d.tokenizers.tubelets.TubeletTokenizer` around a
    :class:`~dit3d.nn.DiT` (see the module doc), for clips of one size.

    Args:
        trunk: trunk preset (``"DiT-Mini"``, ``"DiT-S"``...); ``depth``, ``hidden_size``,
            ``num_heads`` override it. The width must divide by 6 (3-D sin-cos positions).
        patch_size: spatial patch ``p`` (or ``(p_h, p_w)``), dividing the frame size.
        time_patch: frames per tubelet ``p_t``, dividing ``num_frames``.
        num_frames: ``F``.
        image_size: ``H`` (square) or ``(H, W)``.
        in_channels: ``C``.
        attention: ``"factorised"`` (VDT), ``"joint"``, or a list with one per block.
        factorised_axes: axis groups of the factorised blocks on the ``(F', H', W')`` grid
            (default: space, then time).
        num_classes: class labels (0: unconditional, the default); row ``num_classes`` of the
            label table is the null class (:attr:`null_class`).
        class_dropout: label dropout rate for classifier-free guidance (:meth:`drop_labels`);
            used only when ``num_classes >= 1``.
        **trunk_kwargs: passed to :class:`~dit3d.nn.DiTTrunk` (``mlp_ratio``, ``qk_norm``...).

    Shapes:
        x: ``(B, C, F, H, W)`` noisy clip (given tokens already clean); t: ``(B,)`` long;
        given: ``(B, T)`` bool or ``None`` (nothing given); y: ``(B,)`` long in
        ``0..num_classes`` or ``None`` (the null class; must be ``None`` when unconditional)
        -> ``(B, C, F, H, W)``

    Example:
        >>> net = VideoDiT("DiT-Mini", patch_size=8, num_frames=4, image_size=16, depth=1)
        >>> x, given = torch.randn(2, 1, 4, 16, 16), torch.zeros(2, 16, dtype=torch.bool)
        >>> net(x, torch.tensor([3, 999]), given).shape
        torch.Size([2, 1, 4, 16, 16])
        >>> cond = VideoDiT("DiT-Mini", patch_size=8, num_frames=4, image_size=16, depth=1, num_classes=10)
        >>> cond(x, torch.tensor([3, 999]), given, y=torch.tensor([3, cond.null_class])).shape
        torch.Size([2, 1, 4, 16, 16])
    """

    def __init__(self, trunk: str = "DiT-Mini", patch_size: int | Sequence[int] = 4, time_patch: int = 1,
                 num_frames: int = 8, image_size: int | Sequence[int] = 32, in_channels: int = 1,
                 attention: str | Sequence[str] = "factorised",
                 factorised_axes: Sequence[Sequence[int]] = ((1, 2), (0,)), depth: int | None = None,
                 hidden_size: int | None = None, num_heads: int | None = None, num_classes: int = 0,
                 class_dropout: float = 0.1, **trunk_kwargs: Any) -> None:
        super().__init__()
        for key in ("window_blocks", "learn_sigma"):
            if trunk_kwargs.pop(key, None):
                raise ValueError(f"VideoDiT does not take {key}: it attends jointly or factorised and predicts "
                                 "one output per pixel (epsilon, x0 or v) only")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0 (0: unconditional), got {num_classes!r}")
        if not 0.0 <= float(class_dropout) <= 1.0:
            raise ValueError(f"class_dropout must lie in [0, 1], got {class_dropout!r}")
        self.tokenizer = TubeletTokenizer(num_frames, image_size, patch_size, time_patch, in_channels)
        n_blocks = depth or preset_config(trunk)["depth"]
        attention = attention if isinstance(attention, str) else [str(a) for a in attention]
        fact = factorised_blocks(attention, n_blocks)
        axes = [[int(a) for a in group] for group in factorised_axes]
        #: constructor arguments (JSON-ready), stored with the weights by generators
        self.config = dict(trunk=trunk, patch_size=list(self.tokenizer.patch_size),
                           time_patch=self.tokenizer.time_patch, num_frames=self.tokenizer.num_frames,
                           image_size=list(self.tokenizer.image_size), in_channels=in_channels, attention=attention,
                           factorised_axes=axes, depth=depth, hidden_size=hidden_size, num_heads=num_heads,
                           **trunk_kwargs)
        if num_classes > 0:  # only then: the configs of unconditional networks stay as they were
            self.config.update(num_classes=num_classes, class_dropout=float(class_dropout))
        self.dit = self.build_dit(self.tokenizer.token_dim, self.tokenizer.grid_size, sincos_3d, trunk, num_classes,
                                  float(class_dropout) if num_classes > 0 else 0.0, (), (), depth, hidden_size,
                                  num_heads, extra_inputs=1, factorised_blocks=fact, factorised_axes=axes,
                                  **trunk_kwargs)

    @property
    def video_shape(self) -> tuple[int, int, int, int]:
        """``(C, F, H, W)`` of the clips this network takes and returns."""
        return self.tokenizer.video_shape

    def forward(self, x: Tensor, t: Tensor, given: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        tokens = self.tokenizer.encode(x)  # (B, T, p_t p^2 C)
        B, T, _ = tokens.shape
        if given is None:
            given = torch.zeros(B, T, dtype=torch.bool, device=x.device)
        elif given.shape != (B, T) or given.dtype != torch.bool:
            raise ValueError(f"given must be a bool mask of shape (B, T) = {(B, T)}, one flag per token (True = "
                             f"given clean), got {given.dtype} {tuple(given.shape)}")
        if y is not None:
            if self.null_class is None:
                raise ValueError("labels given to an unconditional VideoDiT (num_classes=0); leave y=None, or build "
                                 "it with num_classes >= 1 to condition on class labels")
            if y.shape != (B,):
                raise ValueError(f"y must be labels of shape (B,) = ({B},), got {tuple(y.shape)}")
        flag = given[..., None].to(tokens.dtype)  # (B, T, 1)
        out = self.dit(torch.cat([tokens, flag], dim=-1), t, y=y, grid=self.tokenizer.grid_size)  # (B, T, p_t p^2 C)
        return self.tokenizer.decode(out)  # (B, C, F, H, W)
