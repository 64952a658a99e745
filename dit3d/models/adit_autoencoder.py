"""Stage 1 of ADiT: train the all-atom autoencoder (LightningModule)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor

from dit3d.models.optim import adamw_with_warmup
from dit3d.tokenizers.atoms import CRYSTAL, MOLECULE, AtomAutoencoder, Atoms
from dit3d.tokenizers.augment import center, corrupt, rotate_and_center


def min_image(diff: Tensor) -> Tensor:
    """Fractional-coordinate differences wrapped to [-0.5, 0.5): the periodic
    (minimum-image) error, so 0.99 vs 0.01 counts as 0.02 apart, not 0.98."""
    return diff - torch.round(diff)


def reconstruction_losses(out: dict[str, Tensor], target: Atoms) -> dict[str, Tensor]:
    """Per-term losses over real atoms: type cross-entropy; Cartesian MSE for molecules;
    minimum-image MSE of fractional coordinates and lattice MSE for crystals."""
    m = target.mask
    is_mol = (target.dataset_idx == MOLECULE)[:, None] & m  # (B, N)
    is_xtal = (target.dataset_idx == CRYSTAL)[:, None] & m  # (B, N)
    zero = out["pos"].sum() * 0  # keeps the graph when a term has no atoms
    losses = {"type": F.cross_entropy(out["type_logits"][m], target.atom_types[m])}
    losses["pos"] = (out["pos"] - target.pos).square().sum(-1)[is_mol].mean() if is_mol.any() else zero
    if is_xtal.any():
        losses["frac"] = min_image(out["frac_coords"] - target.frac_coords).square().sum(-1)[is_xtal].mean()
        xtal = target.dataset_idx == CRYSTAL
        losses["lattice"] = (out["lattice"][xtal] - target.lattice[xtal]).square().mean()
    else:
        losses["frac"] = losses["lattice"] = zero
    return losses


class ADiTAutoencoderModule(LightningModule):
    """Trains :class:`~dit3d.tokenizers.AtomAutoencoder` as a denoising VAE.

    Each training batch is centred and rotated by independent Haar-random rotations;
    the encoder sees a corrupted copy (10% of types masked, 10% of positions jittered
    by 0.1 Angstrom) and the decoder must reproduce the clean batch. Loss:
    ``type_weight * CE + pos_weight * MSE(pos) + frac_weight * MSE_periodic(frac)
    + lattice_weight * MSE(lattice) + kl_weight * KL``.

    Validation encodes the clean centred batch with the posterior mean and reports the
    match rate: a system matches when every atom type is recovered and the RMSD of its
    positions (same frame, same atom order) is below ``match_rmsd`` Angstrom.

    Args:
        hidden_size, depth, num_heads, latent_dim: autoencoder size (per trunk).
        kl_weight: weight of the KL term (1e-5 in ADiT).
        type_weight, pos_weight, frac_weight, lattice_weight: loss weights.
        mask_prob, jitter_prob, jitter_std: denoising corruption.
        lr, weight_decay, warmup_steps: AdamW with linear warm-up.
        match_rmsd: RMSD threshold (Angstrom) of the match rate.
    """

    def __init__(self, hidden_size: int = 512, depth: int = 8, num_heads: int = 8, latent_dim: int = 8,
                 kl_weight: float = 1e-5, type_weight: float = 1.0, pos_weight: float = 10.0,
                 frac_weight: float = 10.0, lattice_weight: float = 1.0, mask_prob: float = 0.1,
                 jitter_prob: float = 0.1, jitter_std: float = 0.1, lr: float = 1e-4,
                 weight_decay: float = 0.0, warmup_steps: int = 500, match_rmsd: float = 0.25) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.autoencoder = AtomAutoencoder(hidden_size, depth, num_heads, latent_dim)

    def forward(self, atoms: Atoms, sample: bool = True) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        mean, logvar = self.autoencoder.encode(atoms)  # (B, N, L) each
        z = self.autoencoder.sample_latent(mean, logvar) if sample else mean
        return self.autoencoder.decode(z, atoms.mask, atoms.dataset_idx), mean, logvar

    def training_step(self, batch, batch_idx: int) -> Tensor:
        hp = self.hparams
        clean = rotate_and_center(Atoms.from_pyg(batch))
        noisy = corrupt(clean, hp.mask_prob, hp.jitter_prob, hp.jitter_std)
        out, mean, logvar = self(noisy)
        losses = reconstruction_losses(out, clean)
        losses["kl"] = self.autoencoder.kl(mean, logvar, clean.mask)
        loss = (hp.type_weight * losses["type"] + hp.pos_weight * losses["pos"] + hp.frac_weight * losses["frac"]
                + hp.lattice_weight * losses["lattice"] + hp.kl_weight * losses["kl"])
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, batch_size=clean.mask.shape[0])
        self.log("train/loss", loss, prog_bar=True, batch_size=clean.mask.shape[0])
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        atoms = Atoms.from_pyg(batch)
        atoms.pos = center(atoms.pos, atoms.mask)
        out, _, _ = self(atoms, sample=False)
        metrics = reconstruction_metrics(out, atoms, self.hparams.match_rmsd)
        self.log_dict({f"val/{k}": v for k, v in metrics.items()}, batch_size=atoms.mask.shape[0], prog_bar=True)

    def configure_optimizers(self):
        hp = self.hparams
        return adamw_with_warmup(self.parameters(), hp.lr, hp.weight_decay, hp.warmup_steps)


def reconstruction_metrics(out: dict[str, Tensor], target: Atoms, match_rmsd: float) -> dict[str, Tensor]:
    """Match rate, mean RMSD (Angstrom) and per-atom type accuracy of a reconstruction."""
    m = target.mask
    types_ok = ((out["type_logits"].argmax(-1) == target.atom_types) | ~m).all(-1)  # (B,)
    sq = (out["pos"] - target.pos).square().sum(-1) * m  # (B, N)
    rmsd = (sq.sum(-1) / m.sum(-1).clamp(min=1)).sqrt()  # (B,)
    type_acc = (out["type_logits"].argmax(-1) == target.atom_types)[m].float().mean()
    match = (types_ok & (rmsd < match_rmsd)).float().mean()
    return {"match_rate": match, "rmsd": rmsd.mean(), "type_accuracy": type_acc}
