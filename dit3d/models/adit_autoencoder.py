"""Stage 1 of ADiT: train the all-atom autoencoder (LightningModule) on molecules, crystals
or both."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor

from dit3d.models.adit_contacts import close_contact_loss, decoded_coordinates, min_image
from dit3d.models.optim import adamw_with_warmup
from dit3d.models.resume import RNGStateMixin
from dit3d.tokenizers.atoms import CRYSTAL, MOLECULE, AtomAutoencoder, Atoms
from dit3d.tokenizers.augment import augment, center_molecules, corrupt

#: lattice tolerances of the crystal match rate: pymatgen ``StructureMatcher``'s defaults
#: (``ltol=0.2`` relative length error, ``angle_tol=5`` degrees)
MATCH_LTOL, MATCH_ANGLE_TOL = 0.2, 5.0


def reconstruction_losses(out: dict[str, Tensor], target: Atoms, lattice_target: Tensor | None = None
                          ) -> dict[str, Tensor]:
    r"""Per-term losses over real atoms, unweighted.

    * ``type``: cross-entropy of the atom types over all real atoms; ``type_molecule`` and
      ``type_crystal``: the same over each kind's atoms (0 when the kind is absent).
    * ``pos`` (molecules): :math:`\frac{1}{|M|}\sum_{i \in M} \lVert \hat x_i - x_i \rVert^2`.
    * ``frac`` (crystals): minimum-image MSE
      :math:`\frac{1}{|C|}\sum_{i \in C} \lVert (\hat f_i - f_i) - \mathrm{round}(\hat f_i - f_i) \rVert^2`.
    * ``lattice`` (crystals): MSE of the standardised lattice features over the six
      dimensions (:func:`~dit3d.tokenizers.atoms.lattice_features`); ``lattice_lengths`` and
      ``lattice_angles`` split it into its two halves (``lattice`` is their mean).

    Args:
        out: decoder outputs (:meth:`AtomAutoencoder.decode`).
        target: the clean batch.
        lattice_target: ``(B, 6)`` standardised features of ``target`` (from
            :meth:`AtomAutoencoder.lattice_target`); required when the batch holds crystals.

    Raises:
        ValueError: crystals without ``lattice_target``.
    """
    m = target.mask
    is_mol = (target.dataset_idx == MOLECULE)[:, None] & m  # (B, N)
    is_xtal = (target.dataset_idx == CRYSTAL)[:, None] & m  # (B, N)
    zero = out["pos"].sum() * 0  # keeps the graph when a term has no atoms
    ce = F.cross_entropy(out["type_logits"][m], target.atom_types[m], reduction="none")  # (atoms,)
    kind_of_atom = target.dataset_idx[:, None].expand_as(m)[m]  # (atoms,)
    losses = {"type": ce.mean()}
    for kind, name in ((MOLECULE, "type_molecule"), (CRYSTAL, "type_crystal")):
        sel = kind_of_atom == kind
        losses[name] = ce[sel].mean() if sel.any() else zero
    losses["pos"] = (out["pos"] - target.pos).square().sum(-1)[is_mol].mean() if is_mol.any() else zero
    if is_xtal.any():
        if lattice_target is None:
            raise ValueError("the batch holds crystals: pass lattice_target=autoencoder.lattice_target(target)")
        losses["frac"] = min_image(out["frac_coords"] - target.frac_coords).square().sum(-1)[is_xtal].mean()
        xtal = target.dataset_idx == CRYSTAL
        sq = (out["lattice"][xtal] - lattice_target[xtal]).square()  # (C, 6)
        losses["lattice_lengths"], losses["lattice_angles"] = sq[:, :3].mean(), sq[:, 3:].mean()
        losses["lattice"] = sq.mean()
    else:
        losses["frac"] = losses["lattice"] = losses["lattice_lengths"] = losses["lattice_angles"] = zero
    return losses


class ADiTAutoencoderModule(RNGStateMixin, LightningModule):
    r"""Trains :class:`~dit3d.tokenizers.AtomAutoencoder` as a denoising VAE on molecules,
    crystals, or mixed batches of both (``dataset_idx`` 0 / 1).

    Augmentation (:func:`~dit3d.tokenizers.augment.augment`): every system gets an
    independent Haar-random rotation; molecules are centred; crystals rotate their
    Cartesian positions and cell together and, with ``translate_crystals``, are shifted by a
    random fractional translation with periodic wrap (fractional coordinates, lengths and
    angles are rotation invariant). The encoder sees a corrupted copy (10% of types masked,
    10% of positions jittered by 0.1 Angstrom) and the decoder must reproduce the clean batch.

    Loss, with per-dataset weights (molecules: types and Cartesian positions; crystals:
    types, fractional coordinates and lattice):

    .. math::
        \mathcal{L} = \frac{1}{n}\sum_{i} w^{type}_{k(i)} \mathrm{CE}_i
        + w^{pos} \mathrm{MSE}_{mol}(x) + w^{frac} \mathrm{MSE}^{periodic}_{xtal}(f)
        + w^{lat} \mathrm{MSE}_{xtal}(\hat\phi) + w^{KL} \mathrm{KL}
        + w^{contact} \mathcal{L}_{contact}

    where the cross-entropy is averaged over all ``n`` real atoms of the batch with
    :math:`w^{type}_{mol}` = ``type_weight`` and :math:`w^{type}_{xtal}` =
    ``crystal_type_weight`` (default: ``type_weight``), and :math:`\hat\phi` are the
    standardised lattice features (lengths over :math:`N^{1/3}`, angles in radians; see
    :func:`~dit3d.tokenizers.atoms.lattice_features`), which are of order 1.

    Validation encodes the clean batch (molecules centred) with the posterior mean and
    reports, per kind: the match rate, RMSD and type accuracy. A molecule matches when
    every type is recovered and the RMSD of its positions (same frame, same atom order) is
    below ``match_rmsd`` Angstrom; a crystal when every type is recovered, the RMSD of the
    minimum-image fractional error mapped through the true cell is below ``match_rmsd``,
    every length is within 20% and every angle within 5 degrees (StructureMatcher's default
    lattice tolerances; a cheap proxy without its search over origins and permutations).
    Crystals also report ``lengths_mae`` (Angstrom) and ``angles_mae`` (degrees). Molecule
    metrics are logged as ``val/<metric>`` (the names of molecule-only runs), crystal metrics
    as ``val/crystal/<metric>``, whichever validation loader the batch came from.

    Args:
        hidden_size, depth, num_heads, latent_dim: autoencoder size (per trunk).
        kl_weight: weight of the KL term (1e-5 in ADiT).
        type_weight: atom-type weight for molecules (and crystals unless ``crystal_type_weight``).
        pos_weight: Cartesian-position weight (molecules).
        frac_weight: periodic fractional-coordinate weight (crystals).
        lattice_weight: lattice weight (crystals).
        crystal_type_weight: atom-type weight for crystals (None: ``type_weight``).
        mask_prob, jitter_prob, jitter_std: denoising corruption.
        translate_crystals: random periodic translations of crystals.
        lattice_mean, lattice_std: lattice standardisation (None: the MP-20 defaults of
            :data:`~dit3d.tokenizers.atoms.LATTICE_MEAN` / ``LATTICE_STD``).
        lr, weight_decay, warmup_steps: AdamW with linear warm-up.
        match_rmsd: RMSD threshold (Angstrom) of the match rate.
        latent_noise: training only: the decoder sees ``z + latent_noise * s * eps``, with
            ``s`` the per-dimension spread of the batch's posterior means (detached), so it
            learns to decode latents that are off by that fraction of their spread, as a
            latent DiT's samples are. Scaled by the batch spread, the encoder cannot escape
            it by inflating its latents. 0 (ADiT) disables it.
        init_from: start from this autoencoder (a stage-1 ``.ckpt``, an autoencoder folder
            or an ADiT generator folder: :func:`~dit3d.models.adit_latent.load_autoencoder`);
            its architecture must be the one given here. Its weights are copied in when
            fitting starts (:meth:`load_init_weights`; a resumed run's checkpoint then
            overwrites them), so loading this module's own checkpoints never needs the file.
        freeze_encoder: train only the decoder side (``latent_in``, ``decoder``,
            ``lattice_head``) of ``init_from``, keeping
            :attr:`~dit3d.tokenizers.AtomAutoencoder.ENCODER_PARTS` fixed: the latents do
            not move, so a latent DiT trained on them stays valid and can be exported with
            the new decoder (``dit3d export ... --autoencoder``). With ``latent_noise``
            this makes a decoder tolerant of a latent DiT's imprecise samples, as Stable
            Diffusion's VAE decoder was fine-tuned with its encoder frozen.
        contact_weight: weight of the close-contact penalty
            (:func:`~dit3d.models.adit_contacts.close_contact_loss`, logged as
            ``train/contact``): decoded pairs pay the squared shortfall (per atom) for
            coming closer than the true pair or ``contact_cutoff`` Angstrom, whichever is
            less. 0 (ADiT) disables it; on adit-joint-cpu it did not reduce colliding
            samples (its card).
        contact_cutoff: the penalty's cutoff in Angstrom.
    """

    def __init__(self, hidden_size: int = 512, depth: int = 8, num_heads: int = 8, latent_dim: int = 8,
                 kl_weight: float = 1e-5, type_weight: float = 1.0, pos_weight: float = 10.0,
                 frac_weight: float = 10.0, lattice_weight: float = 1.0, mask_prob: float = 0.1,
                 jitter_prob: float = 0.1, jitter_std: float = 0.1, lr: float = 1e-4,
                 weight_decay: float = 0.0, warmup_steps: int = 500, match_rmsd: float = 0.25,
                 crystal_type_weight: float | None = None, translate_crystals: bool = True,
                 lattice_mean: Sequence[float] | None = None, lattice_std: Sequence[float] | None = None,
                 latent_noise: float = 0.0, init_from: str | None = None, freeze_encoder: bool = False,
                 contact_weight: float = 0.0, contact_cutoff: float = 1.0) -> None:
        super().__init__()
        if not latent_noise >= 0:
            raise ValueError(f"latent_noise must be >= 0 (a fraction of the latent spread), got {latent_noise}")
        if not (contact_weight >= 0 and contact_cutoff > 0):
            raise ValueError(f"contact_weight must be >= 0 and contact_cutoff > 0 Angstrom, got {contact_weight} "
                             f"and {contact_cutoff}")
        if freeze_encoder and init_from is None:
            raise ValueError("freeze_encoder keeps a trained encoder fixed: give init_from (its .ckpt or folder)")
        self.save_hyperparameters()
        self.autoencoder = AtomAutoencoder(hidden_size, depth, num_heads, latent_dim, lattice_mean=lattice_mean,
                                           lattice_std=lattice_std)
        self._init_loaded = init_from is None
        if freeze_encoder:
            for name, child in self.autoencoder.named_children():
                child.requires_grad_(name not in AtomAutoencoder.ENCODER_PARTS)

    def load_init_weights(self) -> None:
        """Copy the weights of ``init_from`` into the autoencoder (once: ``fit`` calls it when
        it starts, unless it was called before).

        Raises:
            ValueError: ``init_from`` holds another architecture than this module's.
        """
        from dit3d.models.adit_latent import load_autoencoder

        path = self.hparams.init_from
        source = load_autoencoder(path)
        if source.config != self.autoencoder.config:
            raise ValueError(f"init_from {path} is an autoencoder with {source.config}, this module builds "
                             f"{self.autoencoder.config}: set the same sizes (and lattice statistics) in the config")
        self.autoencoder.load_state_dict(source.state_dict())
        self._init_loaded = True

    def setup(self, stage: str) -> None:
        if stage == "fit" and not self._init_loaded:
            self.load_init_weights()  # before a resumed checkpoint is restored, which overwrites it

    def forward(self, atoms: Atoms, sample: bool = True, latent_noise: float = 0.0
                ) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        mean, logvar = self.autoencoder.encode(atoms)  # (B, N, L) each
        z = self.autoencoder.sample_latent(mean, logvar) if sample else mean
        if latent_noise > 0:
            spread = mean.detach()[atoms.mask].std(0)  # (L,)
            z = z + latent_noise * spread * torch.randn_like(z)  # (B, N, L)
        return self.autoencoder.decode(z, atoms.mask, atoms.dataset_idx), mean, logvar

    def total_loss(self, losses: dict[str, Tensor], atoms: Atoms) -> Tensor:
        """The weighted sum of the terms of :func:`reconstruction_losses` (+ ``kl``, and
        ``contact`` when present)."""
        hp = self.hparams
        w_xtal = hp.type_weight if hp.crystal_type_weight is None else hp.crystal_type_weight
        m = atoms.mask
        n_xtal = ((atoms.dataset_idx == CRYSTAL)[:, None] & m).sum()
        n = m.sum().clamp(min=1)
        frac_xtal = n_xtal / n  # the type CE is a mean over all atoms: each kind's share of it
        type_term = (hp.type_weight * (1 - frac_xtal) * losses["type_molecule"]
                     + w_xtal * frac_xtal * losses["type_crystal"])
        contact = hp.contact_weight * losses["contact"] if "contact" in losses else 0.0
        return (type_term + hp.pos_weight * losses["pos"] + hp.frac_weight * losses["frac"]
                + hp.lattice_weight * losses["lattice"] + hp.kl_weight * losses["kl"] + contact)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        hp = self.hparams
        clean = augment(Atoms.from_pyg(batch), translate_crystals=hp.translate_crystals)
        noisy = corrupt(clean, hp.mask_prob, hp.jitter_prob, hp.jitter_std)
        out, mean, logvar = self(noisy, latent_noise=hp.latent_noise)
        losses = reconstruction_losses(out, clean, self.autoencoder.lattice_target(clean))
        losses["kl"] = self.autoencoder.kl(mean, logvar, clean.mask)
        if hp.contact_weight > 0:
            losses["contact"] = close_contact_loss(decoded_coordinates(out, clean.dataset_idx), clean,
                                                   hp.contact_cutoff)
        loss = self.total_loss(losses, clean)
        B = clean.mask.shape[0]
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, batch_size=B)
        self.log("train/crystal_fraction", (clean.dataset_idx == CRYSTAL).float().mean(), batch_size=B)
        self.log("train/loss", loss, prog_bar=True, batch_size=B)
        return loss

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        atoms = center_molecules(Atoms.from_pyg(batch))
        out, _, _ = self(atoms, sample=False)
        for kind in atoms.kinds():
            sel = atoms.dataset_idx == kind
            part = atoms.select(sel)
            part_out = {k: v[sel][:, : part.mask.shape[1]] if v.dim() == 3 else v[sel] for k, v in out.items()}
            if kind == CRYSTAL:
                metrics = crystal_reconstruction_metrics(part_out, part, self.hparams.match_rmsd, self.autoencoder)
                prefix = "val/crystal/"
            else:
                metrics = reconstruction_metrics(part_out, part, self.hparams.match_rmsd)
                prefix = "val/"
            self.log_dict({prefix + k: v for k, v in metrics.items()}, batch_size=part.mask.shape[0], prog_bar=True,
                          add_dataloader_idx=False)

    def configure_optimizers(self):
        hp = self.hparams
        trainable = [p for p in self.parameters() if p.requires_grad]  # the decoder only with freeze_encoder
        return adamw_with_warmup(trainable, hp.lr, hp.weight_decay, hp.warmup_steps)


def reconstruction_metrics(out: dict[str, Tensor], target: Atoms, match_rmsd: float) -> dict[str, Tensor]:
    """Match rate, mean RMSD (Angstrom) and per-atom type accuracy of a molecule reconstruction."""
    m = target.mask
    types_ok = ((out["type_logits"].argmax(-1) == target.atom_types) | ~m).all(-1)  # (B,)
    sq = (out["pos"] - target.pos).square().sum(-1) * m  # (B, N)
    rmsd = (sq.sum(-1) / m.sum(-1).clamp(min=1)).sqrt()  # (B,)
    type_acc = (out["type_logits"].argmax(-1) == target.atom_types)[m].float().mean()
    match = (types_ok & (rmsd < match_rmsd)).float().mean()
    return {"match_rate": match, "rmsd": rmsd.mean(), "type_accuracy": type_acc}


def crystal_reconstruction_metrics(out: dict[str, Tensor], target: Atoms, match_rmsd: float,
                                   autoencoder: AtomAutoencoder) -> dict[str, Tensor]:
    r"""Match rate, RMSD, type accuracy and lattice errors of a crystal reconstruction.

    The per-atom error is the minimum-image fractional difference mapped through the true
    cell, :math:`e_i = \mathrm{minimg}(\hat f_i - f_i)\, L` (Angstrom). A crystal matches when
    all types are right, :math:`\sqrt{\overline{\lVert e_i \rVert^2}} <` ``match_rmsd``, every
    decoded length is within ``MATCH_LTOL`` (relative) and every angle within
    ``MATCH_ANGLE_TOL`` degrees of the truth.

    Shapes:
        target: crystals only; ``target.cell`` ``(B, 3, 3)`` is required.
    """
    if target.cell is None:
        raise ValueError("crystal metrics need target.cell (lattice vectors); build Atoms with Atoms.from_pyg")
    m = target.mask
    pred_types = out["type_logits"].argmax(-1)
    types_ok = ((pred_types == target.atom_types) | ~m).all(-1)  # (B,)
    err = min_image(out["frac_coords"] - target.frac_coords) @ target.cell  # (B, N, 3) Angstrom
    rmsd = ((err.square().sum(-1) * m).sum(-1) / m.sum(-1).clamp(min=1)).sqrt()  # (B,)
    lengths, angles = autoencoder.decode_lattice(out["lattice"], target.num_atoms)  # (B, 3) each
    len_err = (lengths - target.lattice[:, :3]).abs()  # (B, 3)
    ang_err = (angles - target.lattice[:, 3:]).abs()  # (B, 3)
    lattice_ok = ((len_err <= MATCH_LTOL * target.lattice[:, :3]).all(-1) & (ang_err <= MATCH_ANGLE_TOL).all(-1))
    match = (types_ok & (rmsd < match_rmsd) & lattice_ok).float().mean()
    return {"match_rate": match, "rmsd": rmsd.mean(), "type_accuracy": (pred_types == target.atom_types)[m].float().mean(),
            "lengths_mae": len_err.mean(), "angles_mae": ang_err.mean()}
