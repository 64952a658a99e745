"""Class-conditional image DiT: an :class:`~dit3d.models.image_dit.ImageDiT` trained as a DDPM noise predictor."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from dit3d.models.ddpm_module import DDPMModule
from dit3d.models.ema import ema_copy
from dit3d.models.image_dit import build_image_dit
from dit3d.models.image_dit_sampling import sample_images
from dit3d.models.optim import check_decay
from dit3d.objectives import GaussianDiffusion


def image_batch(batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Images ``(B, C, H, W)`` float and labels ``(B,)`` long from an image batch dict
    (as made by :class:`dit3d.data.DigitsDataModule`)."""
    if not isinstance(batch, Mapping) or "image" not in batch or "label" not in batch:
        got = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
        raise ValueError(f"ImageDiTModule expects batches {{'image': (B, C, H, W), 'label': (B,)}}, got {got}")
    image, label = batch["image"], batch["label"]
    if image.dim() != 4 or label.shape != image.shape[:1]:
        raise ValueError(f"batch['image'] must be (B, C, H, W) and batch['label'] (B,), "
                         f"got {tuple(image.shape)} and {tuple(label.shape)}")
    return image.float(), label.long()


class ImageDiTModule(DDPMModule):
    r"""DDPM on images with a class-conditional :class:`~dit3d.models.image_dit.ImageDiT`.

    Training minimises :math:`\lVert \epsilon - \hat\epsilon_\theta(x_t, t, \tilde y) \rVert^2`
    (epsilon prediction, Ho et al. 2020) with
    :math:`x_t = \sqrt{\bar\alpha_t} x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon`, ``t`` uniform
    over the ``T`` steps of the beta schedule, and labels :math:`\tilde y` replaced by the
    null class at rate ``class_dropout`` so that one network learns :math:`p(x \mid y)` and
    :math:`p(x)` for classifier-free guidance. The objective and its samplers are
    :class:`~dit3d.objectives.GaussianDiffusion`; sampling (DDIM by default, guided) uses
    the EMA copy of the weights. Learned variances (DiT's ``learn_sigma``) are not
    supported (see :mod:`dit3d.models.image_dit`).

    Images are expected scaled to ``[-1, 1]`` (what :mod:`dit3d.data.digits` yields), which
    is the range ``clip_denoised=1.0`` of :meth:`sample` assumes.

    Args:
        preset: image-DiT size (``"DiT-Img-S/2"``...; see ``IMAGE_DIT_PRESETS``).
        image_size: ``H`` or ``[H, W]`` of the training images.
        in_channels: image channels (1 for digits).
        num_classes: classes of the data module's labels.
        class_dropout: label dropout rate.
        depth, hidden_size, num_heads: override the preset's trunk.
        window_blocks: blocks with 2-D window attention (``[]``: global everywhere, as DiT).
        window_size: window in tokens per axis.
        num_timesteps, schedule, beta_start, beta_end: the DDPM beta schedule
            (``"linear"`` as DiT, or ``"cosine"``).
        lr, weight_decay, warmup_steps: AdamW with linear warm-up.
        lr_decay_steps: after the warm-up, decay the learning rate linearly to 0 at this
            step (set it to the run's ``max_steps``); None (default) keeps it constant,
            which scored better on the shipped CPU digit model (``data/digits_dit_cpu/README.md``).
        ema_decay: decay of the weight average that sampling uses (``ema_model``), warmed
            up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` steps; 0 disables it.
        trunk_options: further :class:`~dit3d.nn.DiTTrunk` arguments, stored with the
            network, e.g. ``{"mlp_act": "gelu"}`` (exact GELU, faster on CPUs than DiT's tanh
            approximation) or ``{"qk_norm": True}``.
        compile_model: compile the network with ``torch.compile`` when a fit starts
            (:meth:`~dit3d.models.ddpm_module.DDPMModule.configure_model`; needs a C++
            compiler; the first step compiles). Off by default: on a 2-core CPU it measured
            slower (3.43 vs 3.13 s per DiT-3D-S/4 step, one ``bench dit3d`` run; README,
            compiled sampling).

    Example:
        >>> m = ImageDiTModule("DiT-Img-Mini/4", image_size=16, in_channels=1, depth=1, num_timesteps=10)
        >>> m.sample(2, label=3, steps=2, guidance=4.0, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2, 1, 16, 16])
    """

    def __init__(self, preset: str = "DiT-Img-S/2", image_size: int | Sequence[int] = 32, in_channels: int = 3,
                 num_classes: int = 10, class_dropout: float = 0.1, depth: int | None = None,
                 hidden_size: int | None = None, num_heads: int | None = None, window_blocks: Sequence[int] = (),
                 window_size: Sequence[int] = (4, 4), num_timesteps: int = 1000, schedule: str = "linear",
                 beta_start: float = 1e-4, beta_end: float = 0.02, lr: float = 1e-4, weight_decay: float = 0.0,
                 warmup_steps: int = 0, ema_decay: float = 0.9999,
                 trunk_options: Mapping[str, Any] | None = None, compile_model: bool = False,
                 lr_decay_steps: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_decay(warmup_steps, lr_decay_steps, "lr_decay_steps")  # at construction, not when fitting
        self.model = build_image_dit(preset, image_size=image_size, in_channels=in_channels, num_classes=num_classes,
                                     class_dropout=class_dropout, depth=depth, hidden_size=hidden_size,
                                     num_heads=num_heads, window_blocks=tuple(window_blocks),
                                     window_size=tuple(window_size), **dict(trunk_options or {}))
        self.ema_model = ema_copy(self.model, ema_decay)
        self.diffusion = GaussianDiffusion(num_timesteps, schedule, "eps", beta_start, beta_end)

    def unpack(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        return image_batch(batch)

    def sample(self, num_samples: int, label: int | Tensor = 0, sampler: str = "ddim", steps: int | None = None,
               eta: float = 0.0, guidance: float = 1.0, clip_denoised: float | None = 1.0,
               generator: torch.Generator | None = None, progress: bool = False) -> Tensor:
        """``(num_samples, C, H, W)`` images in the data's scaling, within ``[-1, 1]`` when
        ``clip_denoised=1.0`` (:func:`~dit3d.models.image_dit_sampling.sample_images` with the EMA network)."""
        return sample_images(self.sampling_model, self.diffusion, num_samples, label, sampler, steps, eta, guidance,
                             clip_denoised, generator, progress)
