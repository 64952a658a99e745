"""User-facing generators: load a shipped or trained model, sample chemistry objects."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rdkit import Chem

from dit3d.nn import DiT
from dit3d.objectives import FlowMatching, classifier_free_guidance
from dit3d.pretrained import PretrainedError, load_pretrained, load_state_strict, save_pretrained
from dit3d.tokenizers.atoms import MASK_TOKEN, AtomAutoencoder

#: checkpoints shipped in the repository's ``data/`` folder, by name
SHIPPED = {"adit-qm9-cpu": "adit_qm9_cpu"}
MOLECULE = 0


def resolve_pretrained(path_or_name: str | os.PathLike) -> Path:
    """A folder path, or the name of a checkpoint shipped in ``data/``."""
    path = Path(path_or_name)
    if path.is_dir():
        return path
    if str(path_or_name) in SHIPPED:
        shipped = Path(__file__).resolve().parents[1] / "data" / SHIPPED[str(path_or_name)]
        if shipped.is_dir():
            return shipped
        raise PretrainedError(f"shipped checkpoint {path_or_name!r} is not at {shipped}; "
                              "install dit3d from a source checkout (pip install -e .)")
    raise PretrainedError(f"{path_or_name}: neither a pretrained folder nor a shipped name ({sorted(SHIPPED)})")


class MoleculeGenerator:
    """ADiT molecule sampler: latent DiT + flow matching + the autoencoder's decoder.

    Sampling draws each molecule's atom count from the training histogram, sorts the
    counts so each mini-batch pads little, integrates the flow ODE, decodes latents to
    atom types (argmax) and positions, and perceives bonds with RDKit.

    Example:
        >>> gen = MoleculeGenerator.from_pretrained("adit-qm9-cpu")  # doctest: +SKIP
        >>> mols = gen.sample(10, seed=0)  # doctest: +SKIP
    """

    KIND = "adit-molecules"

    def __init__(self, autoencoder: AtomAutoencoder, dit: DiT, flow: FlowMatching, latent_mean: torch.Tensor,
                 latent_std: torch.Tensor, atom_count_hist: torch.Tensor, sampling: dict[str, Any] | None = None,
                 dit_config: dict[str, Any] | None = None, flow_config: dict[str, Any] | None = None) -> None:
        self.autoencoder, self.dit, self.flow = autoencoder.eval(), dit.eval(), flow
        self.latent_mean, self.latent_std = latent_mean, latent_std
        self.atom_count_hist = atom_count_hist
        self.sampling = {"steps": 100, "solver": "euler", "guidance": 1.0, "batch_size": 256, **(sampling or {})}
        self.dit_config, self.flow_config = dit_config or {}, flow_config or {}

    # --------------------------------------------------------------- loading
    @classmethod
    def from_lightning(cls, module, sampling: dict[str, Any] | None = None) -> MoleculeGenerator:
        """From a trained :class:`~dit3d.models.ADiTLatentModule`."""
        hp = module.hparams
        dit_config = dict(preset=hp.preset, depth=hp.depth, hidden_size=hp.hidden_size, num_heads=hp.num_heads,
                          self_condition=hp.self_condition_prob > 0)
        flow_config = dict(prediction=hp.prediction, self_condition_prob=hp.self_condition_prob)
        return cls(module.autoencoder, module.sampling_dit, module.flow, module.latent_mean.clone(), module.latent_std.clone(),
                   module.atom_count_hist[MOLECULE].clone(), sampling, dit_config, flow_config)

    @classmethod
    def from_pretrained(cls, path_or_name: str | os.PathLike) -> MoleculeGenerator:
        """Load a folder written by :meth:`save_pretrained`, or a shipped name."""
        directory = resolve_pretrained(path_or_name)
        config, weights = load_pretrained(directory, cls.KIND)
        part = lambda prefix: {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}  # noqa: E731
        ae = AtomAutoencoder(**config["autoencoder"])
        load_state_strict(ae, part("autoencoder."), str(directory))
        dit = DiT(ae.latent_dim, num_classes=2, **config["dit"])
        load_state_strict(dit, part("dit."), str(directory))
        flow = FlowMatching(**config["flow"])
        return cls(ae, dit, flow, weights["latent_mean"], weights["latent_std"], weights["atom_count_hist"],
                   config.get("sampling"), config["dit"], config["flow"])

    def save_pretrained(self, directory: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
        """Weights (safetensors) and config (JSON) together; ``extra`` is stored in the config."""
        state = {f"autoencoder.{k}": v for k, v in self.autoencoder.state_dict().items()}
        state |= {f"dit.{k}": v for k, v in self.dit.state_dict().items()}
        state |= {"latent_mean": self.latent_mean, "latent_std": self.latent_std,
                  "atom_count_hist": self.atom_count_hist}
        config = {"autoencoder": self.autoencoder.config, "dit": self.dit_config, "flow": self.flow_config,
                  "sampling": self.sampling, **(extra or {})}
        return save_pretrained(directory, self.KIND, config, state)

    # -------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample_arrays(self, n: int, seed: int | None = None, **options: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        """``n`` molecules as ``(atomic_numbers (N,), positions (N, 3) Angstrom)`` pairs.

        Options override the stored defaults: ``steps``, ``solver``, ``guidance``,
        ``batch_size``.
        """
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        opts = {**self.sampling, **options}
        unknown = set(opts) - {"steps", "solver", "guidance", "batch_size"}
        if unknown:
            raise ValueError(f"unknown sampling options {sorted(unknown)}")
        g = torch.Generator().manual_seed(seed if seed is not None else int(torch.seed() % 2**63))
        counts = torch.multinomial(self.atom_count_hist.float(), n, replacement=True, generator=g)  # (n,)
        order = torch.argsort(counts, stable=True)
        results: list[Any] = [None] * n
        for chunk in order.split(int(opts["batch_size"])):
            for i, mol in zip(chunk.tolist(), self._sample_batch(counts[chunk], opts, g)):
                results[i] = mol
        return results

    def _sample_batch(self, counts: torch.Tensor, opts: dict[str, Any], g: torch.Generator):
        B, N, L = counts.shape[0], int(counts.max()), self.autoencoder.latent_dim
        mask = torch.arange(N)[None] < counts[:, None]  # (B, N)
        y = torch.full((B,), MOLECULE, dtype=torch.long)
        if opts["guidance"] == 1.0:
            model = lambda x, t, **kw: self.dit(x, t, y=y, **kw)  # noqa: E731
        else:
            model = classifier_free_guidance(self.dit, opts["guidance"], {"y": y}, {"y": torch.full_like(y, 2)})
        z = self.flow.sample(model, (B, N, L), steps=int(opts["steps"]), solver=opts["solver"], mask=mask,
                             generator=g, progress=False)  # (B, N, L)
        z = (z * self.latent_std + self.latent_mean) * mask[..., None]
        out = self.autoencoder.decode(z, mask, y)
        logits = out["type_logits"].clone()
        logits[..., MASK_TOKEN] = float("-inf")  # the mask token is not an element
        types = logits.argmax(-1)  # (B, N)
        return [(types[b, : counts[b]].numpy(), out["pos"][b, : counts[b]].double().numpy()) for b in range(B)]

    def sample(self, n: int, seed: int | None = None, **options: Any) -> list[Chem.Mol]:
        """``n`` RDKit Mols with 3D conformers and bonds perceived by RDKit
        (``rdDetermineBonds``). Molecules whose bonds cannot be made chemically
        valid come back unsanitised with connectivity only; see
        :func:`dit3d.metrics.evaluate_molecules` to score them."""
        from dit3d.chem.bonds import mol_from_coords

        mols = []
        for z, pos in self.sample_arrays(n, seed, **options):
            mol = mol_from_coords(z, pos, method="rdkit")
            try:
                Chem.SanitizeMol(mol)
            except Exception:  # invalid molecules are returned as they are, for inspection
                pass
            mols.append(mol)
        return mols
