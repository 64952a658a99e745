r"""Crystal-generation metrics under the CDVAE / DiffCSP protocol; they judge structures only.

Definitions (Xie et al. 2022, "Crystal Diffusion Variational Autoencoder for Periodic Material
Generation", ICLR, Sec. 5 "generation" metrics; Jiao et al. 2023, "Crystal Structure
Prediction by Joint Equivariant Diffusion" (DiffCSP), NeurIPS, Sec. 5.2, same protocol):

* *structural validity*: the shortest distance between two different atoms, over periodic
  images (pymatgen's minimum-image ``distance_matrix``), is at least 0.5 Angstrom and the
  cell volume at least 0.1 A^3 (CDVAE: invalid when ``min < 0.5`` or ``volume < 0.1``). An
  atom's distance to its own periodic image is not checked (as in CDVAE).
* *compositional validity* (SMACT, Davies et al. 2019): the reduced composition (cell
  counts divided by their gcd) is valid when it is a single element, or all its elements are
  metals (``smact.metals``: alloys count as valid, CDVAE's ``include_alloys=True``), or some
  assignment of oxidation states is charge neutral (``sum(q_i * n_i) == 0``) and passes
  SMACT's Pauling electronegativity test (``smact.screening.pauling_test``: cations less
  electronegative than anions; missing electronegativity data pass, as in CDVAE). Oxidation
  states are SMACT's original 2014 list (``oxidation_states_smact14``), the default of
  ``smact < 3`` that CDVAE and DiffCSP ran with; ``smact >= 3`` defaults to an ICSD-2024 list
  that gives different answers.
* *validity*: both. Every generated sample counts in the denominators, unreadable ones as invalid.
* *coverage* COV-R / COV-P: see :mod:`dit3d.metrics.crystals_fingerprints`. As in CDVAE's
  code, all generated samples are scored, not only valid ones (``coverage_on="valid"`` to change).
* *Wasserstein distances* (``scipy.stats.wasserstein_distance``) between the valid samples and
  the reference set of the density (pymatgen ``Structure.density``, g/cm^3) and of the number
  of distinct elements. CDVAE draws 1000 valid samples at random; here all valid samples count.
* *uniqueness / novelty*: not part of CDVAE's or DiffCSP's generation task; defined here as
  for molecules, with pymatgen's ``StructureMatcher`` at the tolerances CDVAE and DiffCSP use to
  match crystals (``ltol=0.3, stol=0.5, angle_tol=10``, :data:`MATCHER_TOLERANCES`).
  Uniqueness: distinct structures (greedy grouping, first member kept) / valid samples.
  Novelty: distinct structures matching no training structure / distinct structures.
* *S.U.N.* needs energies above the convex hull: pass ``e_above_hull`` (e.g. from
  :func:`dit3d.metrics.crystals_stability.energies_above_hull` with an ASE calculator);
  without it ``sun`` is None. No energy is ever guessed.

SMACT and matminer come with the optional extra: ``pip install "dit3d[crystals]"``.
"""
from __future__ import annotations

import functools
import math
import os
import platform
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from dit3d.metrics.crystals_fingerprints import (COMP_FEATURIZER, COV_CUTOFFS, STRUCT_FEATURIZER, CompositionScaler,
                                                 compute_fingerprints, coverage, require_extra)
from dit3d.metrics.crystals_io import CrystalSet

__all__ = ["MATCHER_TOLERANCES", "MIN_DISTANCE", "MIN_VOLUME", "evaluate_crystals", "smact_validity",
           "structure_validity", "uniqueness_novelty"]

MIN_DISTANCE = 0.5  # Angstrom
MIN_VOLUME = 0.1  # A^3
MATCHER_TOLERANCES = {"ltol": 0.3, "stol": 0.5, "angle_tol": 10.0}


