"""What the DDPM-trained Lightning systems (DiT-3D, image DiT) share: the epsilon loss
with label dropout, EMA-vs-raw validation on the same noise, AdamW, the EMA update."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor, nn

from dit3d.models.ema import update_ema_
from dit3d.models.optim import adamw_with_warmup, warn_if_decay_misses_the_end
from dit3d.models.resume import RNGStateMixin
from dit3d.nn.compiled import compile_for_training


class DDPMModule(RNGStateMixin, LightningModule):
    r"""Base class: subclasses build ``self.model`` (a class-conditional noise predictor
    with ``drop_labels``), ``self.ema_model`` (or ``None``) and ``self.diffusion`` (a
    :class:`~dit3d.objectives.GaussianDiffusion`), and implement :meth:`unpack`.

    Training minimises :math:`\lVert \epsilon - \hat\epsilon_\theta(x_t, t, \tilde y) \rVert^2`
    with labels :math:`\tilde y` dropped to the null class for classifier-free guidance.
    Validation logs ``val/loss`` and ``val/loss_ema`` on the same ``t`` and noise, so the
    two are comparable. Hyper-parameters used here: ``lr``, ``weight_decay``,
    ``warmup_steps``, ``lr_decay_steps`` (linear decay to 0 at that step, or ``None``:
    constant), ``ema_decay`` and ``compile_model`` (compile ``self.model`` when a fit
    starts, :meth:`configure_model`).
    """

    model: nn.Module
    ema_model: nn.Module | None

    def configure_model(self) -> None:
        """With ``compile_model`` set, compile the trained network in place when a fit starts
        (:func:`~dit3d.nn.compiled.compile_for_training`; the EMA copy stays eager).

        Lightning also calls this hook for validate, test and predict and in
        ``load_from_checkpoint``; those leave the network eager, so a checkpoint trained
        compiled loads and samples on a machine without a C++ compiler."""
        if self.hparams.get("compile_model", False) and self.fitting:
            compile_for_training(self.model)

    @property
    def fitting(self) -> bool:
        """Whether a Trainer is attached and running ``fit``."""
        return self._trainer is not None and self.trainer.state.fn == TrainerFn.FITTING

    def unpack(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Data ``x_0`` and labels ``(B,)`` of a batch, checked."""
        raise NotImplementedError

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        x, label = self.unpack(batch)
        loss = self.diffusion.training_loss(self.model, x, y=self.model.drop_labels(label))
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0])
        return loss

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        x, label = self.unpack(batch)
        for name, net in (("val/loss", self.model), ("val/loss_ema", self.ema_model)):
            if net is not None:
                g = torch.Generator().manual_seed(1000 + batch_idx)  # same t and noise for both
                loss = self.diffusion.training_loss(net, x, generator=g, y=label)
                self.log(name, loss, prog_bar=True, batch_size=x.shape[0])

    def on_fit_start(self) -> None:
        warn_if_decay_misses_the_end(self.trainer, self.hparams.get("lr_decay_steps"), "lr_decay_steps")

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        return adamw_with_warmup(self.model.parameters(), hp.lr, hp.weight_decay, hp.warmup_steps,
                                 hp.get("lr_decay_steps"))

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        self.update_ema(self.global_step)

    def update_ema(self, step: int) -> None:
        """Move the EMA weights towards the current ones after optimiser step ``step``
        (:func:`~dit3d.models.ema.update_ema_`)."""
        update_ema_(self.ema_model, self.model, step, self.hparams.ema_decay)

    @property
    def diffusion_config(self) -> dict:
        """:class:`~dit3d.objectives.GaussianDiffusion` arguments of this module (JSON-ready),
        what generators store with the weights."""
        return dict(self.diffusion.config)

    @property
    def sampling_model(self) -> nn.Module:
        """The network sampling uses: the EMA copy when there is one."""
        return self.ema_model if self.ema_model is not None else self.model
