"""Video DiT with VDT's mask modelling: a :class:`~dit3d.models.video_dit.VideoDiT` trained as a DDPM
noise predictor on a mixture of tasks."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from dit3d.models.ddpm_module import DDPMModule
from dit3d.models.ema import ema_copy
from dit3d.models.optim import check_decay
from dit3d.models.video_dit import VideoDiT
from dit3d.models.video_dit_sampling import sample_videos
from dit3d.models.video_masks import DEFAULT_TASK_WEIGHTS, VIDEO_TASKS, sample_task_masks, task_probabilities
from dit3d.objectives import GaussianDiffusion, known_training_loss
from dit3d.objectives.ddpm import check_min_snr_gamma


def video_labels(batch: Mapping[str, Tensor]) -> Tensor:
    """The class ``(B,)`` long of one-digit clips from a batch dict: ``batch["label"][:, 0]``
    (:class:`dit3d.data.MovingDigitsDataModule` gives ``(B, K)``, ``K`` digits per clip)."""
    if "label" not in batch:
        raise ValueError(f"a class-conditional VideoDiTModule (num_classes >= 1) expects batches with 'label' "
                         f"(B, 1), got {sorted(batch)}; use MovingDigitsDataModule or set num_classes: 0")
    label = batch["label"]
    if label.dim() != 2 or label.shape[1] != 1:
        raise ValueError(f"a class-conditional VideoDiTModule needs one digit per clip: batch['label'] of shape "
                         f"(B, 1), got {tuple(label.shape)}; set num_digits: 1 in the data, or num_classes: 0")
    return label[:, 0].long()  # (B,)


def video_batch(batch: Mapping[str, Tensor]) -> Tensor:
    """Clips ``(B, C, F, H, W)`` float from a batch dict (as made by
    :class:`dit3d.data.MovingDigitsDataModule`)."""
    if not isinstance(batch, Mapping) or "video" not in batch:
        got = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
        raise ValueError(f"VideoDiTModule expects batches {{'video': (B, C, F, H, W), ...}}, got {got}")
    video = batch["video"]
    if video.dim() != 5:
        raise ValueError(f"batch['video'] must be (B, C, F, H, W), got {tuple(video.shape)}")
    return video.float()


class VideoDiTModule(DDPMModule):
    r"""DDPM on clips with VDT's unified spatial-temporal mask modelling (Lu et al. 2023).

    Each training clip draws a task from ``task_weights`` and a mask of given tokens
    :math:`m` for it (:func:`~dit3d.models.video_masks.sample_task_masks`: unconditional,
    future or past prediction, interpolation, spatio-temporal completion); with
    :math:`\tilde x_t = m \odot x_0 + (1 - m) \odot x_t` the loss is

    .. math::
        L = \frac{\sum (1 - m) \odot (y - f_\theta(\tilde x_t, t, m))^2}{\sum (1 - m)}

    with the target :math:`y` = :math:`\epsilon`, :math:`x_0` or
    :math:`v = \sqrt{\bar\alpha_t}\,\epsilon - \sqrt{1 - \bar\alpha_t}\,x_0` by ``prediction``
    (:func:`~dit3d.objectives.known_training_loss`): the given tokens enter clean, the
    network is told which they are, and only generated tokens are scored. Sampling
    (DDIM by default, EMA weights) takes any mask, so the one network serves every task.
    Validation logs ``val/loss`` and ``val/loss_ema`` on the same masks, ``t`` and noise.

    With ``num_classes >= 1`` the network is also told each clip's digit
    (``batch["label"][:, 0]``; one-digit clips only), dropped to the null class with
    probability ``class_dropout`` in training (never in validation), so that
    :meth:`sample` can guide towards a digit (classifier-free guidance, Ho & Salimans 2022).

    Clips are expected in ``[-1, 1]`` (what :mod:`dit3d.data.moving_digits` yields),
    which ``clip_denoised=1.0`` of :meth:`sample` assumes.

    Args:
        trunk: trunk preset (``"DiT-Mini"``...); ``depth``, ``hidden_size``, ``num_heads``
            override it (width divisible by 6).
        patch_size, time_patch: tubelet of ``time_patch`` frames x ``patch_size`` pixels.
        num_frames, image_size, in_channels: the clips ``(C, F, H, W)``.
        attention: ``"factorised"`` (VDT: space, then time), ``"joint"``, or one per block.
        task_weights: task -> training weight (default
            :data:`~dit3d.models.video_masks.DEFAULT_TASK_WEIGHTS`).
        num_timesteps, schedule, beta_start, beta_end: the DDPM beta schedule.
        prediction: what the network outputs, ``"eps"``, ``"x0"`` or ``"v"`` (Salimans & Ho
            2022). With ``"eps"`` the squared error of :math:`\hat x_0` is weighted by the
            signal-to-noise ratio, so the noisy steps, where only the given frames tell
            where the digit is, barely count; ``"v"`` weights them by SNR + 1 instead.
        lr, weight_decay, warmup_steps: AdamW with linear warm-up.
        lr_decay_steps: after the warm-up, decay the learning rate linearly to 0 at this
            step (set it to the run's ``max_steps``); None (default) keeps it constant,
            which scored better on the shipped CPU digit model (``data/video_digits_cpu/README.md``).
        ema_decay: decay of the weight average that sampling uses; 0 disables it.
        num_classes: digit classes to condition on (10 for moving digits); 0 (default):
            unconditional in class labels.
        class_dropout: label dropout rate in training, for classifier-free guidance.
        trunk_options: further :class:`~dit3d.nn.DiTTrunk` arguments, stored with the
            network, e.g. ``{"mlp_act": "gelu"}`` (exact GELU, faster on CPUs than DiT's tanh
            approximation) or ``{"qk_norm": True}``.
        min_snr_gamma: weight the training loss with Min-SNR-:math:`\gamma` (Hang et al. 2023;
            :meth:`~dit3d.objectives.GaussianDiffusion.min_snr_weight`, the paper's
            :math:`\gamma` is 5); ``None`` (default): the unweighted loss of ``prediction``.
            Validation losses stay unweighted.
        compile_model: compile the network with ``torch.compile`` when a fit starts
            (:meth:`~dit3d.models.ddpm_module.DDPMModule.configure_model`; needs a C++
            compiler; the first step compiles). Off by default: on a 2-core CPU it measured
            slower (3.43 vs 3.13 s per DiT-3D-S/4 step, one ``bench dit3d`` run; README,
            compiled sampling).

    Example:
        >>> m = VideoDiTModule(patch_size=8, num_frames=4, image_size=16, depth=1, num_timesteps=10)
        >>> m.sample(2, steps=2, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2, 1, 4, 16, 16])
        >>> c = VideoDiTModule(patch_size=8, num_frames=4, image_size=16, depth=1, num_timesteps=10, num_classes=10)
        >>> c.sample(2, steps=2, generator=torch.Generator().manual_seed(0), label=3, guidance=2.0).shape
        torch.Size([2, 1, 4, 16, 16])
    """

    def __init__(self, trunk: str = "DiT-Mini", patch_size: int | Sequence[int] = 4, time_patch: int = 1,
                 num_frames: int = 8, image_size: int | Sequence[int] = 32, in_channels: int = 1,
                 attention: str | Sequence[str] = "factorised", depth: int | None = None,
                 hidden_size: int | None = None, num_heads: int | None = None,
                 task_weights: dict[str, float] | None = None, num_timesteps: int = 1000, schedule: str = "linear",
                 beta_start: float = 1e-4, beta_end: float = 0.02, prediction: str = "eps", lr: float = 1e-4,
                 weight_decay: float = 0.0, warmup_steps: int = 0, ema_decay: float = 0.9999, num_classes: int = 0,
                 class_dropout: float = 0.1, trunk_options: Mapping[str, Any] | None = None,
                 min_snr_gamma: float | None = None, compile_model: bool = False,
                 lr_decay_steps: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_decay(warmup_steps, lr_decay_steps, "lr_decay_steps")  # at construction, not when fitting
        check_min_snr_gamma(min_snr_gamma)  # at construction, not at the first training step
        self.task_weights = dict(DEFAULT_TASK_WEIGHTS if task_weights is None else task_weights)
        task_probabilities(self.task_weights)  # fail early on bad weights
        self.model = VideoDiT(trunk, patch_size, time_patch, num_frames, image_size, in_channels, attention,
                              depth=depth, hidden_size=hidden_size, num_heads=num_heads, num_classes=num_classes,
                              class_dropout=class_dropout, **dict(trunk_options or {}))
        grid = self.model.tokenizer.grid_size
        for task, need in (("predict", 2), ("backward", 2), ("interpolate", 3)):
            if self.task_weights.get(task, 0) > 0 and grid[0] < need:
                raise ValueError(f"task {task!r} needs at least {need} time slots, the clips have {grid[0]} "
                                 f"(num_frames / time_patch); set its weight to 0 or use more frames")
        self.ema_model = ema_copy(self.model, ema_decay)
        self.diffusion = GaussianDiffusion(num_timesteps, schedule, prediction, beta_start, beta_end)

    @property
    def conditional(self) -> bool:
        """Whether the network is conditioned on class labels (``num_classes >= 1``)."""
        return self.model.null_class is not None

    def unpack(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor | None]:
        """Clips ``(B, C, F, H, W)`` and, for a conditional network, their digits ``(B,)``
        (``None`` otherwise: the labels of the batch are not read)."""
        video = video_batch(batch)
        if not self.conditional:
            return video, None
        label = video_labels(batch).to(video.device)  # (B,)
        if label.shape[0] != video.shape[0]:
            raise ValueError(f"batch['label'] has {label.shape[0]} rows for {video.shape[0]} clips")
        return video, label

    def masked_loss(self, net: torch.nn.Module, video: Tensor, generator: torch.Generator | None = None,
                    y: Tensor | None = None, min_snr_gamma: float | None = None) -> Tensor:
        """The mask-modelling loss of ``net`` on ``video`` with a task mask per clip drawn
        from ``generator`` (``None``: torch's global RNG), as are ``t`` and the noise;
        ``y`` ``(B,)``: the labels the network is told (conditional networks; ``None``: null
        class); ``min_snr_gamma``: Min-SNR loss weights (training only, so that validation
        losses of differently weighted runs compare)."""
        given, _ = sample_task_masks(video.shape[0], self.model.tokenizer.grid_size, self.task_weights, generator)
        given = given.to(video.device)  # (B, T)
        known = self.model.tokenizer.tokens_to_video(given)  # (B, 1, F, H, W)
        return known_training_loss(self.diffusion, net, video, known, generator, min_snr_gamma=min_snr_gamma,
                                   given=given, y=y)

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        video, label = self.unpack(batch)
        y = None if label is None else self.model.drop_labels(label)  # (B,), null class with prob class_dropout
        loss = self.masked_loss(self.model, video, y=y, min_snr_gamma=self.hparams.min_snr_gamma)
        self.log("train/loss", loss, prog_bar=True, batch_size=video.shape[0])
        return loss

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        video, label = self.unpack(batch)  # no label dropout: the conditional loss
        for name, net in (("val/loss", self.model), ("val/loss_ema", self.ema_model)):
            if net is not None:
                g = torch.Generator().manual_seed(1000 + batch_idx)  # same masks, t and noise for both
                self.log(name, self.masked_loss(net, video, g, y=label), prog_bar=True, batch_size=video.shape[0])

    def sample(self, num_samples: int, context: Tensor | None = None, given: Tensor | None = None,
               sampler: str = "ddim", steps: int | None = None, eta: float = 0.0,
               clip_denoised: float | None = 1.0, generator: torch.Generator | None = None,
               progress: bool = False, label: int | Tensor | None = None, guidance: float = 1.0) -> Tensor:
        """``(num_samples, C, F, H, W)`` clips, equal to ``context`` on the ``given`` tokens
        (:func:`~dit3d.models.video_dit_sampling.sample_videos` with the EMA network); a
        conditional module takes a ``label`` (int, or ``(num_samples,)``; ``None``: the null
        class) and a classifier-free ``guidance`` weight."""
        return sample_videos(self.sampling_model, self.diffusion, num_samples, context, given, sampler, steps, eta,
                             clip_denoised, generator, progress, label, guidance)


__all__ = ["VIDEO_TASKS", "VideoDiTModule", "video_batch", "video_labels"]
