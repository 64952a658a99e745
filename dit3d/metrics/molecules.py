"""Molecule-generation metrics under the EDM and ADiT protocols; they judge outputs only.

Inputs are generated molecules as atomic numbers + coordinates (or files, or RDKit Mols
with a conformer); no model is involved. Bonds are always perceived again from the 3D
coordinates, as both protocols do, so bonds stored in an input Mol are ignored.

**EDM** (Hoogeboom et al. 2022, ICML, Sec. 4 and App. on QM9 metrics):

* *atom stability*: fraction of atoms whose summed EDM bond orders
  (:func:`dit3d.chem.edm_bond_matrix`) equal one of the element's allowed valencies
  (:data:`ALLOWED_VALENCIES`, EDM's ``allowed_bonds``); hydrogens count as atoms.
* *molecule stability*: fraction of molecules whose atoms are all stable.
* *validity*: the Mol built from the EDM bonds (implicit hydrogens allowed, as EDM builds
  it) passes ``Chem.SanitizeMol``. Its SMILES is that of the largest fragment.

**ADiT** (Joshi et al. 2025, "All-atom Diffusion Transformers", ICML): bonds and orders
from :func:`dit3d.chem.mol_from_coords` with ``method="rdkit"``; *valid* when bond orders
were assigned (a closed-shell Lewis structure of total charge 0 exists, charged fragments
allowed; not the connectivity-only fallback) and ``Chem.SanitizeMol`` succeeds; no
implicit hydrogens are added. ADiT used OpenBabel for this step (see
:func:`~dit3d.chem.mol_from_coords` for the difference). PoseBusters ``"mol"`` checks
run on the valid molecules when the optional package ``posebusters`` is importable. EDM
stability is reported too (it is cheap).

Neither protocol requires a valid molecule to be connected (both take the SMILES of the
largest fragment); ``counts["multi_fragment_valid"]`` reports how many are not. Both
protocols then share one SMILES: :func:`canonical_smiles`. *Uniqueness* is distinct
SMILES over valid molecules; *novelty* is distinct SMILES absent from the training set
over distinct SMILES (ADiT's code divides by the valid count instead; the counts let
either be recomputed). With no valid molecule both are 0.0, as in EDM.

Reference: 5000 QM9 ground-truth molecules (qm9pack, seed 0) score atom / molecule
stability 99.36 / 95.40 % and validity 97.70 % under EDM (EDM's published data row:
99.0 / 95.2 / 97.7), and validity 100 % under ADiT.
"""
from __future__ import annotations

import os
import platform
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rdkit import Chem, rdBase

from dit3d.chem.bonds import (BOND_PERCEPTION_PROP, EDM_MARGINS_PM, edm_bond_matrix, mol_from_coords)
from dit3d.chem.io import element_symbol, read_molecules, to_atomic_numbers

__all__ = ["ALLOWED_VALENCIES", "atom_stability", "canonical_smiles", "evaluate_molecules"]

# EDM's ``allowed_bonds`` (qm9/bond_analyze.py), by atomic number: H, B, C, N, O, F, Al,
# Si, P, S, Cl, As, Br, I, Hg, Bi. Charges are not modelled, so e.g. N+ with four bonds
# is unstable, as in EDM.
ALLOWED_VALENCIES: dict[int, tuple[int, ...]] = {
    1: (1,), 5: (3,), 6: (4,), 7: (3,), 8: (2,), 9: (1,), 13: (3,), 14: (4,), 15: (3, 5),
    16: (4,), 17: (1,), 33: (3,), 35: (1,), 53: (1,), 80: (1, 2), 83: (3, 5),
}

SMILES_DEFINITION = ("RDKit canonical SMILES (Chem.MolToSmiles, isomericSmiles=False: stereo and isotopes "
                     "dropped) of the largest fragment (most atoms counting explicit H, first on ties), after "
                     "sanitisation, Chem.RemoveStereochemistry and Chem.RemoveHs; training SMILES go through "
                     "the same function")


