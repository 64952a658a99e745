"""User-facing generators: load a shipped or trained model and sample from it.

:class:`MoleculeGenerator` (ADiT, RDKit molecules) lives here; :class:`CrystalGenerator`
(ADiT, pymatgen structures) in :mod:`dit3d.api_crystals` and :class:`ShapeGenerator`
(DiT-3D point clouds) in :mod:`dit3d.api_shapes`, re-exported here with
:func:`load_dit3d_checkpoint`; :mod:`dit3d.api_adit` holds what the ADiT generators share.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from rdkit import Chem

from dit3d.api_adit import SAMPLING_OPTIONS, ADiTGenerator  # noqa: F401 (re-exported)
from dit3d.api_crystals import CrystalGenerator  # noqa: F401 (re-exported)
from dit3d.api_shapes import ShapeGenerator, load_dit3d_checkpoint  # noqa: F401 (re-exported)
from dit3d.models.adit_sampling import decode_atoms
from dit3d.pretrained import SHIPPED, PretrainedError, save_pretrained  # noqa: F401 (re-exported)
from dit3d.tokenizers.atoms import MOLECULE

__all__ = ["SHIPPED", "SAMPLING_OPTIONS", "ADiTGenerator", "CrystalGenerator", "MoleculeGenerator", "PretrainedError",
           "ShapeGenerator", "load_dit3d_checkpoint", "save_pretrained"]


class MoleculeGenerator(ADiTGenerator):
    """ADiT molecule sampler: latent DiT + flow matching + the autoencoder's decoder.

    Sampling draws each molecule's atom count from the training histogram, sorts the
    counts so each mini-batch pads little, integrates the flow ODE, decodes latents to
    atom types (argmax) and positions, and perceives bonds with RDKit. Loads folders of
    kind ``adit-molecules`` and ``adit-joint`` (a molecule + crystal model).

    Example:
        >>> gen = MoleculeGenerator.from_pretrained("adit-qm9-cpu")  # doctest: +SKIP
        >>> mols = gen.sample(10, seed=0)  # doctest: +SKIP
    """

    KIND = "adit-molecules"
    SYSTEM = MOLECULE

    # -------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample_arrays(self, n: int, seed: int | None = None, progress: bool = False,
                      **options: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        """``n`` molecules as ``(atomic_numbers (N,), positions (N, 3) Angstrom)`` pairs.

        The same ``seed`` gives the same molecules; ``None`` draws a fresh seed without
        touching torch's global random state. ``progress`` shows a bar counting molecules.
        Options override the stored defaults: ``steps``, ``solver``, ``guidance``,
        ``batch_size``, ``temperature`` (scale of the initial noise; below 1 trades diversity
        for validity), ``autoguidance`` (scale; needs a guide, :meth:`set_guide`) and
        ``autoguidance_interval`` (``[lo, hi]`` flow times at which the guide runs).
        """
        batches = self._latent_batches(n, seed, options, progress=progress)  # checks the arguments
        results: list[Any] = [None] * n
        for chunk, counts, z, mask in batches:
            types, pos = decode_atoms(self.autoencoder, z, mask, MOLECULE)
            types, pos = types.cpu(), pos.double().cpu()
            for b, (i, k) in enumerate(zip(chunk, counts.tolist())):
                results[i] = (types[b, :k].numpy(), pos[b, :k].numpy())
        return results

    def sample(self, n: int, seed: int | None = None, progress: bool = False, **options: Any) -> list[Chem.Mol]:
        """``n`` RDKit Mols with 3D conformers and bonds perceived by RDKit
        (``rdDetermineBonds``). Molecules that cannot be made chemically valid come back
        unsanitised, with whatever bonds could be perceived (connectivity only, or none
        for overlapping atoms); the Mol property ``dit3d_bonds`` says which. Score them
        with :func:`dit3d.metrics.evaluate_molecules`."""
        from dit3d.chem.bonds import BOND_PERCEPTION_PROP, bare_mol, mol_from_coords

        mols = []
        for z, pos in self.sample_arrays(n, seed, progress, **options):
            mol = mol_from_coords(z, pos, method="rdkit")
            if mol is None:  # RDKit could not even place bonds: keep the atoms
                mol = bare_mol(z, pos)
                mol.SetProp(BOND_PERCEPTION_PROP, "none")
            try:
                Chem.SanitizeMol(mol)
            except Exception:  # invalid molecules are returned as they are, for inspection
                pass
            mols.append(mol)
        return mols
