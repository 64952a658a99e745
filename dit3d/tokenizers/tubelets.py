r"""Tubelet tokenizer for video: ``(B, C, F, H, W)`` clips <-> spatio-temporal tokens.

A clip of ``F`` frames of ``H x W`` pixels and ``C`` channels is cut into
non-overlapping tubelets of :math:`p_t \times p \times p` cells (ViViT's "tubelet
embedding", Arnab et al. 2021; :math:`p_t = 1` is frame-by-frame patches, as VDT,
Lu et al. 2023), one token each:

.. math::
    \mathrm{tok}[b, k, (q_t, q_h, q_w, c)] = x[b, c,\ f p_t + q_t,\ i p + q_h,\ j p + q_w],
    \qquad k = \mathrm{rowmajor}(f, i, j),

on the token grid :math:`(F', H', W') = (F / p_t, H / p, W / p)`, so there are
:math:`T = F' H' W'` tokens of :math:`p_t p^2 C` features, ordered time-major: all tokens
of the first time slot (row-major over ``(i, j)``), then the next. This is
:func:`~dit3d.tokenizers.patches.patchify_grid` on the three axes ``(F, H, W)``; the
positions are the fixed 3-D sin-cos table of that grid (:func:`dit3d.nn.sincos_3d`: a
third of the width encodes the time slot ``f``, a third the row ``i``, a third the column
``j``), and the trunk's factorised attention uses the same grid (attention within each
time slot over axes ``(1, 2)``, then along axis 0). The round trip is exact.

Conditioning masks (VDT's spatial-temporal mask modelling) live on the token grid: a
``(B, T)`` bool, ``True`` = the token is *given* (clean), ``False`` = generated.
:meth:`TubeletTokenizer.frames_to_tokens` turns a per-frame mask into one and
:meth:`TubeletTokenizer.tokens_to_video` spreads one over the pixels it covers.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dit3d.nn.pos_embed import sincos_3d
from dit3d.tokenizers.patches import _as_tuple, patchify_grid, unpatchify_grid

__all__ = ["TubeletTokenizer", "patchify_video", "unpatchify_video"]


def patchify_video(video: Tensor, patch_size: int | Sequence[int], time_patch: int = 1) -> Tensor:
    """Cut channels-first clips into tubelets of ``time_patch`` frames x ``p_h x p_w`` pixels.

    Args:
        video: ``(B, C, F, H, W)``.
        patch_size: ``p`` or ``(p_h, p_w)``, dividing ``H`` and ``W``.
        time_patch: frames per tubelet ``p_t``, dividing ``F``.

    Shapes:
        video: ``(B, C, F, H, W)`` -> ``(B, (F/p_t)(H/p_h)(W/p_w), p_t p_h p_w C)``

    Example:
        >>> x = torch.arange(16.0).reshape(1, 1, 4, 2, 2)        # 4 frames of 2x2
        >>> patchify_video(x, 2, time_patch=2)[0]                # 2 tokens of 2 frames each
        tensor([[ 0.,  1.,  2.,  3.,  4.,  5.,  6.,  7.],
                [ 8.,  9., 10., 11., 12., 13., 14., 15.]])
    """
    if video.dim() != 5:
        raise ValueError(f"video must be channels-first (B, C, F, H, W), got {tuple(video.shape)}; "
                         "add a channel axis with x[:, None] for grey clips")
    p = _as_tuple(patch_size, 2, "patch_size")
    return patchify_grid(video, (int(time_patch), *p))  # (B, T, p_t p_h p_w C)


def unpatchify_video(tokens: Tensor, grid_size: Sequence[int], patch_size: int | Sequence[int], time_patch: int,
                     channels: int) -> Tensor:
    """Inverse of :func:`patchify_video`.

    Args:
        tokens: tubelet tokens, time-major then row-major over the token grid.
        grid_size: ``(F/p_t, H/p_h, W/p_w)`` tokens per axis.
        patch_size: ``p`` or ``(p_h, p_w)``.
        time_patch: ``p_t``.
        channels: ``C``.

    Shapes:
        tokens: ``(B, F' H' W', p_t p_h p_w C)`` -> ``(B, C, F' p_t, H' p_h, W' p_w)``
    """
    if len(grid_size) != 3:
        raise ValueError(f"grid_size must be (time slots, rows, columns) of tokens, got {tuple(grid_size)}")
    p = _as_tuple(patch_size, 2, "patch_size")
    return unpatchify_grid(tokens, grid_size, (int(time_patch), *p), channels)  # (B, C, F, H, W)


class TubeletTokenizer(nn.Module):
    """Clips of one size <-> tubelet tokens on an ``(F', H', W')`` grid; no parameters.

    Args:
        num_frames: ``F``.
        image_size: ``H`` (square) or ``(H, W)``.
        patch_size: ``p`` or ``(p_h, p_w)``; must divide ``H`` and ``W``.
        time_patch: frames per tubelet ``p_t``; must divide ``F`` (1: per-frame patches).
        channels: ``C``.

    Shapes:
        encode: ``(B, C, F, H, W)`` -> ``(B, T, p_t p_h p_w C)`` with ``T = F' H' W'``;
        decode: the inverse.

    Example:
        >>> tok = TubeletTokenizer(16, 32, 4, time_patch=2, channels=1)
        >>> tok.grid_size, tok.num_tokens, tok.token_dim
        ((8, 8, 8), 512, 32)
        >>> tok.encode(torch.randn(2, 1, 16, 32, 32)).shape
        torch.Size([2, 512, 32])
    """

    def __init__(self, num_frames: int, image_size: int | Sequence[int], patch_size: int | Sequence[int] = 4,
                 time_patch: int = 1, channels: int = 1) -> None:
        super().__init__()
        self.num_frames = _as_tuple(num_frames, 1, "num_frames")[0]
        self.image_size = _as_tuple(image_size, 2, "image_size")
        self.patch_size = _as_tuple(patch_size, 2, "patch_size")
        self.time_patch = _as_tuple(time_patch, 1, "time_patch")[0]
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.channels = channels
        if any(s % p for s, p in zip(self.image_size, self.patch_size)):
            raise ValueError(f"patch_size {self.patch_size} must divide image_size {self.image_size} on both axes; "
                             "e.g. a 32x32 frame takes patches of 1, 2, 4, 8, 16 or 32")
        if self.num_frames % self.time_patch:
            raise ValueError(f"time_patch {self.time_patch} must divide num_frames {self.num_frames}; "
                             "pick a clip length that is a multiple of it")

    @property
    def video_shape(self) -> tuple[int, int, int, int]:
        """``(C, F, H, W)`` of the clips this tokenizer takes."""
        return (self.channels, self.num_frames, *self.image_size)

    @property
    def grid_size(self) -> tuple[int, int, int]:
        """Tokens per axis ``(F/p_t, H/p_h, W/p_w)``."""
        return (self.num_frames // self.time_patch, self.image_size[0] // self.patch_size[0],
                self.image_size[1] // self.patch_size[1])

    @property
    def num_tokens(self) -> int:
        """``T = F' H' W'``."""
        f, h, w = self.grid_size
        return f * h * w

    @property
    def token_dim(self) -> int:
        """Features per token, ``p_t p_h p_w C``."""
        return self.time_patch * self.patch_size[0] * self.patch_size[1] * self.channels

    def encode(self, video: Tensor) -> Tensor:
        expected = self.video_shape
        if video.dim() != 5 or tuple(video.shape[1:]) != expected:
            raise ValueError(f"video must have shape (B, {', '.join(map(str, expected))}) = (B, C, F, H, W) for this "
                             f"tokenizer, got {tuple(video.shape)}; build the model for the clips you feed it")
        return patchify_video(video, self.patch_size, self.time_patch)  # (B, T, p_t p^2 C)

    def decode(self, tokens: Tensor) -> Tensor:
        return unpatchify_video(tokens, self.grid_size, self.patch_size, self.time_patch, self.channels)

    def pos_embed(self, dim: int) -> Tensor:
        """Fixed ``(T, dim)`` sin-cos table of the token positions ``(t, h, w)``
        (:func:`dit3d.nn.sincos_3d`); ``dim`` must divide by 6."""
        return sincos_3d(self.grid_size, dim)

    def frames_to_tokens(self, frames: Tensor) -> Tensor:
        """Per-frame conditioning mask -> per-token mask: a token is given iff its frames are.

        Every tubelet must lie wholly inside given or wholly inside generated frames (with
        ``time_patch > 1``, given frames come in aligned runs of ``p_t``).

        Shapes:
            frames: ``(B, F)`` or ``(F,)`` bool -> ``(B, T)`` (``(1, T)`` for ``(F,)``) bool
        """
        frames = frames[None] if frames.dim() == 1 else frames
        if frames.dim() != 2 or frames.shape[1] != self.num_frames or frames.dtype != torch.bool:
            raise ValueError(f"frames must be a bool mask of shape (B, {self.num_frames}) (True = given), "
                             f"got {frames.dtype} {tuple(frames.shape)}")
        slots = frames.reshape(frames.shape[0], -1, self.time_patch)  # (B, F', p_t)
        if not torch.equal(slots.all(-1), slots.any(-1)):
            raise ValueError(f"with time_patch={self.time_patch} a tubelet holds {self.time_patch} frames, which "
                             "must be all given or all generated; align the given frames to multiples of it")
        _, h, w = self.grid_size
        return slots[..., 0, None].expand(-1, -1, h * w).reshape(frames.shape[0], -1)  # (B, T)

    def tokens_to_frames(self, given: Tensor) -> Tensor:
        """Per-token mask -> per-frame mask: a frame counts as given iff all its tokens are.

        Shapes:
            given: ``(B, T)`` bool -> ``(B, F)`` bool
        """
        self._check_token_mask(given)
        slots = given.reshape(given.shape[0], self.grid_size[0], -1).all(-1)  # (B, F')
        return slots.repeat_interleave(self.time_patch, dim=1)  # (B, F)

    def tokens_to_video(self, given: Tensor) -> Tensor:
        """Spread a per-token mask over the pixels of each tubelet.

        Shapes:
            given: ``(B, T)`` bool -> ``(B, 1, F, H, W)`` bool (broadcasts over channels)
        """
        self._check_token_mask(given)
        cells = given[..., None].expand(-1, -1, self.token_dim // self.channels)  # (B, T, p_t p^2)
        return unpatchify_video(cells, self.grid_size, self.patch_size, self.time_patch, 1)  # (B, 1, F, H, W)

    def _check_token_mask(self, given: Tensor) -> None:
        if given.dim() != 2 or given.shape[1] != self.num_tokens or given.dtype != torch.bool:
            raise ValueError(f"the conditioning mask must be bool of shape (B, {self.num_tokens}), one flag per token "
                             f"(True = given), got {given.dtype} {tuple(given.shape)}")

    def extra_repr(self) -> str:
        return (f"num_frames={self.num_frames}, image_size={self.image_size}, patch_size={self.patch_size}, "
                f"time_patch={self.time_patch}, channels={self.channels}")
