"""DiT-3D on point clouds: a voxel DiT trained as a DDPM noise predictor."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from dit3d.models.ddpm_module import DDPMModule
from dit3d.models.dit3d_net import build_dit3d
from dit3d.models.dit3d_sampling import sample_point_clouds
from dit3d.models.ema import ema_copy
from dit3d.models.optim import check_decay
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


class DiT3DModule(DDPMModule):
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
        lr_decay_steps: after the warm-up, decay the learning rate linearly to 0 at this
            step (set it to the run's ``max_steps``); None (default) keeps it constant.
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
    """

    def __init__(self, preset: str = "DiT-3D-S/4", num_classes: int = 1, class_dropout: float = 0.1,
                 window_blocks: Sequence[int] = (), window_size: Sequence[int] = (4, 4, 4), resolution: int = 32,
                 depth: int | None = None, hidden_size: int | None = None, num_heads: int | None = None,
                 num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, lr: float = 1e-4,
                 weight_decay: float = 0.0, warmup_steps: int = 0, ema_decay: float = 0.9999,
                 trunk_options: Mapping[str, Any] | None = None, compile_model: bool = False,
                 lr_decay_steps: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_decay(warmup_steps, lr_decay_steps, "lr_decay_steps")  # at construction, not when fitting
        self.model = build_dit3d(preset, num_classes=num_classes, class_dropout=class_dropout,
                                 window_blocks=tuple(window_blocks), window_size=tuple(window_size),
                                 resolution=resolution, depth=depth, hidden_size=hidden_size, num_heads=num_heads,
                                 **dict(trunk_options or {}))
        self.ema_model = ema_copy(self.model, ema_decay)
        self.diffusion = GaussianDiffusion(num_timesteps, "linear", "eps", beta_start, beta_end)

    def unpack(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        return point_batch(batch)

    def sample(self, num_samples: int, num_points: int = 2048, label: int | Tensor = 0, sampler: str = "ddim",
               steps: int | None = None, eta: float = 0.0, guidance: float = 1.0,
               generator: torch.Generator | None = None, progress: bool = False, cache_interval: int = 1) -> Tensor:
        """``(num_samples, num_points, 3)`` clouds in the training normalisation
        (:func:`~dit3d.models.dit3d_sampling.sample_point_clouds` with the EMA network)."""
        return sample_point_clouds(self.sampling_model, self.diffusion, num_samples, num_points, label, sampler,
                                   steps, eta, guidance, generator, progress, cache_interval)
