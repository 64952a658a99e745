"""DiT-3D on point clouds: a voxel DiT trained as a DDPM noise predictor."""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
from lightning.pytorch import LightningModule
from torch import Tensor

from dit3d.models.dit3d_net import DiT3D, build_dit3d
from dit3d.models.dit3d_sampling import sample_point_clouds
from dit3d.models.optim import adamw_with_warmup
from dit3d.objectives import GaussianDiffusion


def point_batch(batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Points ``(B, N, 3)`` float and labels ``(B,)`` long from a point-cloud batch dict
    (as made by :class:`dit3d.data.PointCloudDataModule`)."""
    if not isinstance(batch, Mapping) or "points" not in batch or "label" not in batch:
        got = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
        raise ValueError(f"DiT3DModule expects batches {{'points': (B, N, 3), 'label': (B,)}}, got {got}")
    points, label = batch["points"], batch["label"]
    if points.dim() != 3 or points.shape[-1] != 3 or label.shape != points.shape[:1]:
        raise ValueError(f"batch['points'] must be (B, N, 3) and batch['label'] (B,), "
                         f"got {tuple(points.shape)} and {tuple(label.shape)}")
    return points.float(), label.long()


class DiT3DModule(LightningModule):
    r"""DDPM on point clouds with a :class:`~dit3d.models.dit3d_net.DiT3D` (Mo et al. 2023).

    Training minimises :math:`\lVert \epsilon - \hat\epsilon_\theta(x_t, t, \tilde y) \rVert^2`
    with :math:`x_t = \sqrt{\bar\alpha_t} x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon`, ``t``
    uniform over ``T`` steps of a linear beta schedule, and labels :math:`\tilde y`
    dropped to the null class at rate ``class_dropout`` (for guidance). The objective and
    its samplers are :class:`~dit3d.objectives.GaussianDiffusion`.

    Args:
        preset: DiT-3D size (``"DiT-3D-S/4"``...; see ``DIT3D_PRESETS``).
        num_classes: categories of the data module's labels.
        class_dropout: label dropout rate.
        window_blocks: blocks with 3-D window attention; ``[]`` is global attention (the
            released code), ``[0, 3, 6, 9]`` the paper's layout.
        window_size: window in tokens per axis.
        resolution: voxels per axis.
        depth, hidden_size, num_heads: override the preset's trunk.
        num_timesteps, beta_start, beta_end: the linear DDPM schedule.
        lr, weight_decay, warmup_steps: AdamW with linear warm-up.
        ema_decay: decay of the weight average that sampling uses (``ema_model``), warmed
            up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` steps; 0 disables it.
    """

    def __init__(self, preset: str = "DiT-3D-S/4", num_classes: int = 1, class_dropout: float = 0.1,
                 window_blocks: Sequence[int] = (), window_size: Sequence[int] = (4, 4, 4), resolution: int = 32,
                 depth: int | None = None, hidden_size: int | None = None, num_heads: int | None = None,
                 num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, lr: float = 1e-4,
                 weight_decay: float = 0.0, warmup_steps: int = 0, ema_decay: float = 0.9999) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = build_dit3d(preset, num_classes=num_classes, class_dropout=class_dropout,
                                 window_blocks=tuple(window_blocks), window_size=tuple(window_size),
                                 resolution=resolution, depth=depth, hidden_size=hidden_size, num_heads=num_heads)
        self.ema_model = copy.deepcopy(self.model).requires_grad_(False) if ema_decay > 0 else None
        self.diffusion = GaussianDiffusion(num_timesteps, "linear", "eps", beta_start, beta_end)

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        points, label = point_batch(batch)
        loss = self.diffusion.training_loss(self.model, points, y=self.model.drop_labels(label))
        self.log("train/loss", loss, prog_bar=True, batch_size=points.shape[0])
        return loss

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        points, label = point_batch(batch)
        for name, net in (("val/loss", self.model), ("val/loss_ema", self.ema_model)):
            if net is not None:
                g = torch.Generator().manual_seed(1000 + batch_idx)  # same t and noise for both
                loss = self.diffusion.training_loss(net, points, generator=g, y=label)
                self.log(name, loss, prog_bar=True, batch_size=points.shape[0])

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        return adamw_with_warmup(self.model.parameters(), hp.lr, hp.weight_decay, hp.warmup_steps)

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        self.update_ema(self.global_step)

    @torch.no_grad()
    def update_ema(self, step: int) -> None:
        """Move the EMA weights towards the current ones after optimiser step ``step``."""
        if self.ema_model is not None:
            decay = min(self.hparams.ema_decay, (1 + step) / (10 + step))
            torch._foreach_lerp_(list(self.ema_model.parameters()), list(self.model.parameters()), 1.0 - decay)

    @property
    def sampling_model(self) -> DiT3D:
        """The network sampling uses: the EMA copy when there is one."""
        return self.ema_model if self.ema_model is not None else self.model

    def sample(self, num_samples: int, num_points: int = 2048, label: int | Tensor = 0, sampler: str = "ddim",
               steps: int | None = None, eta: float = 0.0, guidance: float = 1.0,
               generator: torch.Generator | None = None, progress: bool = False) -> Tensor:
        """``(num_samples, num_points, 3)`` clouds in the training normalisation
        (:func:`~dit3d.models.dit3d_sampling.sample_point_clouds` with the EMA network)."""
        return sample_point_clouds(self.sampling_model, self.diffusion, num_samples, num_points, label, sampler,
                                   steps, eta, guidance, generator, progress)
