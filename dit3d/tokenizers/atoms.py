"""ADiT's all-atom autoencoder: atoms <-> per-atom Gaussian latents (Joshi et al. 2025)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn

from dit3d.nn import DiTTrunk, initialize_weights
from dit3d.objectives import masked_mean

#: atomic numbers 1..MAX_Z; index 0 is the [MASK] token used by denoising corruption
MAX_Z = 100
MASK_TOKEN = 0
#: system kinds (``dataset_idx``); the label embedders reserve ``2`` for the null class
MOLECULE, CRYSTAL = 0, 1
#: names of the system kinds, indexed by ``dataset_idx``
KIND_NAMES = ("molecule", "crystal")

#: Per-dimension mean and standard deviation of the lattice features
#: :math:`(a, b, c) / N^{1/3}` (Angstrom) and :math:`(\alpha, \beta, \gamma)` (radians) that
#: :func:`lattice_features` standardises with, measured on the MP-20 development training set
#: (``mp20-dev``: pilot train + biternary val, 8140 Niggli-reduced crystals with 1-20 atoms;
#: rounded to two decimals). Other data sets can pass their own to :class:`AtomAutoencoder`.
LATTICE_MEAN = (2.41, 2.74, 3.66, 1.55, 1.50, 1.50)
LATTICE_STD = (0.56, 0.55, 1.46, 0.33, 0.29, 0.33)


def _mlp(d_in: int, d: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d), nn.SiLU(), nn.Linear(d, d))


@dataclass
class Atoms:
    """A dense, padded batch of atomic systems in the representation molecules and
    crystals share (crystal fields are zero for molecules).

    Shapes:
        atom_types: ``(B, N)`` long, atomic numbers (0 at padding);
        pos: ``(B, N, 3)`` Angstrom; frac_coords: ``(B, N, 3)``; mask: ``(B, N)`` bool;
        lattice: ``(B, 6)`` (3 lengths in Angstrom, 3 angles in degrees; zeros for molecules);
        dataset_idx: ``(B,)`` long, 0 = molecule, 1 = crystal;
        cell: ``(B, 3, 3)`` lattice vectors as rows (``pos = frac_coords @ cell`` for
        crystals; zeros for molecules), or ``None`` when unknown;
        spacegroup: ``(B,)`` long, international number 1..230 (0: molecule or unknown),
        or ``None``.
    """

    atom_types: Tensor
    pos: Tensor
    frac_coords: Tensor
    mask: Tensor
    lattice: Tensor
    dataset_idx: Tensor
    cell: Tensor | None = None
    spacegroup: Tensor | None = None

    @classmethod
    def from_pyg(cls, batch) -> Atoms:
        """Densify a PyG ``Batch`` with fields ``atom_types, pos, frac_coords, lengths,
        angles, dataset_idx`` and optionally ``cell, spacegroup`` (as made by
        :mod:`dit3d.data`)."""
        from torch_geometric.utils import to_dense_batch

        types, mask = to_dense_batch(batch.atom_types, batch.batch)  # (B, N)
        pos, _ = to_dense_batch(batch.pos, batch.batch)  # (B, N, 3)
        frac, _ = to_dense_batch(batch.frac_coords, batch.batch)  # (B, N, 3)
        lattice = torch.cat([batch.lengths, batch.angles], dim=-1).float()  # (B, 6)
        cell = batch.cell.reshape(-1, 3, 3).float() if "cell" in batch else None  # (B, 3, 3)
        spacegroup = batch.spacegroup.view(-1).long() if "spacegroup" in batch else None  # (B,)
        return cls(types, pos.float(), frac.float(), mask, lattice, batch.dataset_idx.view(-1), cell, spacegroup)

    @property
    def num_atoms(self) -> Tensor:
        """Real atoms per system, ``(B,)`` long."""
        return self.mask.sum(-1)

    def select(self, index: Tensor) -> Atoms:
        """The systems ``index`` (a ``(B,)`` bool mask or ``(K,)`` indices) as a new batch,
        padded to their own largest size.

        Example:
            >>> a = Atoms(torch.tensor([[8, 1, 1], [6, 0, 0]]), torch.zeros(2, 3, 3), torch.zeros(2, 3, 3),
            ...           torch.tensor([[True] * 3, [True, False, False]]), torch.zeros(2, 6), torch.tensor([0, 1]))
            >>> a.select(a.dataset_idx == 1).atom_types
            tensor([[6]])
        """
        idx = torch.nonzero(index).view(-1) if index.dtype == torch.bool else index.view(-1)
        n = int(self.mask[idx].sum(-1).max()) if idx.numel() else 0
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None:
                out[f.name] = None
            elif f.name in ("atom_types", "pos", "frac_coords", "mask"):
                out[f.name] = v[idx, :n]
            else:
                out[f.name] = v[idx]
        return Atoms(**out)

    def kinds(self) -> list[int]:
        """The system kinds present in the batch, ascending (e.g. ``[0, 1]``)."""
        return sorted(int(k) for k in torch.unique(self.dataset_idx))


def _check_atoms(atoms: Atoms, dtype: torch.dtype) -> None:
    """Types, dtypes and shapes of a batch before it reaches embeddings that would fail obscurely."""
    if not isinstance(atoms, Atoms):
        raise ValueError(f"expected an Atoms batch, got {type(atoms).__name__}; build one with Atoms.from_pyg")
    fields_ = {"atom_types": atoms.atom_types, "pos": atoms.pos, "frac_coords": atoms.frac_coords,
               "mask": atoms.mask, "dataset_idx": atoms.dataset_idx}
    for name, t in fields_.items():
        if not isinstance(t, Tensor):
            raise ValueError(f"atoms.{name} must be a torch.Tensor, got {type(t).__name__}")
    B, N = atoms.mask.shape if atoms.mask.dim() == 2 else (None, None)
    if B is None or atoms.mask.dtype != torch.bool:
        raise ValueError(f"atoms.mask must be a (B, N) bool tensor, got {atoms.mask.dtype} {tuple(atoms.mask.shape)}")
    if atoms.atom_types.shape != (B, N) or atoms.atom_types.dtype not in (torch.long, torch.int):
        raise ValueError(f"atoms.atom_types must be ({B}, {N}) long like the mask, got "
                         f"{atoms.atom_types.dtype} {tuple(atoms.atom_types.shape)}")
    for name in ("pos", "frac_coords"):
        t = fields_[name]
        if t.shape != (B, N, 3) or t.dtype != dtype:
            raise ValueError(f"atoms.{name} must be ({B}, {N}, 3) {dtype} like the model, got {t.dtype} "
                             f"{tuple(t.shape)}")
    if atoms.dataset_idx.shape != (B,) or not ((atoms.dataset_idx == MOLECULE) | (atoms.dataset_idx == CRYSTAL)).all():
        raise ValueError(f"atoms.dataset_idx must be ({B},) with {MOLECULE} (molecule) or {CRYSTAL} (crystal), got "
                         f"{atoms.dataset_idx.tolist() if atoms.dataset_idx.numel() <= 8 else tuple(atoms.dataset_idx.shape)}")


def lattice_features(lattice: Tensor, num_atoms: Tensor, mean: Sequence[float] = LATTICE_MEAN,
                     std: Sequence[float] = LATTICE_STD) -> Tensor:
    r"""Standardised lattice parameters, the autoencoder's lattice target.

    With :math:`N` atoms in the cell, lengths :math:`(a, b, c)` in Angstrom and angles
    :math:`(\alpha, \beta, \gamma)` in degrees,

    .. math::
        \phi = \Big(\frac{a}{N^{1/3}}, \frac{b}{N^{1/3}}, \frac{c}{N^{1/3}},
        \frac{\pi\alpha}{180}, \frac{\pi\beta}{180}, \frac{\pi\gamma}{180}\Big), \qquad
        \hat\phi_k = \frac{\phi_k - \mu_k}{\sigma_k}.

    Dividing the lengths by :math:`N^{1/3}` removes most of their growth with the cell's
    size (the volume grows like :math:`N`); ADiT and CDVAE use the same scaling and radians.
    The per-dimension standardisation (:data:`LATTICE_MEAN`, :data:`LATTICE_STD`, from MP-20)
    puts every target at unit scale, so an MSE on :math:`\hat\phi` is of order 1 at
    initialisation. :func:`lattice_from_features` is the inverse.

    Args:
        lattice: lengths (Angstrom) and angles (degrees).
        num_atoms: atoms per cell (clamped to >= 1).
        mean, std: :math:`\mu`, :math:`\sigma`, six values each.

    Shapes:
        lattice: ``(B, 6)``; num_atoms: ``(B,)`` -> ``(B, 6)``
    """
    if lattice.dim() != 2 or lattice.shape[-1] != 6:
        raise ValueError(f"lattice must be (B, 6): 3 lengths and 3 angles per system, got {tuple(lattice.shape)}")
    mu, sigma = _stats(mean, std, lattice)
    scale = num_atoms.to(lattice.dtype).clamp(min=1)[:, None] ** (1.0 / 3.0)  # (B, 1)
    phi = torch.cat([lattice[:, :3] / scale, lattice[:, 3:] * (math.pi / 180.0)], dim=-1)  # (B, 6)
    return (phi - mu) / sigma


def lattice_from_features(features: Tensor, num_atoms: Tensor, mean: Sequence[float] = LATTICE_MEAN,
                          std: Sequence[float] = LATTICE_STD) -> tuple[Tensor, Tensor]:
    r"""Lengths (Angstrom) and angles (degrees) from standardised lattice features: the
    inverse of :func:`lattice_features`,
    :math:`a = (\sigma_1 \hat\phi_1 + \mu_1) N^{1/3}`,
    :math:`\alpha = \frac{180}{\pi}(\sigma_4 \hat\phi_4 + \mu_4)`. Values are returned
    as decoded, without clamping: callers that build structures should check them.

    Shapes:
        features: ``(B, 6)``; num_atoms: ``(B,)`` -> lengths ``(B, 3)``, angles ``(B, 3)``

    Example:
        >>> lat = torch.tensor([[5.64, 5.64, 5.64, 90.0, 90.0, 90.0]])
        >>> n = torch.tensor([8])
        >>> lengths, angles = lattice_from_features(lattice_features(lat, n), n)
        >>> torch.allclose(torch.cat([lengths, angles], -1), lat)
        True
    """
    mu, sigma = _stats(mean, std, features)
    phi = features * sigma + mu  # (B, 6)
    scale = num_atoms.to(features.dtype).clamp(min=1)[:, None] ** (1.0 / 3.0)  # (B, 1)
    return phi[:, :3] * scale, phi[:, 3:] * (180.0 / math.pi)


def _stats(mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
    mu = torch.as_tensor(mean, dtype=like.dtype, device=like.device)
    sigma = torch.as_tensor(std, dtype=like.dtype, device=like.device)
    if mu.shape != (6,) or sigma.shape != (6,):
        raise ValueError(f"lattice mean and std need 6 values each (3 lengths, 3 angles), got shapes "
                         f"{tuple(mu.shape)} and {tuple(sigma.shape)}")
    if not bool((sigma > 0).all()):
        raise ValueError(f"lattice std must be positive in every dimension, got {sigma.tolist()}")
    return mu, sigma


class AtomAutoencoder(nn.Module):
    r"""Variational autoencoder from atoms to per-atom latents and back.

    Encoder: each atom is a token
    :math:`h_i = E[z_i] + \mathrm{MLP}(x_i) + \mathrm{MLP}(f_i)` (type embedding, Cartesian
    and fractional coordinates; the last is zero for molecules), passed through a
    :class:`~dit3d.nn.DiTTrunk` conditioned on the system kind (molecule/crystal) to a
    diagonal Gaussian :math:`q(z_i \mid \cdot) = \mathcal{N}(\mu_i, \sigma_i^2)`.
    Decoder: a second trunk maps :math:`z` back to type logits, positions and fractional
    coordinates per atom, and the lattice from the masked mean of its tokens. The lattice
    is predicted as the standardised features :math:`\hat\phi` of :func:`lattice_features`
    (lengths over :math:`N^{1/3}`, angles in radians, per-dimension mean/std ``lattice_mean``
    / ``lattice_std``); :meth:`decode_lattice` turns them back into Angstrom and degrees.

    Args:
        hidden_size: token width ``D`` of both trunks.
        depth: blocks in each of the encoder and decoder.
        num_heads: attention heads.
        latent_dim: per-atom latent width (8 in ADiT).
        max_z: largest atomic number.
        lattice_mean, lattice_std: standardisation of the lattice features (six values
            each; default :data:`LATTICE_MEAN`, :data:`LATTICE_STD`). They are part of the
            config (stored by :meth:`save_pretrained`), not of the weights.

    Shapes:
        see :class:`Atoms`; latents are ``(B, N, latent_dim)``.
    """

    def __init__(self, hidden_size: int = 512, depth: int = 8, num_heads: int = 8, latent_dim: int = 8,
                 max_z: int = MAX_Z, lattice_mean: Sequence[float] | None = None,
                 lattice_std: Sequence[float] | None = None) -> None:
        super().__init__()
        D = hidden_size
        self.config = dict(hidden_size=hidden_size, depth=depth, num_heads=num_heads, latent_dim=latent_dim, max_z=max_z)
        lattice_mean = LATTICE_MEAN if lattice_mean is None else [float(v) for v in lattice_mean]
        lattice_std = LATTICE_STD if lattice_std is None else [float(v) for v in lattice_std]
        if (tuple(lattice_mean), tuple(lattice_std)) != (LATTICE_MEAN, LATTICE_STD):
            # only non-defaults go in the config, so configs written before these options stay unchanged
            self.config |= dict(lattice_mean=list(lattice_mean), lattice_std=list(lattice_std))
        self.latent_dim, self.max_z = latent_dim, max_z
        mu, sigma = _stats(lattice_mean, lattice_std, torch.zeros(()))
        # not persistent: the statistics travel in the config, and older weight files load strictly
        self.register_buffer("lattice_mean", mu, persistent=False)
        self.register_buffer("lattice_std", sigma, persistent=False)
        self.type_embed = nn.Embedding(max_z + 1, D)
        self.pos_embed, self.frac_embed = _mlp(3, D), _mlp(3, D)
        self.kind_embed = nn.Embedding(2, D)  # molecule / crystal
        self.encoder = DiTTrunk(depth, D, num_heads, out_dim=2 * latent_dim)
        self.latent_in = nn.Linear(latent_dim, D)
        self.decoder = DiTTrunk(depth, D, num_heads, out_dim=max_z + 1 + 6)
        self.lattice_head = nn.Sequential(nn.LayerNorm(D), nn.Linear(D, 6))
        initialize_weights(self)

    KIND = "adit-autoencoder"
    #: submodules that produce the latents; a decoder fine-tuned with them frozen still
    #: decodes the latents a latent DiT was trained on
    ENCODER_PARTS = ("type_embed", "pos_embed", "frac_embed", "kind_embed", "encoder")

    def encoder_state(self) -> dict[str, Tensor]:
        """The state entries of :attr:`ENCODER_PARTS` (``kind_embed`` included: the encoder reads it too)."""
        return {k: v for k, v in self.state_dict().items() if k.split(".")[0] in self.ENCODER_PARTS}

    def same_encoder(self, other: AtomAutoencoder, rtol: float = 1e-3) -> bool:
        """Whether ``other`` has this architecture and encoder weights, up to ``rtol`` (float16
        storage of a pretrained folder rounds by at most 2^-11, relative)."""
        if other.config != self.config:
            return False
        mine, theirs = self.encoder_state(), other.encoder_state()
        return all(torch.allclose(v.float(), theirs[k].float().to(v.device), rtol=rtol, atol=1e-6)
                   for k, v in mine.items())

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
        """Posterior mean and log-variance, each ``(B, N, latent_dim)``, zero at padding.

        Raises:
            ValueError: fields of the wrong type, dtype or shape, atomic numbers outside
                ``0..max_z``, system kinds other than molecule/crystal, NaN/inf positions.
        """
        _check_atoms(atoms, self.type_embed.weight.dtype)
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

    def lattice_target(self, atoms: Atoms) -> Tensor:
        """The standardised lattice features :func:`lattice_features` of ``atoms`` (the
        target of ``decode(...)["lattice"]``; meaningless for molecules).

        Shapes:
            -> ``(B, 6)``
        """
        return lattice_features(atoms.lattice, atoms.num_atoms, self.lattice_mean, self.lattice_std)

    def decode_lattice(self, features: Tensor, num_atoms: Tensor) -> tuple[Tensor, Tensor]:
        """Lengths (Angstrom) and angles (degrees) from the decoder's lattice output
        (:func:`lattice_from_features` with this model's statistics).

        Shapes:
            features: ``(B, 6)``; num_atoms: ``(B,)`` -> ``(B, 3)``, ``(B, 3)``
        """
        return lattice_from_features(features, num_atoms, self.lattice_mean, self.lattice_std)

    @staticmethod
    def sample_latent(mean: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Reparameterised draw :math:`z = \\mu + \\sigma \\epsilon`."""
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * logvar) * eps

    @staticmethod
    def kl(mean: Tensor, logvar: Tensor, mask: Tensor) -> Tensor:
        r"""Mean over real atoms of :math:`\mathrm{KL}(\mathcal{N}(\mu,\sigma^2)\,\|\,\mathcal{N}(0,I))`."""
        kl = 0.5 * (mean.square() + logvar.exp() - 1 - logvar).sum(-1)  # (B, N)
        return masked_mean(kl, mask)
