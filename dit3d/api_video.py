"""Video generator: a trained VDT-style video DiT with its DDPM schedule and the clips it was trained on.

:class:`VideoGenerator` holds the EMA network, the diffusion schedule, the moving-digits
settings of its training data and default sampling options. It draws clips from noise
(:meth:`~VideoGenerator.sample`), completes given parts of clips
(:meth:`~VideoGenerator.complete`: future or past frames, in-between frames, a region),
runs a named task on held-out clips (:meth:`~VideoGenerator.run_task`), and saves
pictures: a PNG strip (:func:`write_strip`) or an animated GIF (:func:`write_gif`). A
class-conditional network (trained with ``num_classes: 10``) also takes the digit to draw,
one for all clips or one per clip, and a classifier-free guidance weight towards it.
:func:`load_video_dit_checkpoint` rebuilds a trained :class:`~dit3d.models.VideoDiTModule`
from a Lightning ``.ckpt`` without unpickling code.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dit3d.api_ddpm import DDPMGenerator, load_lightning_checkpoint
from dit3d.checks import positive_int
from dit3d.models.ddpm_generation import sample_labels
from dit3d.models.video_dit import VideoDiT
from dit3d.models.video_dit_sampling import check_given, sample_videos
from dit3d.models.video_masks import task_mask

__all__ = ["DATA_KEYS", "DEFAULT_SAMPLING", "VideoGenerator", "data_settings", "load_video_dit_checkpoint",
           "video_strip", "write_gif", "write_strip"]

#: DDIM on 50 steps, no guidance (classifier-free guidance needs a class-conditional network and a
#: digit), eta 1: stochastic DDIM read the right digit more often than eta 0 on every masking task
#: (``data/video_digits_cpu/README.md``)
DEFAULT_SAMPLING: dict[str, Any] = {"sampler": "ddim", "steps": 50, "guidance": 1.0, "eta": 1.0, "batch_size": 32}

#: the moving-digits settings a generator remembers (those of :class:`~dit3d.data.moving_digits.MovingDigits`)
DATA_KEYS = ("num_frames", "image_size", "digit_size", "num_digits", "speed", "test_fraction", "seed")

_GIVEN_RGB = np.array([40, 200, 60], dtype=np.uint8)  # ring around wholly given frames


def load_video_dit_checkpoint(path: str | os.PathLike) -> Any:
    """Rebuild a trained :class:`~dit3d.models.VideoDiTModule` (eval mode) from a Lightning
    ``.ckpt`` written by ``dit3d fit``, reading it with ``torch.load(weights_only=True)``."""
    from dit3d.models.video_dit_module import VideoDiTModule

    return load_lightning_checkpoint(path, VideoDiTModule)[0]


def _pixels(x: Tensor | np.ndarray) -> np.ndarray:
    """``[-1, 1]`` floats -> ``uint8`` with pixel ``round(127.5 (x + 1))``."""
    a = x.detach().float().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float32)
    return np.round((np.clip(a, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def video_strip(videos: Tensor | np.ndarray, known: Tensor | np.ndarray | None = None,
                truth: Tensor | np.ndarray | None = None, pad: int = 2) -> np.ndarray:
    """One RGB picture of clips, a row of frames per clip, ``pad`` black pixels between tiles.

    With ``truth``, each clip's ground-truth row comes first and its sample row under it.
    With ``known`` (the given pixels), wholly given frames are ringed in green and the given
    pixels of partly given frames tinted green, in the sample rows.

    Shapes:
        videos: ``(n, C, F, H, W)`` in ``[-1, 1]``, ``C`` 1 or 3; known: bool broadcastable to
        ``(n, 1, F, H, W)``; truth: like ``videos`` -> ``(rows (H + pad) + pad, F (W + pad) + pad, 3)`` uint8

    Example:
        >>> video_strip(torch.zeros(2, 1, 3, 4, 4), truth=torch.zeros(2, 1, 3, 4, 4)).shape
        (26, 20, 3)
    """
    v = _pixels(videos)
    if v.ndim != 5 or v.shape[1] not in (1, 3) or len(v) == 0:
        raise ValueError(f"videos must be (n >= 1, C in (1, 3), F, H, W), got {v.shape}")
    n, C, F, H, W = v.shape
    rgb = lambda a: np.repeat(a, 3, axis=1) if a.shape[1] == 1 else a  # noqa: E731
    rows = []
    v = rgb(v)  # (n, 3, F, H, W)
    t = None if truth is None else rgb(_pixels(truth))
    k = None if known is None else np.broadcast_to(np.asarray(
        known.cpu() if isinstance(known, Tensor) else known, dtype=bool), (n, 1, F, H, W))
    for i in range(n):
        if t is not None:
            rows.append((t[i], None))
        rows.append((v[i], None if k is None else k[i, 0]))
    out = np.zeros((len(rows) * (H + pad) + pad, F * (W + pad) + pad, 3), dtype=np.uint8)
    for r, (clip, mask) in enumerate(rows):
        y = pad + r * (H + pad)
        for f in range(F):
            x = pad + f * (W + pad)
            tile = clip[:, f].transpose(1, 2, 0).copy()  # (H, W, 3)
            if mask is not None and mask[f].all() and pad > 0:
                out[y - 1:y + H + 1, x - 1:x + W + 1] = _GIVEN_RGB  # a 1-pixel ring in the padding
            elif mask is not None and mask[f].any():
                tile[mask[f]] = (tile[mask[f]] * np.array([0.55, 1.0, 0.55])).astype(np.uint8)
            out[y:y + H, x:x + W] = tile
    return out


def write_strip(path: str | os.PathLike, videos: Tensor | np.ndarray, known: Tensor | np.ndarray | None = None,
                truth: Tensor | np.ndarray | None = None, scale: int = 3) -> Path:
    """Save :func:`video_strip` as a PNG, each pixel ``scale`` x ``scale``, written atomically."""
    from PIL import Image

    from dit3d.fileio import atomic_output

    strip = video_strip(videos, known, truth)
    if scale > 1:
        strip = strip.repeat(scale, axis=0).repeat(scale, axis=1)
    with atomic_output(path) as tmp:
        Image.fromarray(strip).save(tmp, format="PNG")
    return Path(path)


def write_gif(path: str | os.PathLike, videos: Tensor | np.ndarray, per_row: int | None = None, scale: int = 3,
              frame_ms: int = 250, pad: int = 1) -> Path:
    """Animated GIF of clips side by side (``per_row`` a row, default ``ceil(sqrt(n))``),
    ``frame_ms`` per frame, looping; written atomically.

    Shapes:
        videos: ``(n, C, F, H, W)`` in ``[-1, 1]``, ``C`` 1 or 3
    """
    from PIL import Image

    from dit3d.api_images import image_grid
    from dit3d.fileio import atomic_output

    a = videos.detach().float().cpu().numpy() if isinstance(videos, Tensor) else np.asarray(videos, dtype=np.float32)
    if a.ndim != 5 or a.shape[1] not in (1, 3) or len(a) == 0:
        raise ValueError(f"videos must be (n >= 1, C in (1, 3), F, H, W), got {a.shape}")
    per_row = per_row or math.ceil(math.sqrt(len(a)))
    frames = []
    for f in range(a.shape[2]):
        grid = image_grid(a[:, :, f], per_row=per_row, pad=pad)
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else grid
        frames.append(Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid))
    with atomic_output(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    return Path(path)


class VideoGenerator(DDPMGenerator):
    """Sampler of a trained :class:`~dit3d.models.video_dit.VideoDiT`: DDIM (default) or
    ancestral DDPM, unconditional or conditioned on any given part of clips (VDT's
    mask modelling); clips in ``[-1, 1]``. Pretrained folders store the network
    arguments (``"video_dit"``), the schedule, the training data's moving-digits
    settings (``"data"``, to draw matching held-out clips) and the sampling defaults.

    A class-conditional network (``num_classes >= 1`` in its config; :attr:`num_classes`)
    takes ``digit`` (one for all clips or one per clip; ``None``: the null class, i.e. any
    digit) and ``guidance``, the classifier-free guidance weight towards it (1: none). An
    unconditional one (``num_classes`` 0, like the shipped ``data/video_digits_cpu``)
    rejects both.

    Args:
        net: the noise predictor (the EMA copy of a trained module).
        diffusion: :class:`~dit3d.objectives.GaussianDiffusion` arguments it was trained with.
        data: moving-digits settings (:data:`DATA_KEYS`) of the training clips, or ``None``.
        sampling: defaults for ``sampler``, ``steps``, ``guidance``, ``eta``, ``batch_size``
            (over :data:`DEFAULT_SAMPLING`); the stored ``guidance`` applies when a digit is
            asked for and must stay 1 for an unconditional network.
        guide: a weaker network for autoguidance (:meth:`~dit3d.api_ddpm.DDPMGenerator.set_guide`), or None.

    Example:
        >>> gen = VideoGenerator.from_lightning(load_video_dit_checkpoint("last.ckpt"))  # doctest: +SKIP
        >>> clips, given = gen.run_task("predict", n=4, seed=0)  # doctest: +SKIP
        >>> clips.shape  # doctest: +SKIP
        torch.Size([4, 1, 8, 32, 32])
        >>> cond = VideoGenerator.from_pretrained("video-digits-cond-cpu")  # doctest: +SKIP
        >>> threes = cond.sample(8, seed=0, digit=3)  # guided by its stored weights  # doctest: +SKIP
    """

    KIND = "dit-video"
    NET_KEY, NET_CLASS, NET_NAME = "video_dit", VideoDiT, "video DiT"

    def __init__(self, net: VideoDiT, diffusion: Mapping[str, Any], data: Mapping[str, Any] | None = None,
                 sampling: Mapping[str, Any] | None = None, guide: VideoDiT | DDPMGenerator | None = None) -> None:
        super().__init__(net, diffusion, guide)
        if data is not None:
            unknown = set(data) - set(DATA_KEYS)
            if unknown:
                raise ValueError(f"unknown data settings {sorted(unknown)}; expected some of {DATA_KEYS}")
            data = {k: (list(v) if isinstance(v, tuple) else v) for k, v in data.items()}
        self.data = dict(data) if data is not None else None
        self.sampling = self._checked_defaults(sampling, DEFAULT_SAMPLING)

    @classmethod
    def from_lightning(cls, module: Any, data: Mapping[str, Any] | None = None,
                       sampling: Mapping[str, Any] | None = None) -> VideoGenerator:
        """From a trained :class:`~dit3d.models.VideoDiTModule` (its EMA network, shared, not copied)."""
        if not hasattr(module, "sampling_model") or not hasattr(module, "diffusion_config"):
            raise TypeError(f"from_lightning expects a VideoDiTModule, got {type(module).__name__}")
        return cls(module.sampling_model, module.diffusion_config, data, sampling)

    def _config_fields(self) -> dict[str, Any]:
        return {"data": self.data}

    @classmethod
    def _from_config(cls, net: VideoDiT, config: dict[str, Any], guide: VideoDiT | None) -> VideoGenerator:
        return cls(net, config["diffusion"], config.get("data"), config["sampling"], guide)

    @staticmethod
    def effective_guidance(guidance: float, has_digit: bool, explicit: bool) -> float:
        """The guidance weight a call runs with: ``guidance`` towards a digit; without a digit
        there is nothing to guide towards, so a stored default falls back to 1 (the null
        class) and an explicit weight other than 1 is an error."""
        if has_digit:
            return float(guidance)
        if explicit and float(guidance) != 1.0:
            raise ValueError(f"guidance {guidance} needs a digit to guide towards: pass digit (one, or one per "
                             "clip), or guidance=1 for clips of any digit")
        return 1.0

    def _options(self, options: dict[str, Any], check_only: bool = False) -> dict[str, Any]:
        opts = super()._options(options, check_only)
        self._check_guidance(opts)  # here, so stored defaults (set_sampling_defaults, dit3d export) are checked too
        return opts

    def _check_guidance(self, opts: Mapping[str, Any]) -> None:
        if self.num_classes == 0 and float(opts["guidance"]) != 1.0:
            raise ValueError("guidance does not apply to an unconditional video DiT (num_classes=0: no digit "
                             "labels to guide towards); leave it at 1, or train a class-conditional one "
                             "(configs/video/moving_digits_cond_cpu.yaml)")

    def digit_labels(self, digit: int | Sequence[int] | Tensor | None, n: int) -> Tensor | None:
        """``(n,)`` long digits from one digit, ``n`` of them (a sequence or tensor), or
        ``None`` (the null class: returns ``None``), checked against the network's classes.

        Raises:
            ValueError: a digit for an unconditional network, a wrong count, or a digit
                outside ``0..num_classes-1``.
        """
        if digit is None:
            return None
        if self.num_classes == 0:
            raise ValueError("digit given to an unconditional video DiT (num_classes=0): it draws clips of any "
                             "digit; leave digit unset, or train a class-conditional one "
                             "(configs/video/moving_digits_cond_cpu.yaml)")
        if isinstance(digit, (bool, str)) or not isinstance(digit, (int, np.integer, Tensor, Sequence, np.ndarray)):
            raise ValueError(f"digit must be an int or {n} ints, got {type(digit).__name__}")
        if not isinstance(digit, (int, np.integer)):
            digit = torch.as_tensor(digit).reshape(-1)
            if digit.dtype.is_floating_point or digit.dtype == torch.bool or digit.shape != (n,):
                raise ValueError(f"digit must be one int or {n} ints (one per clip), got {digit.dtype} "
                                 f"{tuple(digit.shape)}")
        return sample_labels(digit, n, self.num_classes, torch.device("cpu"), what="digits")

    @property
    def video_shape(self) -> tuple[int, int, int, int]:
        """``(C, F, H, W)`` of the clips."""
        return self.net.video_shape

    def task_mask(self, task: str, context_frames: int | None = None) -> Tensor:
        """``(T,)`` token mask of an evaluation ``task`` (:func:`dit3d.models.video_masks.task_mask`),
        with ``context_frames`` given frames (per end for ``interpolate``; a multiple of the time patch)."""
        pt = self.net.tokenizer.time_patch
        if context_frames is not None and (isinstance(context_frames, bool) or not isinstance(context_frames, int)
                                           or context_frames % pt):
            raise ValueError(f"context_frames must be an int multiple of the time patch ({pt}), got {context_frames!r}")
        return task_mask(task, self.net.tokenizer.grid_size, None if context_frames is None else context_frames // pt)

    def _test_split(self, n: int, start: int) -> Any:
        from dit3d.data.moving_digits import MovingDigits

        C, F, H, W = self.video_shape
        settings = dict(self.data or {})
        if (settings.get("num_frames", F), settings.get("image_size", H)) != (F, H) or C != 1 or H != W:
            raise ValueError(f"the stored data settings {settings} do not match the network's clips (C, F, H, W) = "
                             f"{(C, F, H, W)}; moving digits are grey and square")
        settings.update(num_frames=F, image_size=H)
        return MovingDigits("test", num_sequences=start + positive_int(n, "n"), **settings)

    def test_clips(self, n: int, start: int = 0) -> Tensor:
        """Held-out moving-digits clips ``start .. start + n - 1`` drawn with the training data's
        settings (test split: digits the model never saw), ``(n, C, F, H, W)``."""
        return self._test_split(n, start).videos(range(start, start + n))

    def test_labels(self, n: int, start: int = 0) -> Tensor:
        """The digit classes ``(n, K)`` int64 of the clips :meth:`test_clips` returns (``K``
        digits per clip)."""
        ds = self._test_split(n, start)
        return torch.stack([ds[i]["label"] for i in range(start, start + n)])

    def test_digits(self, n: int, start: int = 0) -> Tensor:
        """The digit ``(n,)`` int64 of each one-digit clip :meth:`test_clips` returns.

        Raises:
            ValueError: the clips hold several digits each (no single digit to condition on or judge).
        """
        labels = self.test_labels(n, start)  # (n, K)
        if labels.shape[1] != 1:
            raise ValueError(f"one digit per clip needed, these clips have {labels.shape[1]} digits each")
        return labels[:, 0]

    @torch.no_grad()
    def complete(self, context: Tensor, given: Tensor, seed: int | None = None, progress: bool = False,
                 digit: int | Sequence[int] | Tensor | None = None, guidance: float | None = None,
                 **options: Any) -> Tensor:
        """Generate the tokens of ``context`` that ``given`` does not mark; the given ones come back unchanged.

        Args:
            context: clean clips in ``[-1, 1]``.
            given: token mask (``True`` = given), one ``(T,)`` for all clips or ``(n, T)``;
                see :meth:`task_mask`.
            seed: seeds the noise and every step; ``None`` draws a fresh seed.
            progress: a progress bar per batch.
            digit: conditional networks only: the digit of every clip, or ``n`` of them;
                ``None``: the null class (any digit).
            guidance: classifier-free guidance weight towards ``digit`` (1: none; ``None``:
                the stored default, used only when a digit is given); other than 1 only with
                a conditional network and a digit.
            **options: override the stored ``sampler``, ``steps``, ``eta``, ``batch_size``,
                ``cache_interval`` (:mod:`dit3d.nn.step_cache`; 1: every step in full).

        Shapes:
            context: ``(n, C, F, H, W)`` -> ``(n, C, F, H, W)`` float32 on the CPU
        """
        if context.dim() != 5:
            raise ValueError(f"context must be clips (n, C, F, H, W), got {tuple(context.shape)}")
        n = context.shape[0]
        given = check_given(self.net, given, n)  # (n, T)
        opts = self._options(options if guidance is None else {**options, "guidance": guidance})
        y = self.digit_labels(digit, n)  # (n,) or None
        opts["guidance"] = self.effective_guidance(opts["guidance"], y is not None,
                                                   guidance is not None or "guidance" in options)
        g = self._generator(seed)
        out = []
        for s in range(0, n, opts["batch_size"]):
            part = slice(s, s + opts["batch_size"])
            clips = context[part]
            out.append(sample_videos(self.net, self.diffusion, clips.shape[0], clips, given[part], opts["sampler"],
                                     opts["steps"], float(opts["eta"]), 1.0, g, progress,
                                     None if y is None else y[part], float(opts["guidance"]),
                                     int(opts["cache_interval"]), **self._guide_options(opts)).float().cpu())
        return torch.cat(out)

    def sample(self, n: int, seed: int | None = None, progress: bool = False,
               digit: int | Sequence[int] | Tensor | None = None, guidance: float | None = None,
               **options: Any) -> Tensor:
        """``n`` clips from noise (nothing given): ``(n, C, F, H, W)`` in ``[-1, 1]``; of
        ``digit`` (one, or one per clip) guided by ``guidance`` for a conditional network
        (see :meth:`complete`)."""
        context = torch.zeros(positive_int(n, "n"), *self.video_shape)
        return self.complete(context, torch.zeros(self.net.tokenizer.num_tokens, dtype=torch.bool), seed, progress,
                             digit, guidance, **options)

    def run_task(self, task: str, context: Tensor | None = None, n: int | None = None,
                 context_frames: int | None = None, seed: int | None = None, progress: bool = False,
                 digit: int | Sequence[int] | Tensor | None = None, guidance: float | None = None,
                 true_digits: bool = False, **options: Any) -> tuple[Tensor, Tensor]:
        """Run an evaluation ``task`` (``"predict"``, ``"interpolate"``...; :data:`~dit3d.models.VIDEO_TASKS`)
        on ``context`` clips, or on the first ``n`` held-out clips (:meth:`test_clips`).

        Args:
            task, context_frames: the mask (:meth:`task_mask`).
            context, n: the clips, or how many held-out ones.
            seed, progress, digit, guidance, **options: as for :meth:`complete`.
            true_digits: conditional networks, held-out clips (``n``) of one digit: condition
                each clip on its own digit (:meth:`test_labels`) instead of ``digit``. Off by
                default, so that scores stay comparable with unconditional networks.

        Returns:
            the clips ``(n, C, F, H, W)`` and the given-pixel mask ``(n, 1, F, H, W)`` bool.
        """
        if context is None:
            if n is None:
                raise ValueError("give context clips or n (the number of held-out clips to run the task on)")
            context = self.test_clips(n)
        elif true_digits:
            raise ValueError("true_digits conditions held-out clips on their own digits: pass n instead of "
                             "context, or pass the digits of your clips as digit=")
        if true_digits:
            if digit is not None:
                raise ValueError("pass digit or true_digits=True, not both")
            digit = self.test_digits(context.shape[0])  # (n,)
        given = self.task_mask(task, context_frames).expand(context.shape[0], -1)  # (n, T)
        clips = self.complete(context, given, seed, progress, digit, guidance, **options)
        return clips, self.net.tokenizer.tokens_to_video(given)

    def frames_of(self, known: Tensor) -> Tensor:
        """Wholly given frames of a given-pixel mask: ``(n, 1, F, H, W)`` -> ``(n, F)`` bool."""
        return known.flatten(3).all(-1)[:, 0]


def data_settings(hparams: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The :data:`DATA_KEYS` of a moving-digits data module's hyper-parameters, or ``None``
    when they are not those of :class:`~dit3d.data.MovingDigitsDataModule`."""
    if not hparams or "digit_size" not in hparams:
        return None
    return {k: (list(v) if isinstance(v, (tuple, list)) else v) for k, v in hparams.items() if k in DATA_KEYS}
