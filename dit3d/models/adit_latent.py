"""Stage 2 of ADiT: a latent DiT trained with flow matching on frozen autoencoder latents."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from torch import Tensor
from torch_geometric.data import Data

from dit3d.data.qm9 import element_counts, graph_values
from dit3d.models.adit_sampling import NUM_SPACEGROUPS, adit_label, sample_latents
from dit3d.models.adit_warm_start import load_dit_state, read_latent_source
from dit3d.models.checkpoint import module_from_checkpoint, read_lightning_checkpoint
from dit3d.models.ema import ema_copy, update_ema_
from dit3d.models.optim import adamw_with_warmup, check_decay, warn_if_decay_misses_the_end
from dit3d.models.resume import RNGStateMixin
from dit3d.nn import DiT
from dit3d.objectives import FlowMatching
from dit3d.pretrained import PretrainedError, load_state_strict
from dit3d.tokenizers.atoms import CRYSTAL, KIND_NAMES, MOLECULE, AtomAutoencoder, Atoms
from dit3d.tokenizers.augment import FRAMES, augment


def _autoencoder_from_folder(directory: Path, loaded: tuple[dict, dict] | None = None) -> AtomAutoencoder:
    """An autoencoder folder (``AtomAutoencoder.save_pretrained``) or the autoencoder of an
    ADiT generator folder (weights stored as float16 come back as float32); ``loaded`` is the
    folder's ``(config, weights)`` when the caller has read them already."""
    from dit3d.pretrained import load_pretrained

    config, weights = loaded or load_pretrained(directory)
    if config.get("kind") == AtomAutoencoder.KIND:  # AtomAutoencoder.save_pretrained's layout
        init, prefix = config.get("init"), ""
    else:  # an ADiT generator's
        init, prefix = config.get("autoencoder"), "autoencoder."
    if not isinstance(init, dict):
        raise PretrainedError(f"{directory}: holds a {config.get('kind')!r} model, not an ADiT autoencoder or "
                              "generator folder")
    model = AtomAutoencoder(**init)
    load_state_strict(model, {k[len(prefix):]: v.float() for k, v in weights.items() if k.startswith(prefix)},
                      str(directory))
    return model


def load_autoencoder(path: str | dict) -> AtomAutoencoder:
    """Frozen autoencoder from a pretrained folder (an autoencoder's, or an ADiT generator's),
    or a stage-1 Lightning ``.ckpt`` (read with ``weights_only=True``: tensors and plain
    hyper-parameters only). A dict is an autoencoder config: the architecture only, weights
    to be loaded later."""
    if isinstance(path, dict):
        return AtomAutoencoder(**path).eval().requires_grad_(False)
    p = Path(path)
    if p.is_dir():
        model = _autoencoder_from_folder(p)
    else:
        if not p.is_file():
            raise FileNotFoundError(f"autoencoder {path}: no such folder or checkpoint file")
        ckpt = read_lightning_checkpoint(p)
        hp = ckpt.get("hyper_parameters") or {}
        keys = ("hidden_size", "depth", "num_heads", "latent_dim")
        if not all(k in hp for k in keys):
            raise ValueError(f"{path}: not a stage-1 ADiT autoencoder checkpoint (hyper-parameters {sorted(hp)})")
        lattice = {k: hp[k] for k in ("lattice_mean", "lattice_std") if hp.get(k) is not None}
        model = AtomAutoencoder(**{k: hp[k] for k in keys}, **lattice)
        prefix = "autoencoder."
        try:
            load_state_strict(model, {k[len(prefix):]: v for k, v in ckpt["state_dict"].items()
                                      if k.startswith(prefix)}, str(path))
        except PretrainedError as e:
            raise ValueError(str(e)) from None
    model.eval().requires_grad_(False)
    return model


def conditioned_kinds(element_conditioning: bool | str) -> tuple[int, ...]:
    """The system kinds an ``element_conditioning`` setting gives the DiT elements for:
    ``True`` both, ``"molecules"`` / ``"crystals"`` one, ``False`` none.

    >>> conditioned_kinds("molecules"), conditioned_kinds(True), conditioned_kinds(False)
    ((0,), (0, 1), ())
    """
    choices = {False: (), True: (MOLECULE, CRYSTAL), "molecules": (MOLECULE,), "crystals": (CRYSTAL,)}
    if not isinstance(element_conditioning, (bool, str)) or element_conditioning not in choices:
        raise ValueError(f"element_conditioning must be true, false, 'molecules' or 'crystals', "
                         f"got {element_conditioning!r}")
    return choices[element_conditioning]