def structure_validity(structure: Any, min_distance: float = MIN_DISTANCE, min_volume: float = MIN_VOLUME) -> bool:
    """CDVAE structural validity: minimum-image distance between different sites ``>= min_distance``
    and cell volume ``>= min_volume``.

    Args:
        structure: a pymatgen ``Structure``.

    Raises:
        ValueError: ``structure`` is not a pymatgen ``Structure``.

    Example:
        >>> from pymatgen.core import Lattice, Structure
        >>> structure_validity(Structure(Lattice.cubic(4), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]))
        True
        >>> structure_validity(Structure(Lattice.cubic(4), ["Na", "Cl"], [[0, 0, 0], [0.99, 0, 0]]))
        False
    """
    from pymatgen.core import Structure

    if not isinstance(structure, Structure):
        raise ValueError(f"expected a pymatgen Structure, got {type(structure).__name__}")
    if not structure.volume >= min_volume:
        return False
    if len(structure) < 2:
        return True
    d = np.array(structure.distance_matrix, dtype=np.float64)
    np.fill_diagonal(d, np.inf)
    return bool(d.min() >= min_distance)


def _reduced_counts(composition: Any) -> tuple[tuple[str, ...], tuple[int, ...]]:
    from pymatgen.core import Composition, Element

    try:
        comp = composition.composition if hasattr(composition, "composition") else Composition(composition)
    except (TypeError, ValueError) as e:
        raise ValueError(f"not a composition, structure or formula: {composition!r} ({e})") from None
    amounts = comp.get_el_amt_dict()
    if not amounts:
        raise ValueError("empty composition")
    if any(abs(v - round(v)) > 1e-6 for v in amounts.values()):
        raise ValueError(f"non-integer composition {amounts}; compositional validity needs whole atom counts")
    symbols = sorted(amounts, key=lambda s: Element(s).Z)  # CDVAE orders elements by atomic number
    counts = [int(round(amounts[s])) for s in symbols]
    g = math.gcd(*counts)
    return tuple(symbols), tuple(c // g for c in counts)


def _neutral_states(ox: Sequence[Sequence[int]], counts: Sequence[int]) -> Iterator[tuple[int, ...]]:
    """The charge-neutral oxidation-state assignments (``sum(q_i * n_i) == 0``), one state per
    element, in ``itertools.product(*ox)`` order: CDVAE's loop with the non-neutral ones skipped.

    A state is tried only when the elements after it can still cancel the running charge
    (their reachable charge sums are precomputed), so no non-neutral assignment is visited;
    the neutral ones can still be exponentially many. Used only where SMACT's own Pauling
    test must judge each assignment (elements without an electronegativity: Pm, Rn, Lr in
    the 2014 list); otherwise :func:`_neutral_and_pauling` decides without enumerating.

    Example:
        >>> list(_neutral_states([[2, 3], [-2]], [2, 3]))  # Fe2O3: Fe(III)
        [(3, -2)]
        >>> list(_neutral_states([[1], [-1, 1], [-2, 2]], [1, 1, 1]))
        [(1, 1, -2)]
    """
    n = len(ox)
    reachable = [set() for _ in range(n)] + [{0}]  # reachable[i]: charge sums of elements i..n-1
    for i in range(n - 1, -1, -1):
        reachable[i] = {q * counts[i] + rest for q in set(ox[i]) for rest in reachable[i + 1]}

    def walk(i: int, charge: int, prefix: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
        if i == n:
            yield prefix
            return
        for q in ox[i]:
            if -(charge + q * counts[i]) in reachable[i + 1]:
                yield from walk(i + 1, charge + q * counts[i], prefix + (q,))

    return walk(0, 0, ())


def _neutral_possible(ox: Sequence[Sequence[int]], counts: Sequence[int]) -> bool:
    """Whether some choice of one state per element is charge neutral (a set of reachable sums)."""
    sums = {0}
    for states, n in zip(ox, counts):
        sums = {s + q * n for s in sums for q in set(states)}
    return 0 in sums


def _neutral_and_pauling(ox: Sequence[Sequence[int]], counts: Sequence[int], eneg: Sequence[float]) -> bool:
    r"""Whether some charge-neutral assignment passes SMACT's Pauling test (every cation strictly
    less electronegative than every anion; zero states are neither), without enumerating them.

    Such an assignment exists iff for some cut :math:`\tau` (minus infinity or one of the
    electronegativities) a neutral assignment exists with cations only among elements of
    electronegativity :math:`\le \tau` and anions only among those :math:`> \tau`: take
    :math:`\tau` = the largest cation electronegativity. Each cut is one reachable-sum check,
    so the cost is polynomial in the number of elements, where the full loop is exponential.
    Equal to the loop over :func:`_neutral_states` with ``pauling_test`` (tested against it).
    """
    for cut in (-math.inf, *sorted(set(eneg))):
        allowed = [[q for q in states if q == 0 or (q > 0) == (e <= cut)] for states, e in zip(ox, eneg)]
        if all(allowed) and _neutral_possible(allowed, counts):
            return True
    return False


@functools.lru_cache(maxsize=100_000)
def _smact_valid(symbols: tuple[str, ...], counts: tuple[int, ...], use_pauling_test: bool,
                 include_alloys: bool) -> bool:
    smact = require_extra("smact", "compositional validity (SMACT)")
    screening = require_extra("smact.screening", "compositional validity (SMACT)")
    if len(symbols) == 1:
        return True
    if include_alloys and all(s in smact.metals for s in symbols):
        return True
    try:
        elements = [smact.Element(s) for s in symbols]
    except Exception:  # noqa: BLE001 - elements SMACT has no data for
        return False
    # smact < 3 has no separate attribute: its default list *is* the 2014 one
    ox = [(e.oxidation_states_smact14 if hasattr(e, "oxidation_states_smact14") else e.oxidation_states) or []
          for e in elements]
    electronegativities = [e.pauling_eneg for e in elements]
    if not use_pauling_test:
        return _neutral_possible(ox, counts)
    if all(isinstance(e, (int, float)) and math.isfinite(e) for e in electronegativities):
        return _neutral_and_pauling(ox, counts, electronegativities)
    # missing electronegativities: SMACT's own test decides, as its versions differ on them
    for states in _neutral_states(ox, counts):
        try:
            if screening.pauling_test(states, electronegativities):
                return True
        except TypeError:  # no electronegativity data: accepted, as in CDVAE
            return True
    return False


def smact_validity(composition: Any, use_pauling_test: bool = True, include_alloys: bool = True) -> bool:
    """SMACT compositional validity as CDVAE defines it (see the module docstring).

    Args:
        composition: a pymatgen ``Composition``, a ``Structure``, or a formula such as ``"NaCl"``.
        use_pauling_test: apply the electronegativity test (CDVAE: True).
        include_alloys: all-metal compositions are valid (CDVAE: True).

    Raises:
        MissingExtraError: SMACT is not installed.
        ValueError: not a composition, structure or formula; an empty or non-integer composition.

    Example:
        >>> smact_validity("NaCl"), smact_validity("NaCl2"), smact_validity("Cu3Au")  # doctest: +SKIP
        (True, False, True)
    """
    symbols, counts = _reduced_counts(composition)
    return _smact_valid(symbols, counts, bool(use_pauling_test), bool(include_alloys))


def _matcher(tolerances: dict[str, float] | None) -> Any:
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher(**(tolerances or MATCHER_TOLERANCES))


def uniqueness_novelty(structures: Sequence[Any], train: Sequence[Any] | None = None,
                       tolerances: dict[str, float] | None = None) -> dict[str, Any]:
    """Group equal structures with ``StructureMatcher`` and find those absent from ``train``.

    Structures are compared only within the same reduced formula (the matcher never matches
    different ones). Grouping is greedy in input order: a structure joins the first earlier
    representative it matches.

    Returns:
        ``uniqueness`` (distinct / structures), ``novelty`` (distinct and unmatched in ``train``
        / distinct; None without ``train``), ``is_first`` and ``is_novel`` (per structure, bool:
        representative of its group; representative and novel), ``unique`` and ``novel`` counts.
    """
    matcher = _matcher(tolerances)
    n = len(structures)
    reps: dict[str, list[int]] = {}
    is_first = np.zeros(n, dtype=bool)
    for i, s in enumerate(structures):
        bucket = reps.setdefault(s.composition.reduced_formula, [])
        if not any(matcher.fit(structures[j], s) for j in bucket):
            bucket.append(i)
            is_first[i] = True
    unique = int(is_first.sum())
    out: dict[str, Any] = {"unique": unique, "uniqueness": unique / n if n else 0.0, "is_first": is_first,
                           "novel": None, "novelty": None, "is_novel": None}
    if train is not None:
        by_formula: dict[str, list[Any]] = {}
        for t in train:
            by_formula.setdefault(t.composition.reduced_formula, []).append(t)
        is_novel = np.zeros(n, dtype=bool)
        for i in np.flatnonzero(is_first):
            s = structures[i]
            is_novel[i] = not any(matcher.fit(t, s) for t in by_formula.get(s.composition.reduced_formula, []))
        out.update(novel=int(is_novel.sum()), novelty=float(is_novel.sum() / unique) if unique else 0.0,
                   is_novel=is_novel)
    return out


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import dit3d

    out = {"dit3d": dit3d.__version__, "python": platform.python_version()}
    for pkg in ("pymatgen", "smact", "matminer", "scipy", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _as_set(items: CrystalSet | Sequence[Any] | None, what: str) -> CrystalSet | None:
    from pymatgen.core import Structure

    if items is None or isinstance(items, CrystalSet):
        return items
    if isinstance(items, Structure):
        raise ValueError(f"{what} must be a sequence of structures, got one Structure; wrap it in a list")
    items = list(items)
    for i, s in enumerate(items):
        if not isinstance(s, Structure):
            raise ValueError(f"{what} {i} is {type(s).__name__}, not a pymatgen Structure; read files with "
                             "dit3d.metrics.crystals_io.load_crystals")
    return CrystalSet(items, [f"{what} {i}" for i in range(len(items))], [], f"<{len(items)} structures>")


def evaluate_crystals(generated: CrystalSet | Sequence[Any], reference: CrystalSet | Sequence[Any],
                      train: CrystalSet | Sequence[Any] | None = None, cutoffs: str = "mp20",
                      coverage_on: str = "all", comp_scaler: CompositionScaler | None = None,
                      cache_dir: str | os.PathLike | None = None, progress: bool | None = None,
                      e_above_hull: Sequence[float | None] | None = None, stability_threshold: float = 0.0,
                      matcher_tolerances: dict[str, float] | None = None, max_failures_listed: int = 50
                      ) -> dict[str, Any]:
    """Score generated crystals against a reference set (and a training set) under the CDVAE protocol.

    Args:
        generated: pymatgen structures, or a :class:`~dit3d.metrics.crystals_io.CrystalSet`
            whose unreadable records count as invalid samples.
        reference: the reference (test) set for coverage and the Wasserstein distances.
        train: training structures for novelty (and S.U.N.); None: ``novelty`` is None.
        cutoffs: coverage cutoffs preset, ``"mp20"``, ``"perov"`` or ``"carbon"`` (:data:`COV_CUTOFFS`).
        coverage_on: ``"all"`` generated samples (CDVAE's code) or only ``"valid"`` ones.
        comp_scaler: composition standardisation (default :meth:`CompositionScaler.default`).
        cache_dir: fingerprint cache folder (None: no cache).
        progress: tqdm bars (None: only on a terminal).
        e_above_hull: energy above hull (eV/atom) of each readable generated structure, in
            order (None or NaN where unknown); enables ``sun``.
        stability_threshold: stable when ``e_above_hull <= threshold`` (eV/atom).
        matcher_tolerances: ``StructureMatcher`` tolerances (default :data:`MATCHER_TOLERANCES`).
        max_failures_listed: unreadable records listed per input (all are counted).

    Returns:
        ``struct_validity``, ``comp_validity``, ``validity``, ``cov_recall``, ``cov_precision``,
        ``wdist_density``, ``wdist_num_elements``, ``uniqueness``, ``novelty``, ``sun``,
        ``coverage_details``, ``counts``, ``unreadable`` (records per input with reasons) and
        ``protocol``. Fractions are in [0, 1]; a metric that cannot be computed is None.

    Raises:
        ValueError: unknown ``cutoffs``/``coverage_on``, empty inputs, an item that is not a
            pymatgen ``Structure`` (named by set and index), misaligned ``e_above_hull``.
        MissingExtraError: SMACT or matminer is missing.
    """
    if cutoffs not in COV_CUTOFFS:
        raise ValueError(f"unknown coverage cutoffs {cutoffs!r}; choose one of {sorted(COV_CUTOFFS)}")
    if coverage_on not in ("all", "valid"):
        raise ValueError(f"coverage_on must be 'all' or 'valid', got {coverage_on!r}")
    gen, ref, trn = _as_set(generated, "generated"), _as_set(reference, "reference"), _as_set(train, "train")
    n_total = gen.num_records
    if n_total == 0 or not ref.structures:
        raise ValueError(f"nothing to compare: {n_total} generated samples, {len(ref.structures)} reference structures")
    structs = gen.structures
    struct_ok = np.array([structure_validity(s) for s in structs], dtype=bool)
    comp_ok = np.array([smact_validity(s) for s in structs], dtype=bool)
    valid = struct_ok & comp_ok
    valid_structs = [s for s, v in zip(structs, valid) if v]

    scaler = comp_scaler or CompositionScaler.default()
    cov_structs = structs if coverage_on == "all" else valid_structs
    fp_gen = compute_fingerprints(cov_structs, cache_dir, progress, "fingerprints (generated)")
    fp_ref = compute_fingerprints(ref.structures, cache_dir, progress, "fingerprints (reference)")
    cut = COV_CUTOFFS[cutoffs]
    precision_denominator = n_total if coverage_on == "all" else len(valid_structs)
    cov = coverage(fp_gen, fp_ref, cut["struct"], cut["comp"], scaler, num_generated=precision_denominator)
    un = uniqueness_novelty(valid_structs, trn.structures if trn else None, matcher_tolerances)
    sun, n_stable = _sun(e_above_hull, stability_threshold, valid, un["is_novel"], n_total)
    counts = {
        "samples": n_total, "unreadable": len(gen.failures), "struct_valid": int(struct_ok.sum()),
        "comp_valid": int(comp_ok.sum()), "valid": int(valid.sum()), "reference": len(ref.structures),
        "reference_unreadable": len(ref.failures), "train": None if trn is None else len(trn.structures),
        "train_unreadable": None if trn is None else len(trn.failures),
        "fingerprint_failed_generated": int((~fp_gen.ok).sum()),
        "fingerprint_failed_reference": int((~fp_ref.ok).sum()),
        "unique": un["unique"], "novel": un["novel"], "stable_valid": n_stable,
    }
    coverage_protocol = {"cutoffs": cutoffs, "struct_cutoff": cut["struct"], "comp_cutoff": cut["comp"],
                         "comp_scaler": scaler.name, "generated_scored": coverage_on,
                         "precision_denominator": precision_denominator, **_fingerprint_record(fp_gen, fp_ref)}
    return {
        "struct_validity": counts["struct_valid"] / n_total, "comp_validity": counts["comp_valid"] / n_total,
        "validity": counts["valid"] / n_total, "cov_recall": cov["cov_recall"], "cov_precision": cov["cov_precision"],
        **_wasserstein_distances(valid_structs, ref.structures),
        "uniqueness": un["uniqueness"], "novelty": un["novelty"], "sun": sun,
        "coverage_details": {k: v for k, v in cov.items() if k.startswith("am")},
        "counts": counts,
        "unreadable": _unreadable(gen, ref, trn, max_failures_listed),
        "protocol": _protocol(gen, ref, trn, coverage_protocol, matcher_tolerances,
                              stability_threshold if e_above_hull is not None else None),
    }


def _sun(e_above_hull: Sequence[float | None] | None, threshold: float, valid: np.ndarray,
         is_novel: np.ndarray | None, n_total: int) -> tuple[float | None, int | None]:
    """S.U.N. rate over all samples and the number of stable valid samples (``None`` without energies).

    Shapes:
        e_above_hull: one per readable sample; valid: ``(readable,)`` bool; is_novel:
        ``(valid,)`` bool (``None`` without a training set).
    """
    if e_above_hull is None:
        return None, None
    e = np.array([np.nan if x is None else float(x) for x in e_above_hull], dtype=np.float64)
    if len(e) != len(valid):
        raise ValueError(f"e_above_hull has {len(e)} values for {len(valid)} readable generated structures")
    stable = (e <= threshold)[valid]  # NaN (unknown) is never stable
    sun = None if is_novel is None else float((stable & is_novel).sum() / n_total)
    return sun, int(stable.sum())


def _wasserstein_distances(valid: Sequence[Any], reference: Sequence[Any]) -> dict[str, float | None]:
    """W1 between valid samples and the reference set of density (g/cm^3) and of the number of
    distinct elements (CDVAE); ``None`` without valid samples."""
    from scipy.stats import wasserstein_distance

    def wdist(f: Callable[[Any], float]) -> float | None:
        return float(wasserstein_distance([f(s) for s in valid], [f(s) for s in reference])) if valid else None

    return {"wdist_density": wdist(lambda s: float(s.density)),
            "wdist_num_elements": wdist(lambda s: len(s.composition.elements))}


def _unreadable(gen: CrystalSet, ref: CrystalSet, trn: CrystalSet | None, max_listed: int) -> dict[str, Any]:
    """Counts of the generated set's unreadable records by reason, and the first ``max_listed`` of each set."""
    reasons: dict[str, int] = {}
    for f in gen.failures:
        reasons[f["reason"]] = reasons.get(f["reason"], 0) + 1
    listed = {k: s.failures[:max_listed] for k, s in (("generated", gen), ("reference", ref), ("train", trn))
              if s is not None}
    return {"generated_reasons": reasons, **listed}


def _fingerprint_record(fp_gen: Any, fp_ref: Any) -> dict[str, Any]:
    n_fp = len(fp_gen.ok) + len(fp_ref.ok)
    return {"struct_fingerprint": STRUCT_FEATURIZER, "comp_fingerprint": COMP_FEATURIZER,
            "distance": "Euclidean (scipy cdist)",
            "fingerprint_seconds_per_crystal": (fp_gen.seconds + fp_ref.seconds) / n_fp if n_fp else None,
            "cache": [c for c in (fp_gen.cache_file, fp_ref.cache_file) if c]}


def _protocol(gen: CrystalSet, ref: CrystalSet, trn: CrystalSet | None, coverage_protocol: dict[str, Any],
              matcher_tolerances: dict[str, float] | None, stability_threshold: float | None) -> dict[str, Any]:
    """The protocol record of :func:`evaluate_crystals` (``stability_threshold`` None: no energies given)."""
    return {
        "name": "cdvae",
        "reference": "Xie et al. 2022 (CDVAE, ICLR) generation metrics; Jiao et al. 2023 (DiffCSP, NeurIPS)",
        "struct_validity": f"min minimum-image distance between different sites >= {MIN_DISTANCE} A and "
                           f"volume >= {MIN_VOLUME} A^3 (pymatgen distance_matrix)",
        "comp_validity": "SMACT: single element, or all metals (smact.metals), or a charge-neutral assignment of "
                         "oxidation_states_smact14 over the gcd-reduced counts passing smact.screening.pauling_test "
                         "(missing electronegativity passes)",
        "unreadable_samples": "counted in every validity denominator as invalid and in the COV-P denominator",
        "coverage": coverage_protocol,
        "wasserstein": "scipy.stats.wasserstein_distance, all valid samples vs all reference structures; density "
                       "g/cm^3 (pymatgen Structure.density), number of distinct elements",
        "structure_matcher": dict(matcher_tolerances or MATCHER_TOLERANCES),
        "uniqueness": "distinct structures (greedy StructureMatcher grouping) / valid samples",
        "novelty": "distinct structures matching no training structure / distinct structures",
        "sun": ("valid, first of its group, novel and e_above_hull <= %g eV/atom, over all samples"
                % stability_threshold if stability_threshold is not None else
                "not computed: needs energies above hull (dit3d.metrics.crystals_stability.energies_above_hull)"),
        "n_samples": gen.num_records, "n_reference": len(ref.structures),
        "n_train": None if trn is None else len(trn.structures),
        "inputs": {"generated": gen.source, "reference": ref.source, "train": None if trn is None else trn.source},
        "versions": _versions(),
    }