def atom_stability(atomic_numbers: Sequence[int] | np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Per-atom EDM stability: summed EDM bond orders is an allowed valency.

    Elements without an entry in :data:`ALLOWED_VALENCIES` are never stable.

    Shapes:
        atomic_numbers: ``(N,)``; positions: ``(N, 3)`` Angstrom -> ``(N,)`` bool

    Example:
        >>> pos = np.array([[0.0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
        >>> atom_stability([8, 1, 1], pos).tolist()
        [True, True, True]
    """
    z = to_atomic_numbers(atomic_numbers)
    valence = edm_bond_matrix(z, positions).sum(1)  # (N,)
    return np.array([int(v) in ALLOWED_VALENCIES.get(int(a), ()) for a, v in zip(z, valence)], dtype=bool)


def canonical_smiles(mol: Chem.Mol | str) -> str | None:
    """The one SMILES used for uniqueness and novelty (see ``SMILES_DEFINITION``).

    Args:
        mol: an RDKit Mol (sanitised or not; it is copied) or a SMILES string.

    Returns:
        The SMILES, or None when parsing or sanitisation fails.

    Example:
        >>> canonical_smiles("[H]OC([H])([H])C"), canonical_smiles("C[C@H](O)N.O")
        ('CCO', 'CC(N)O')
    """
    with rdBase.BlockLogs():
        try:
            m = Chem.MolFromSmiles(mol) if isinstance(mol, str) else Chem.Mol(mol)
            if m is None:
                return None
            Chem.SanitizeMol(m)
            # Stereo is dropped anyway; clearing it first lets RemoveHs drop the H atoms
            # it would keep to define a C=N-H double-bond stereo (e.g. perceived imines).
            Chem.RemoveStereochemistry(m)
            frags = Chem.GetMolFrags(m, asMols=True, sanitizeFrags=False)
            largest = max(frags, default=m, key=lambda f: f.GetNumAtoms())
            return Chem.MolToSmiles(Chem.RemoveHs(largest), isomericSmiles=False)
        except Exception:  # RDKit raises several types (ValueError, RuntimeError, its own)
            return None


def _as_arrays(item: Any, index: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(item, Chem.Mol):
        if item.GetNumConformers() == 0:
            raise ValueError(f"molecule {index} is an RDKit Mol without a conformer; metrics need 3D coordinates")
        z = np.array([a.GetAtomicNum() for a in item.GetAtoms()], np.int64)
        pos = item.GetConformer().GetPositions()
    elif isinstance(item, (str, bytes)) or not isinstance(item, Sequence) or len(item) < 2:
        raise ValueError(f"molecule {index} must be (atomic_numbers, positions), a MoleculeRecord or an RDKit Mol "
                         f"with a conformer, got {type(item).__name__}")
    else:
        z, pos = item[0], item[1]
    try:
        z = to_atomic_numbers(z)
    except ValueError as e:
        raise ValueError(f"molecule {index}: {e}") from None
    try:
        pos = np.asarray(pos, dtype=np.float64).reshape(-1, 3) if np.size(pos) else np.zeros((0, 3))
    except (TypeError, ValueError) as e:
        raise ValueError(f"molecule {index}: positions must be numbers, shape (N, 3) ({e})") from None
    if pos.shape != (len(z), 3):
        raise ValueError(f"molecule {index}: positions must have shape ({len(z)}, 3), got {np.shape(pos)}")
    return z, pos


def _validity_mol(z: np.ndarray, pos: np.ndarray, protocol: str) -> Chem.Mol | None:
    """Sanitised Mol when the molecule is valid under ``protocol``, else None."""
    mol = mol_from_coords(z, pos, method="edm" if protocol == "edm" else "rdkit")
    if mol is None or mol.GetProp(BOND_PERCEPTION_PROP) in ("rdkit:connectivity_only", "rdkit:atoms_too_close"):
        return None
    try:
        with rdBase.BlockLogs():
            Chem.SanitizeMol(mol)
    except Exception:
        return None
    return mol


def _posebusters(valid: list[Chem.Mol]) -> tuple[dict[str, float] | None, str]:
    try:
        from posebusters import PoseBusters
    except ImportError:
        return None, "skipped: the optional package posebusters is not installed"
    if not valid:
        return None, "skipped: no valid molecule"
    try:
        table = PoseBusters(config="mol").bust(valid, None, None)
        checks = table.select_dtypes(include=["bool", "number"]).mean()
        return {str(k): float(v) for k, v in checks.items()}, "PoseBusters(config='mol') on the valid molecules"
    except Exception as e:  # a broken optional dependency must not cost the other metrics
        return None, f"failed: {type(e).__name__}: {e}"


def _versions() -> dict[str, str]:
    import dit3d
    return {"rdkit": rdBase.rdkitVersion, "numpy": np.__version__, "dit3d": dit3d.__version__,
            "python": platform.python_version()}


def evaluate_molecules(molecules: Iterable[Any] | str | os.PathLike, protocol: str = "edm",
                       train_smiles: Iterable[str] | None = None,
                       train_smiles_are_canonical: bool = False) -> dict[str, Any]:
    """Score generated molecules under the EDM or ADiT protocol (see the module docstring).

    Args:
        molecules: a ``.sdf``/``.xyz`` path, or items ``(atomic_numbers, positions, ...)``,
            :class:`~dit3d.chem.MoleculeRecord` or RDKit Mols with a conformer. A molecule
            with NaN/inf coordinates or no atoms is scored as unstable and invalid.
        protocol: ``"edm"`` or ``"adit"``.
        train_smiles: training-set SMILES for novelty; canonicalised with
            :func:`canonical_smiles` unless ``train_smiles_are_canonical``.
        train_smiles_are_canonical: skip that step (pass the output of a previous
            canonicalisation to save time on repeated evaluations).

    Returns:
        ``atom_stability``, ``mol_stability``, ``validity``, ``uniqueness``, ``novelty``
        (None without ``train_smiles``), ``valid_and_unique`` (unique over all samples, EDM's
        "V*U"), ``posebusters`` (ADiT, or None), ``counts`` (among them ``odd_electron``:
        compositions that cannot be a closed-shell neutral molecule) and ``protocol`` (how
        each number was computed, sample count, package versions).

    Raises:
        MoleculeFileError: an unreadable file (see :func:`~dit3d.chem.read_molecules`).
        ValueError: an unknown protocol, no molecules, or an item that is not a molecule
            (wrong type, unknown elements, positions that are not ``(N, 3)`` numbers; the
            message names the molecule's index).
    """
    if protocol not in ("edm", "adit"):
        raise ValueError(f"protocol must be 'edm' or 'adit', got {protocol!r}")
    if isinstance(molecules, (str, os.PathLike)):
        molecules = read_molecules(Path(molecules))
    c = dict.fromkeys(["molecules", "atoms", "stable_atoms", "stable_molecules", "valid", "unique", "novel",
                       "nonfinite_or_empty", "multi_fragment_valid", "odd_electron", "train_smiles",
                       "train_smiles_unparsed"], 0)
    valid_smiles: list[str] = []
    valid_mols: list[Chem.Mol] = []
    for i, item in enumerate(molecules):
        mol = _score_one(_as_arrays(item, i), protocol, c)
        smiles = canonical_smiles(mol) if mol is not None else None
        if smiles is not None:
            valid_smiles.append(smiles)
            valid_mols.append(mol)
            c["multi_fragment_valid"] += int(len(Chem.GetMolFrags(mol)) > 1)
    n = c["molecules"]
    if n == 0:
        raise ValueError("no molecules to evaluate; check that the generator wrote its samples")
    c["valid"] = len(valid_smiles)
    unique = set(valid_smiles)
    c["unique"] = len(unique)
    novelty = None
    if train_smiles is not None:
        c["novel"] = len(unique - _canonical_train_set(train_smiles, train_smiles_are_canonical, c))
        novelty = c["novel"] / c["unique"] if c["unique"] else 0.0
    pb, pb_note = _posebusters(valid_mols) if protocol == "adit" else (None, "not part of the EDM protocol")
    return {
        "atom_stability": c["stable_atoms"] / c["atoms"] if c["atoms"] else 0.0,
        "mol_stability": c["stable_molecules"] / n,
        "validity": c["valid"] / n,
        "uniqueness": c["unique"] / c["valid"] if c["valid"] else 0.0,
        "novelty": novelty,
        "valid_and_unique": c["unique"] / n,
        "posebusters": pb,
        "counts": c,
        "protocol": _protocol(protocol, n, pb_note),
    }


def _score_one(arrays: tuple[np.ndarray, np.ndarray], protocol: str, counts: dict[str, int]) -> Chem.Mol | None:
    """Add one molecule's atoms and stability to ``counts``; its Mol when valid under ``protocol``, else ``None``.

    Shapes:
        arrays: atomic numbers ``(N,)`` and positions ``(N, 3)`` (Angstrom).
    """
    z, pos = arrays
    counts["molecules"] += 1
    counts["atoms"] += len(z)
    counts["odd_electron"] += int(z.sum()) % 2
    if len(z) == 0 or not np.isfinite(pos).all():
        counts["nonfinite_or_empty"] += 1
        return None
    stable = atom_stability(z, pos)
    counts["stable_atoms"] += int(stable.sum())
    counts["stable_molecules"] += int(stable.all())
    return _validity_mol(z, pos, protocol)


def _canonical_train_set(train_smiles: Iterable[str], canonical: bool, counts: dict[str, int]) -> set[str]:
    """The training SMILES canonicalised (unless already ``canonical``), counting those RDKit cannot parse."""
    train = set()
    for s in train_smiles:
        cs = s if canonical else canonical_smiles(s)
        counts["train_smiles"] += 1
        if cs is None:
            counts["train_smiles_unparsed"] += 1
        else:
            train.add(cs)
    return train


def _protocol(protocol: str, n: int, posebusters_note: str) -> dict[str, Any]:
    """The protocol record of :func:`evaluate_molecules`: how each number was computed."""
    edm = protocol == "edm"
    return {
        "name": protocol,
        "reference": ("Hoogeboom et al. 2022, Equivariant Diffusion for Molecule Generation in 3D" if edm
                      else "Joshi et al. 2025, All-atom Diffusion Transformers"),
        "n_samples": n,
        "bond_perception": ("EDM bond-length rule (dit3d.chem.edm_bond_matrix)" if edm else
                            "RDKit rdDetermineBonds: DetermineConnectivity (covalent radii, Hueckel retry) + "
                            "DetermineBondOrders (xyz2mol), total charge 0; ADiT used OpenBabel"),
        "edm_margins_pm": {"single": EDM_MARGINS_PM[1], "double": EDM_MARGINS_PM[2], "triple": EDM_MARGINS_PM[3]},
        "allowed_valencies": {element_symbol(z): list(v) for z, v in ALLOWED_VALENCIES.items()},
        "stability": "EDM bond orders summed per atom (H included) must be an allowed valency; no charges",
        "validity": ("Chem.SanitizeMol succeeds on the Mol with EDM bonds and implicit H allowed" if edm
                     else "bond orders assigned (not connectivity-only) and Chem.SanitizeMol succeeds; no implicit H"),
        "smiles": SMILES_DEFINITION,
        "uniqueness": "distinct SMILES / valid molecules",
        "novelty": "distinct SMILES not among the training SMILES / distinct SMILES",
        "posebusters": posebusters_note,
        "counts.odd_electron": ("molecules whose atomic numbers sum to an odd number: as neutral molecules they are "
                                "radicals, so no bond assignment satisfies every valence (QM9 has none); a diagnostic "
                                "of the generated compositions, part of neither protocol"),
        "versions": _versions(),
    }