def load_latent_checkpoint(path: str | Path) -> "ADiTLatentModule":
    """Rebuild a trained :class:`ADiTLatentModule` from its Lightning ``.ckpt`` without
    unpickling code (``weights_only=True``) and without the stage-1 file."""
    ckpt = read_lightning_checkpoint(path)
    if not isinstance((ckpt.get("hyper_parameters") or {}).get("autoencoder"), dict):
        raise ValueError(f"{path}: not an ADiT stage-2 checkpoint (no autoencoder config in its hyper-parameters)")
    return module_from_checkpoint(ckpt, ADiTLatentModule, str(path))


class ADiTLatentModule(RNGStateMixin, LightningModule):
    """Flow matching on per-atom latents of a frozen :class:`AtomAutoencoder`.

    Training encodes randomly rotated systems, or with ``frame="principal"`` molecules in
    their principal-axes pose (molecules centred, crystals also randomly translated with
    periodic wrap: :func:`~dit3d.tokenizers.augment.augment`) with the posterior mean,
    standardises the latents with per-channel statistics measured on the first
    ``stats_batches`` training batches (stored with the weights), and trains a
    :class:`~dit3d.nn.DiT` with :class:`~dit3d.objectives.FlowMatching` (t = 0 noise,
    t = 1 data). Padded atoms are masked everywhere. The DiT is conditioned on the
    system kind (0 molecule, 1 crystal, 2 null for classifier-free guidance) and uses
    self-conditioning with probability ``self_condition_prob``. Mixed molecule/crystal
    batches (e.g. from :class:`~dit3d.data.JointDataModule`) train one model for both;
    the atom-count histogram is kept per kind (``atom_count_hist[kind, n]``).

    Space-group conditioning (``spacegroup_conditioning=True``, off by default) widens the
    label to one class per (kind, space group): 0 molecule, 1 crystal of any space group,
    ``1 + s`` crystal of space group ``s`` in 1..230, 232 null. During training a crystal's
    space group is replaced by "any" with probability ``spacegroup_dropout`` (crystals
    whose space group is unknown, 0, always are), and the whole label by null with
    probability ``class_dropout``, so one network samples unconditionally, per kind, or per
    space group (:meth:`label_for`), with classifier-free guidance on each.

    Args:
        autoencoder: pretrained folder or stage-1 ``.ckpt`` of the autoencoder.
        preset, depth, hidden_size, num_heads: DiT size (preset overridden by the rest).
        class_dropout: label dropout for guidance.
        prediction, time_sampling, self_condition_prob: flow-matching options.
        lr, weight_decay, warmup_steps: AdamW with linear warm-up.
        lr_decay_steps: after the warm-up, decay the learning rate linearly to 0 at this
            step (set it to the run's ``max_steps``); None (default) keeps it constant.
        stats_batches: batches used to measure latent mean and std.
        max_atoms: largest system size of the atom-count histogram.
        ema_decay: decay of the exponential moving average of the DiT weights that
            sampling uses (``ema_dit``), warmed up as ``min(decay, (1 + n) / (10 + n))``
            after ``n`` optimiser steps; 0 samples with the raw weights.
        spacegroup_conditioning: condition crystals on their space group as well.
        spacegroup_dropout: probability of dropping a crystal's space group (to "any
            crystal") in training, when ``spacegroup_conditioning``.
        element_conditioning: give the DiT each atom's element as a per-token label
            (``DiT(token_classes=max_z + 1)``), so the flow generates latents for a given
            composition. The training set's compositions are kept (``compositions``
            ``(F, max_z + 1)`` element counts, ``composition_weight`` ``(2, F)`` systems of
            each kind with that composition), and generators draw a composition from
            them where the plain model draws an atom count. ``"molecules"`` (or
            ``"crystals"``) conditions that kind only: the other kind's tokens get label 0
            (no element given; no element has atomic number 0) and it still generates its
            elements, so a joint model's crystal compositions can stay novel while its
            molecules get a training formula. Off by default (ADiT generates the elements).
        trunk_options: further :class:`~dit3d.nn.DiTTrunk` arguments, stored with the
            network, e.g. ``{"mlp_act": "gelu"}`` (exact GELU, faster on CPUs than DiT's tanh
            approximation) or ``{"qk_norm": True}``.
        coupling: noise-latent pairing in training, ``"independent"`` (ADiT) or
            ``"permutation"``: each molecule's noise tokens reordered to the optimal
            assignment onto its atoms' latents (equivariant OT flow matching, Klein et al.
            2023), for straighter flows; sampling is the same either way. On QM9 it
            learnt slower than ADiT's independent pairs (data/adit_qm9_cpu/README.md).
        init_from: start from a trained latent DiT (a stage-2 ``.ckpt`` or an ADiT
            generator folder) of the same size, trained on the latents of the same encoder:
            its weights and latent statistics are copied in when fitting starts
            (:meth:`load_init_weights`), unless ``autoencoder`` is a config dict: then the
            weights come from this module's own checkpoint (loading it, or resuming a run
            from it), so neither needs the source file. The source may lack
            element conditioning: the element table then starts at zero, so training
            continues from exactly the source's model and learns what the elements add.
        frame: the pose of the systems whose latents the DiT learns: ``"random"`` (ADiT: a
            Haar-random rotation per system and step) or ``"principal"``: each molecule
            centred and turned into its principal-axes frame
            (:func:`~dit3d.tokenizers.augment.principal_axes`), crystals in their canonical
            cell orientation, so the flow learns one pose per geometry instead of every
            rotation of it; samples then come out in that pose (molecules are judged by
            rotation-invariant measures).
    """

    def __init__(self, autoencoder: str | dict, preset: str = "DiT-S", depth: int | None = None,
                 hidden_size: int | None = None, num_heads: int | None = None, class_dropout: float = 0.1,
                 prediction: str = "velocity", time_sampling: str = "uniform", self_condition_prob: float = 0.5,
                 lr: float = 1e-4, weight_decay: float = 0.0, warmup_steps: int = 500, stats_batches: int = 20,
                 max_atoms: int = 64, ema_decay: float = 0.999, spacegroup_conditioning: bool = False,
                 spacegroup_dropout: float = 0.2,
                 element_conditioning: bool | Literal["molecules", "crystals"] = False,
                 trunk_options: Mapping[str, Any] | None = None, coupling: str = "independent",
                 init_from: str | None = None, lr_decay_steps: int | None = None, frame: str = "random") -> None:
        super().__init__()
        self.save_hyperparameters()
        self.autoencoder = load_autoencoder(autoencoder)
        self.hparams["autoencoder"] = self.autoencoder.config  # checkpoints rebuild it without the stage-1 file
        self.hparams["frame"] = frame  # save_hyperparameters skips an argument named "frame" (Lightning's own name)
        check_decay(warmup_steps, lr_decay_steps, "lr_decay_steps")
        if frame not in FRAMES:
            raise ValueError(f"frame must be one of {FRAMES} (random rotations as ADiT, or each molecule's "
                             f"principal-axes pose), got {frame!r}")
        if not 0.0 <= spacegroup_dropout <= 1.0:
            raise ValueError(f"spacegroup_dropout must lie in [0, 1], got {spacegroup_dropout!r}")
        self.element_kinds = conditioned_kinds(element_conditioning)  # kinds whose tokens carry their elements
        latent = self.autoencoder.latent_dim
        num_classes = 2 + NUM_SPACEGROUPS if spacegroup_conditioning else 2
        token_classes = self.autoencoder.max_z + 1 if self.element_kinds else 0
        self.dit = DiT(latent, time_scale=1000.0, preset=preset, depth=depth, hidden_size=hidden_size, num_heads=num_heads,
                       num_classes=num_classes, class_dropout=class_dropout, self_condition=self_condition_prob > 0,
                       token_classes=token_classes, **dict(trunk_options or {}))
        self.ema_dit = ema_copy(self.dit, ema_decay)
        self.flow = FlowMatching(prediction, time_sampling, self_condition_prob=self_condition_prob, coupling=coupling)
        self.register_buffer("latent_mean", torch.zeros(latent))
        self.register_buffer("latent_std", torch.ones(latent))
        self.register_buffer("atom_count_hist", torch.zeros(2, max_atoms + 1))  # per kind
        self.register_buffer("stats_ready", torch.tensor(False))
        given = torch.zeros(2, dtype=torch.bool)
        given[list(self.element_kinds)] = True
        self.register_buffer("element_given", given, persistent=False)  # (2,) per kind, from the setting
        if self.element_kinds:  # filled by measure_compositions; sized by the data, so loading resizes them
            self.register_buffer("compositions", torch.zeros(0, self.autoencoder.max_z + 1, dtype=torch.long))
            self.register_buffer("composition_weight", torch.zeros(2, 0))
        # an autoencoder given as a config dict gets its weights from this module's own checkpoint
        # (load_from_checkpoint, or LightningCLI resuming from ckpt_path, which re-reads the checkpoint's
        # hyper-parameters); that checkpoint holds the warm-started DiT too, so the source is not read again
        self._init_loaded = init_from is None or isinstance(autoencoder, Mapping)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        for name in ("compositions", "composition_weight"):
            if hasattr(self, name) and prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ latents
    def pose(self, atoms: Atoms, generator: torch.Generator | None = None) -> Atoms:
        """The systems in the frame the DiT learns (``frame``): randomly rotated, or
        molecules in their principal-axes pose (:func:`~dit3d.tokenizers.augment.augment`);
        crystals also randomly translated."""
        return augment(atoms, generator, frame=self.hparams.frame)

    @torch.no_grad()
    def encode(self, atoms: Atoms) -> Tensor:
        """Standardised posterior-mean latents ``(B, N, L)``, zero at padding."""
        self.autoencoder.eval()
        mean, _ = self.autoencoder.encode(atoms)
        return (mean - self.latent_mean) / self.latent_std * atoms.mask[..., None]

    @torch.no_grad()
    def measure_statistics(self, dataset, batches) -> None:
        """Latent mean/std over the real atoms of the first ``stats_batches`` of
        ``batches``, and per-kind atom-count histograms of the whole ``dataset``."""
        zs = []
        for i, batch in zip(range(self.hparams.stats_batches), batches):
            atoms = Atoms.from_pyg(batch.to(self.device))
            zs.append(self.autoencoder.encode(self.pose(atoms))[0][atoms.mask])
        z = torch.cat(zs)  # (atoms, L)
        self.latent_mean.copy_(z.mean(0))
        self.latent_std.copy_(z.std(0).clamp(min=1e-3))
        counts = graph_values(dataset, "num_atoms").clamp(max=self.hparams.max_atoms)
        kinds = graph_values(dataset, "dataset_idx")
        hist = torch.zeros_like(self.atom_count_hist)
        hist.index_put_((kinds.to(hist.device), counts.to(hist.device)), torch.ones_like(hist[0, 0]).expand(len(counts)),
                        accumulate=True)
        self.atom_count_hist.copy_(hist)
        if self.element_kinds:
            self.measure_compositions(dataset)
        self.stats_ready.fill_(True)

    @torch.no_grad()
    def measure_compositions(self, dataset: Sequence[Data]) -> None:
        """The distinct compositions of ``dataset`` and how many systems of each kind have
        each (``compositions``, ``composition_weight``), for an element-conditioned model;
        only the conditioned kinds' systems are counted, so an unconditioned kind's row is 0."""
        kinds = graph_values(dataset, "dataset_idx").long()  # (M,)
        counts = element_counts(dataset, self.autoencoder.max_z + 1)  # (M, Z + 1)
        keep = self.element_given.cpu()[kinds]  # (M,)
        if not bool(keep.any()):
            names = " or ".join(KIND_NAMES[k] + "s" for k in self.element_kinds)
            raise ValueError(f"element_conditioning={self.hparams.element_conditioning!r} gives the elements of "
                             f"{names}, but the training data holds none; choose the kind it holds")
        table, which = torch.unique(counts[keep], dim=0, return_inverse=True)  # (F, Z + 1), (M',)
        weight = torch.zeros(2, len(table))
        weight.index_put_((kinds[keep], which), torch.ones(len(which)), accumulate=True)
        device = self.latent_mean.device
        self.compositions, self.composition_weight = table.to(device), weight.to(device)

    def load_init_weights(self) -> None:
        """Copy the latent DiT of ``init_from`` (raw and EMA weights, latent statistics and
        atom-count histograms) into this module (once: ``fit`` calls it when it starts).

        Raises:
            ValueError: ``init_from`` was trained on another encoder's latents or in another
                ``frame``, or its DiT has another architecture than this module's.
        """
        path = self.hparams.init_from
        source = read_latent_source(path)
        if not self.autoencoder.same_encoder(source.autoencoder):
            raise ValueError(f"init_from {path} learnt the latents of another encoder than this module's "
                             "autoencoder; set autoencoder to the one the source was trained with")
        frame = self.hparams.frame
        if source.frame != frame:  # its statistics and flow describe latents of other poses
            raise ValueError(f"init_from {path} learnt its systems in the {source.frame!r} frame, this module in "
                             f"the {frame!r} one; set frame={source.frame!r} or train from scratch")
        load_dit_state(self.dit, source.dit, str(path))
        if self.ema_dit is not None:
            load_dit_state(self.ema_dit, source.ema_dit, str(path))
        for name, value in source.buffers.items():
            mine = getattr(self, name)
            if value.shape != mine.shape:
                raise ValueError(f"init_from {path}: {name} has shape {tuple(value.shape)}, this module's "
                                 f"{tuple(mine.shape)}; set max_atoms as the source did")
            mine.copy_(value)
        self.stats_ready.fill_(True)
        self._init_loaded = True

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stored = (checkpoint.get("hyper_parameters") or {}).get("frame", "random")
        frame = self.hparams.frame
        if stored != frame:  # e.g. a run resumed under an edited config
            raise ValueError(f"this checkpoint learnt its systems in the {stored!r} frame, this module is set to "
                             f"{frame!r}; resume with frame: {stored}")
        super().on_load_checkpoint(checkpoint)

    def setup(self, stage: str) -> None:
        if stage == "fit" and not self._init_loaded:
            self.load_init_weights()  # before a resumed checkpoint is restored, which overwrites it

    def on_fit_start(self) -> None:
        warn_if_decay_misses_the_end(self.trainer, self.hparams.lr_decay_steps, "lr_decay_steps")
        needs_compositions = bool(self.element_kinds) and self.compositions.numel() == 0  # e.g. after a warm start
        if bool(self.stats_ready) and not needs_compositions:
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "train_dataset"):
            raise RuntimeError("ADiTLatentModule measures latent statistics from the datamodule's train_dataset; "
                               "pass a datamodule to Trainer.fit (e.g. dit3d.data.QM9DataModule or JointDataModule)")
        if bool(self.stats_ready):
            self.measure_compositions(datamodule.train_dataset)
        else:
            self.measure_statistics(datamodule.train_dataset, datamodule.train_dataloader())

    # ------------------------------------------------------------------- labels
    def label_for(self, kind: int = MOLECULE, spacegroup: int | None = None) -> int:
        """The DiT class of a system kind (and space group, with ``spacegroup_conditioning``).

        Raises:
            ValueError: a space group without ``spacegroup_conditioning``, for a molecule,
                or outside 1..230.
        """
        return adit_label(kind, spacegroup, self.hparams.spacegroup_conditioning)

    def labels(self, atoms: Atoms, generator: torch.Generator | None = None, drop_spacegroup: bool = False) -> Tensor:
        """DiT classes of a batch, ``(B,)``: ``dataset_idx``, or with space-group conditioning
        ``1 + spacegroup`` for crystals with a known space group (each dropped to 1 with
        probability ``spacegroup_dropout`` when ``drop_spacegroup``)."""
        y = atoms.dataset_idx
        if not self.hparams.spacegroup_conditioning:
            return y
        if atoms.spacegroup is None:
            raise ValueError("spacegroup_conditioning needs the batch's space groups (a 'spacegroup' field, as "
                             "dit3d.data.CrystalDataset stores)")
        sg = atoms.spacegroup.to(y.device)
        keep = (y == CRYSTAL) & (sg >= 1) & (sg <= NUM_SPACEGROUPS)
        if drop_spacegroup and self.hparams.spacegroup_dropout > 0:
            u = torch.rand(y.shape, generator=generator).to(y.device)
            keep = keep & (u >= self.hparams.spacegroup_dropout)
        return torch.where(keep, 1 + sg, y)

    def token_kwargs(self, atoms: Atoms) -> dict[str, Tensor]:
        """The DiT's per-token labels with ``element_conditioning``, ``{"token_labels":
        (B, N)}``: the atomic numbers of the conditioned kinds' systems, 0 elsewhere (and
        at padding); without it nothing."""
        if not self.element_kinds:
            return {}
        given = self.element_given[atoms.dataset_idx]  # (B,)
        return {"token_labels": atoms.atom_types.long() * given[:, None]}  # (B, N)

    # ----------------------------------------------------------------- training
    def training_step(self, batch, batch_idx: int) -> Tensor:
        atoms = self.pose(Atoms.from_pyg(batch))
        z = self.encode(atoms)  # (B, N, L)
        y = self.dit.drop_labels(self.labels(atoms, drop_spacegroup=True))  # once: both self-conditioning calls see the same labels
        loss = self.flow.training_loss(self.dit, z, mask=atoms.mask, y=y, **self.token_kwargs(atoms))
        self.log("train/loss", loss, prog_bar=True, batch_size=z.shape[0])
        return loss

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        self.update_ema(self.global_step)

    @torch.no_grad()
    def update_ema(self, step: int) -> None:
        """Move the EMA weights towards the current ones after optimiser step ``step``;
        the decay grows as ``(1 + step) / (10 + step)`` up to ``ema_decay`` so the average
        forgets the random initialisation quickly."""
        update_ema_(self.ema_dit, self.dit, step, self.hparams.ema_decay)

    @property
    def sampling_dit(self) -> DiT:
        """The network sampling uses: the EMA copy when there is one."""
        return self.ema_dit if self.ema_dit is not None else self.dit

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Flow-matching loss of the raw and EMA networks on the conditional labels, per
        kind: ``val/loss``, ``val/loss_ema`` for molecules (the names of molecule-only runs),
        ``val/crystal/loss``, ``val/crystal/loss_ema`` for crystals."""
        atoms = self.pose(Atoms.from_pyg(batch), torch.Generator().manual_seed(batch_idx))
        for kind in atoms.kinds():
            part = atoms.select(atoms.dataset_idx == kind)
            z = self.encode(part)
            y = self.labels(part)
            prefix = "val/crystal/" if kind == CRYSTAL else "val/"
            for name, net in (("loss", self.dit), ("loss_ema", self.ema_dit)):
                if net is not None:
                    g = torch.Generator().manual_seed(1000 + batch_idx)  # same t and noise for both
                    loss = self.flow.training_loss(net, z, mask=part.mask, generator=g, y=y, **self.token_kwargs(part))
                    self.log(prefix + name, loss, prog_bar=True, batch_size=z.shape[0], add_dataloader_idx=False)

    def configure_optimizers(self):
        hp = self.hparams
        return adamw_with_warmup(self.dit.parameters(), hp.lr, hp.weight_decay, hp.warmup_steps,
                                 hp.lr_decay_steps)

    # ----------------------------------------------------------------- sampling
    def sample_latents(self, num_atoms: Tensor, kind: int = 0, steps: int = 100, solver: str = "euler",
                       guidance: float = 1.0, generator: torch.Generator | None = None,
                       spacegroup: int | None = None, atom_types: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """De-standardised latents for systems of the given sizes
        (:func:`~dit3d.models.adit_sampling.sample_latents` with the EMA network), guided
        towards ``kind`` (and ``spacegroup``, see :meth:`label_for`); ``atom_types``
        ``(B, N)`` gives the elements to a model trained with ``element_conditioning``
        (atomic numbers for a conditioned kind, zeros for a kind outside
        :attr:`element_kinds`; None raises for such a model)."""
        return sample_latents(self.sampling_dit, self.flow, num_atoms, self.latent_mean, self.latent_std,
                              self.label_for(kind, spacegroup), steps, solver, guidance, generator,
                              atom_types=atom_types)
