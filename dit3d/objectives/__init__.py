r"""Training objectives and samplers, independent of any network or data modality.

An objective owns the noising process, the loss and the sampler; the network is just a
callable ``model_fn(x_t, t, **model_kwargs)`` returning a tensor of ``x_t``'s shape.
Data is any tensor :math:`(B, \dots)`, optionally with a bool padding mask whose shape is
a prefix of the data's (``True`` = real entry); padding is excluded from losses, noised
with zeros, zero in samples, and forwarded to the network as ``mask=``.

- :class:`GaussianDiffusion`: DDPM with :math:`\epsilon`-, :math:`x_0`- or
  :math:`v`-prediction, ancestral and DDIM sampling (integer ``t``).
- :class:`FlowMatching`: linear-interpolant flow matching with Euler/Heun sampling and
  optional self-conditioning (float ``t`` in :math:`[0, 1]`).
- :func:`permutation_coupling`: optimal-transport pairing of noise and data tokens of a
  set (``FlowMatching(coupling="permutation")``).
- :func:`classifier_free_guidance`: wraps a model for guided sampling with either;
  :func:`autoguidance` guides it with a weaker model of the same data instead, and
  :func:`guidance_sum` with both at once.
- :func:`known_training_loss` / :func:`known_sample_loop`: DDPM conditioned on known
  entries given clean (VDT's mask modelling: one network, any mask at sampling time).

Example:
    >>> import torch
    >>> from dit3d.objectives import FlowMatching, GaussianDiffusion
    >>> model = lambda x_t, t, **kwargs: torch.zeros_like(x_t)
    >>> x, mask = torch.randn(2, 5, 3), torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    >>> loss = GaussianDiffusion(num_timesteps=10).training_loss(model, x, mask=mask)
    >>> loss.shape
    torch.Size([])
    >>> sample = FlowMatching().sample(model, (2, 5, 3), steps=4, mask=mask, progress=False)
    >>> sample[1, 3:].abs().max().item()
    0.0
"""
from .ddpm import GaussianDiffusion, PMeanVariance
from .coupling import permutation_coupling
from .flow_matching import FlowMatching
from .guidance import autoguidance, classifier_free_guidance, guidance_sum
from .known import known_sample_loop, known_training_loss, replace_known
from .masking import apply_mask, broadcast_mask, masked_mean, validate_mask
from .schedules import BETA_SCHEDULES, cosine_beta_schedule, get_beta_schedule, linear_beta_schedule

__all__ = [
    "GaussianDiffusion",
    "PMeanVariance",
    "FlowMatching",
    "permutation_coupling",
    "classifier_free_guidance",
    "autoguidance",
    "guidance_sum",
    "known_sample_loop",
    "known_training_loss",
    "replace_known",
    "linear_beta_schedule",
    "cosine_beta_schedule",
    "get_beta_schedule",
    "BETA_SCHEDULES",
    "validate_mask",
    "broadcast_mask",
    "apply_mask",
    "masked_mean",
]
