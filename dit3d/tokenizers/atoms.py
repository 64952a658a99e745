"""ADiT's all-atom autoencoder: atoms <-> per-atom Gaussian latents (Joshi et al. 2025)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dit3d.nn import DiTTrunk, initialize_weights

#: atomic numbers 1..MAX_Z; index 0 is the [MASK] token used by denoising corruption
MAX_Z = 100
MASK_TOKEN = 0
#: system kinds (``dataset_idx``); the label embedders reserve ``2`` for the null class
MOLECULE, CRYSTAL = 0, 1


def _mlp(d_in: int, d: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d), nn.SiLU(), nn.Linear(d, d))


@dataclass
class Atoms:
    """A dense, padded batch of atomic systems in the representation molecules and
    crystals share (crystal fields are zero for molecules).

    Shapes:
        atom_types: ``(B, N)`` long, atomic numbers (0 at padding);
        pos: ``(B, N, 3)`` Angstrom; frac_coords: ``(B, N, 3)``; mask: ``(B, N)`` bool;
        lattice: ``(B, 6)`` (3 lengths, 3 angles; zeros for molecules);
        dataset_idx: ``(B,)`` long, 0 = molecule, 1 = crystal.
    """

    atom_types: Tensor
    pos: Tensor
    frac_coords: Tensor
    mask: Tensor
    lattice: Tensor
    dataset_idx: Tensor

    @classmethod
    def from_pyg(cls, batch) -> Atoms:
        """Densify a PyG ``Batch`` with fields ``atom_types, pos, frac_coords, lengths,
        angles, dataset_idx`` (as made by :mod:`dit3d.data`)."""
        from torch_geometric.utils import to_dense_batch

        types, mask = to_dense_batch(batch.atom_types, batch.batch)  # (B, N)
        pos, _ = to_dense_batch(batch.pos, batch.batch)  # (B, N, 3)
        frac, _ = to_dense_batch(batch.frac_coords, batch.batch)  # (B, N, 3)
        lattice = torch.cat([batch.lengths, batch.angles], dim=-1).float()  # (B, 6)
        return cls(types, pos.float(), frac.float(), mask, lattice, batch.dataset_idx.view(-1))


class AtomAutoencoder(nn.Module):
    r"""Variational autoencoder from atoms to per-atom latents and back.

    Encoder: each atom is a token
    :math:`h_i = E[z_i] + \mathrm{MLP}(x_i) + \mathrm{MLP}(f_i)` (type embedding, Cartesian
    and fractional coordinates; the last is zero for molecules), passed through a
    :class:`~dit3d.nn.DiTTrunk` conditioned on the system kind (molecule/crystal) to a
    diagonal Gaussian :math:`q(z_i \mid \cdot) = \mathcal{N}(\mu_i, \sigma_i^2)`.
    Decoder: a second trunk maps :math:`z` back to type logits, positions and fractional
    coordinates per atom, and the lattice from the masked mean of its tokens.

    Args:
        hidden_size: token width ``D`` of both trunks.
        depth: blocks in each of the encoder and decoder.
        num_heads: attention heads.
        latent_dim: per-atom latent width (8 in ADiT).
        max_z: largest atomic number.

    Shapes:
        see :class:`Atoms`; latents are ``(B, N, latent_dim)``.
    """

    def __init__(self, hidden_size: int = 512, depth: int = 8, num_heads: int = 8, latent_dim: int = 8,
                 max_z: int = MAX_Z) -> None:
        super().__init__()
        D = hidden_size
        self.config = dict(hidden_size=hidden_size, depth=depth, num_heads=num_heads, latent_dim=latent_dim, max_z=max_z)
        self.latent_dim, self.max_z = latent_dim, max_z
        self.type_embed = nn.Embedding(max_z + 1, D)
        self.pos_embed, self.frac_embed = _mlp(3, D), _mlp(3, D)
        self.kind_embed = nn.Embedding(2, D)  # molecule / crystal
        self.encoder = DiTTrunk(depth, D, num_heads, out_dim=2 * latent_dim)
        self.latent_in = nn.Linear(latent_dim, D)
        self.decoder = DiTTrunk(depth, D, num_heads, out_dim=max_z + 1 + 6)
        self.lattice_head = nn.Sequential(nn.LayerNorm(D), nn.Linear(D, 6))
        initialize_weights(self)

    KIND = "adit-autoencoder"

    def save_pretrained(self, directory) -> None:
        """Write ``config.json`` + ``model.safetensors`` (see :mod:`dit3d.pretrained`)."""
        from dit3d.pretrained import save_pretrained

        save_pretrained(directory, self.KIND, {"init": self.config}, self.state_dict())

    @classmethod
    def from_pretrained(cls, directory) -> AtomAutoencoder:
        from dit3d.pretrained import load_pretrained, load_state_strict

        config, weights = load_pretrained(directory, cls.KIND)
        model = cls(**config["init"])
        load_state_strict(model, weights, str(directory))
        return model.eval()

    def encode(self, atoms: Atoms) -> tuple[Tensor, Tensor]:
        """Posterior mean and log-variance, each ``(B, N, latent_dim)``, zero at padding."""
        if atoms.atom_types.numel() and (atoms.atom_types.max() > self.max_z or atoms.atom_types.min() < 0):
            raise ValueError(f"atomic numbers must lie in 0..{self.max_z}, got range "
                             f"{int(atoms.atom_types.min())}..{int(atoms.atom_types.max())}")
        h = self.type_embed(atoms.atom_types) + self.pos_embed(atoms.pos) + self.frac_embed(atoms.frac_coords)  # (B, N, D)
        out = self.encoder(h, self.kind_embed(atoms.dataset_idx), atoms.mask)  # (B, N, 2L)
        mean, logvar = out.chunk(2, dim=-1)  # (B, N, L) each
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: Tensor, mask: Tensor, dataset_idx: Tensor) -> dict[str, Tensor]:
        """Type logits ``(B, N, max_z+1)``, ``pos`` and ``frac_coords`` ``(B, N, 3)``,
        ``lattice`` ``(B, 6)``."""
        c = self.kind_embed(dataset_idx)  # (B, D)
        h = self.decoder.forward_features(self.latent_in(z), c, mask)  # (B, N, D)
        out = self.decoder.final_layer(h, c) * mask[..., None]  # (B, N, Z+7)
        logits, pos, frac = out.split([self.max_z + 1, 3, 3], dim=-1)
        logits = logits.masked_fill(~mask[..., None], 0.0)
        weights = mask[..., None].float()
        pooled = (h * weights).sum(1) / weights.sum(1).clamp(min=1)  # (B, D)
        return {"type_logits": logits, "pos": pos, "frac_coords": frac, "lattice": self.lattice_head(pooled)}

    @staticmethod
    def sample_latent(mean: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Reparameterised draw :math:`z = \\mu + \\sigma \\epsilon`."""
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * logvar) * eps

    @staticmethod
    def kl(mean: Tensor, logvar: Tensor, mask: Tensor) -> Tensor:
        r"""Mean over real atoms of :math:`\mathrm{KL}(\mathcal{N}(\mu,\sigma^2)\,\|\,\mathcal{N}(0,I))`."""
        kl = 0.5 * (mean.square() + logvar.exp() - 1 - logvar).sum(-1)  # (B, N)
        return kl[mask].mean()
