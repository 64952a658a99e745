"""Warm start of a latent DiT from a trained one (``ADiTLatentModule(init_from=...)``).

A latent DiT is tied to the latents it learnt: the autoencoder whose encoder made them and
the per-channel statistics that standardised them. A warm start therefore copies the
network *and* those statistics, and refuses a source trained on another encoder. A source
without element conditioning can start an element-conditioned model: the new per-token
element table starts at zero, so at step 0 the model computes exactly what the source did
and training only has to learn what the elements add.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from dit3d.nn import DiT
from dit3d.pretrained import PretrainedError, load_pretrained, load_state_strict
from dit3d.tokenizers.atoms import AtomAutoencoder

#: the buffers of :class:`~dit3d.models.ADiTLatentModule` that describe the latents, copied with the weights
LATENT_BUFFERS = ("latent_mean", "latent_std", "atom_count_hist")
TOKEN_TABLE = "token_embed.weight"


@dataclass
class LatentSource:
    """What a warm start copies: the DiT weights (raw and EMA), the latent buffers, the
    autoencoder the source was trained on and the pose its systems were in (``frame``)."""

    dit: dict[str, Tensor]
    ema_dit: dict[str, Tensor]
    buffers: dict[str, Tensor]
    autoencoder: AtomAutoencoder
    frame: str = "random"


def read_latent_source(path: str | os.PathLike) -> LatentSource:
    """The trained latent DiT at ``path``: a stage-2 Lightning ``.ckpt`` (raw and EMA weights)
    or an ADiT generator folder (its sampling network, the EMA one, starts both).

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: not a latent-DiT checkpoint or ADiT generator folder.
    """
    from dit3d.models.adit_latent import _autoencoder_from_folder, load_latent_checkpoint

    p = Path(path)
    if p.is_dir():
        try:
            config, weights = load_pretrained(p)
            autoencoder = _autoencoder_from_folder(p, (config, weights))
        except PretrainedError as e:
            raise ValueError(f"init_from: {e}") from None
        dit = _part(weights, "dit.")
        return LatentSource(dit, dit, _buffers(weights, p), autoencoder, config.get("frame", "random"))
    if not p.exists():
        raise FileNotFoundError(f"init_from {path}: no such checkpoint file or pretrained folder")
    try:
        module = load_latent_checkpoint(p)
    except ValueError as e:
        raise ValueError(f"init_from {path}: not a latent-DiT checkpoint of dit3d.models.ADiTLatentModule "
                         f"({e})") from None
    dit = module.dit.state_dict()
    ema = module.ema_dit.state_dict() if module.ema_dit is not None else dit
    return LatentSource(dit, ema, _buffers(module.state_dict(), p), module.autoencoder,
                        module.hparams.frame)


def load_dit_state(net: DiT, state: dict[str, Tensor], where: str) -> None:
    """Copy ``state`` into ``net`` strictly, except that an element table ``net`` has and
    ``state`` lacks starts at zero (the warm-started model then ignores the elements until
    training teaches it to use them).

    Raises:
        ValueError: another architecture (preset, depth, width, labels...) than ``net``.
    """
    state = {k: v.float() for k, v in state.items()}
    if net.token_embed is not None and TOKEN_TABLE not in state:
        state[TOKEN_TABLE] = torch.zeros_like(net.token_embed.weight)
    try:
        load_state_strict(net, state, where)
    except PretrainedError as e:
        raise ValueError(f"init_from {e}; give the latent DiT the source's preset, depth, width and "
                         "conditioning (only element conditioning may be added)") from None


def _part(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _buffers(state: dict[str, Tensor], where: Path) -> dict[str, Tensor]:
    lacking = [k for k in LATENT_BUFFERS if k not in state]
    if lacking:
        raise ValueError(f"init_from {where}: lacks {lacking}; it is not a trained latent DiT")
    return {k: state[k].float() for k in LATENT_BUFFERS}
