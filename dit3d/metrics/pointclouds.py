r"""Point-cloud generation metrics of the PointFlow protocol; they judge outputs only.

Inputs are sets of clouds as arrays ``(S, N, 3)`` (numpy or torch); no model is involved.
Everything runs in torch on the CPU (or on ``device``), vectorised over pairs of clouds
and chunked so that memory stays bounded. The pieces live in four modules; every public
name is importable from here:

* :mod:`dit3d.metrics.pointcloud_distances`: Chamfer distance (:func:`chamfer_distance`)
  and the shared input checks;
* :mod:`dit3d.metrics.pointcloud_emd`: earth mover's distance, exact and ``approxmatch``,
  its two published conventions and how far the approximation is from the optimum
  (:func:`earth_movers_distance`);
* :mod:`dit3d.metrics.pointcloud_pairwise`: distance matrices between sets
  (:func:`pairwise_cd`, :func:`pairwise_emd`) and their cost on a CPU;
* this module: MMD, COV, 1-NNA (:func:`generative_metrics`), normalisation
  (:func:`normalize_pointclouds`) and the whole protocol (:func:`evaluate_pointclouds`).

**Generative metrics** (PointFlow's definitions, as in its ``compute_all_metrics``, which
PVD, LION and DiT-3D reuse), from the
distance matrices sample-reference :math:`D_{SR}` ``(M, K)``, sample-sample
:math:`D_{SS}` ``(M, M)`` and reference-reference :math:`D_{RR}` ``(K, K)``:

.. math::
    \mathrm{MMD} = \frac{1}{K}\sum_{j}\min_{i} D_{SR}[i, j], \qquad
    \mathrm{COV} = \frac{|\{\arg\min_j D_{SR}[i, j] : i\}|}{K},

and 1-NNA is the accuracy of the leave-one-out 1-nearest-neighbour classifier on
:math:`S \cup R` (each cloud takes the label of its nearest other cloud; its distance to
itself is excluded): 0.5 is ideal, 1 means the sets are separable, and 0 happens when
every sample is a near copy of a reference. COV and 1-NNA are fractions in [0, 1]; MMD
is in the units of the distance. Exact ties among nearest neighbours (duplicated clouds) are
broken at random with ``seed``.
"""
from __future__ import annotations

import platform
from typing import Any

import numpy as np
import scipy
import torch

from dit3d.metrics.pointcloud_distances import CD_DEFINITION, _as_clouds, _check_choice, chamfer_distance
from dit3d.metrics.pointcloud_emd import EMD_CONVENTIONS, EMD_METHODS, EMDResult, earth_movers_distance
from dit3d.metrics.pointcloud_pairwise import PairwiseEMD, pairwise_cd, pairwise_emd

__all__ = [
    "EMD_CONVENTIONS", "EMDResult", "PairwiseEMD", "chamfer_distance", "earth_movers_distance",
    "evaluate_pointclouds", "generative_metrics", "normalize_pointclouds", "pairwise_cd", "pairwise_emd",
]

NORMALIZATIONS = ("none", "global", "per-shape")

NORMALIZATION_DEFINITIONS = {
    "none": "clouds used as given",
    "global": ("x -> (x - mu) / s for samples and references, mu = per-axis mean of all reference points, "
               "s = population std of all reference coordinates flattened (one scalar), as PointFlow's "
               "ShapeNet15kPointClouds with normalize_std_per_axis=False (there over the training set)"),
    "per-shape": ("each cloud x -> (x - c) / r, c = mean of its points, r = largest distance of a point to c "
                  "(points in the unit ball, at least one on the unit sphere)"),
}


# --------------------------------------------------------------------------- metrics


def _argmin_random_ties(d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row-wise argmin; among exactly equal minima one is drawn uniformly."""
    best = d.min(1, keepdims=True)
    tied = d == best
    idx = tied.argmax(1)
    for r in np.flatnonzero(tied.sum(1) > 1):
        idx[r] = rng.choice(np.flatnonzero(tied[r]))
    return idx


def _check_matrix(d: Any, name: str, shape: tuple[int, int], diagonal_free: bool = False) -> np.ndarray:
    a = np.asarray(d, dtype=np.float64)
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    body = a[~np.eye(*shape, dtype=bool)] if diagonal_free else a
    if not np.isfinite(body).all():
        raise ValueError(f"{name} contains NaN or inf off its diagonal; recompute the distances from finite clouds")
    if (body < 0).any():
        raise ValueError(f"{name} has negative entries; distances must be >= 0")
    return a


def generative_metrics(d_sr: Any, d_ss: Any, d_rr: Any, seed: int = 0) -> dict[str, float]:
    r"""MMD, COV and 1-NNA from the three distance matrices (PointFlow's definitions).

    .. math::
        \mathrm{MMD} = \frac{1}{K}\sum_j \min_i D_{SR}[i,j], \quad
        \mathrm{COV} = \frac{|\{\arg\min_j D_{SR}[i,j]\}_i|}{K}, \quad
        \text{1-NNA} = \frac{1}{M+K}\sum_{z \in S \cup R}
            \mathbb{1}[\,\ell(\mathrm{NN}(z)) = \ell(z)\,]

    where :math:`\mathrm{NN}(z)` is the nearest cloud to :math:`z` in :math:`S \cup R`
    other than :math:`z` (the diagonals of :math:`D_{SS}, D_{RR}` are ignored) and
    :math:`\ell` its set. Exactly tied minima are broken at random with ``seed``.

    Args:
        d_sr: sample-reference distances ``(M, K)``.
        d_ss: sample-sample distances ``(M, M)``.
        d_rr: reference-reference distances ``(K, K)``.
        seed: seeds the tie-breaking.

    Returns:
        ``{"MMD", "COV", "1-NNA"}`` as floats; COV and 1-NNA are fractions in [0, 1].

    Example:
        >>> d_sr = np.array([[0.0, 5.0], [5.0, 0.0]])  # each sample is a reference's twin
        >>> d_ss = d_rr = np.array([[0.0, 5.0], [5.0, 0.0]])
        >>> generative_metrics(d_sr, d_ss, d_rr)
        {'MMD': 0.0, 'COV': 1.0, '1-NNA': 0.0}
    """
    a = np.asarray(d_sr, dtype=np.float64)
    if a.ndim != 2 or 0 in a.shape:
        raise ValueError(f"d_sr must be a non-empty (M, K) matrix, got shape {a.shape}")
    m, k = a.shape
    d_sr = _check_matrix(a, "d_sr", (m, k))
    d_ss = _check_matrix(d_ss, "d_ss", (m, m), diagonal_free=True)
    d_rr = _check_matrix(d_rr, "d_rr", (k, k), diagonal_free=True)
    rng = np.random.default_rng(seed)
    mmd = float(d_sr.min(0).mean())
    cov = len(np.unique(_argmin_random_ties(d_sr, rng))) / k
    full = np.block([[d_ss, d_sr], [d_sr.T, d_rr]])
    np.fill_diagonal(full, np.inf)
    labels = np.r_[np.zeros(m, bool), np.ones(k, bool)]  # True = reference
    # Neighbours of cloud z are read in column z, as PointFlow's knn (topk over dim 0): for
    # an asymmetric EMD, z is then the second argument of every distance it is judged by.
    nearest = _argmin_random_ties(full.T, rng)
    nna = float((labels[nearest] == labels).mean())
    return {"MMD": mmd, "COV": float(cov), "1-NNA": nna}


def normalize_pointclouds(samples: Any, references: Any, normalization: str) -> tuple[np.ndarray, np.ndarray]:
    r"""Apply one of ``"none"``, ``"global"``, ``"per-shape"`` (``NORMALIZATION_DEFINITIONS``).

    ``"global"`` uses statistics of the references only and applies them to both sets, so
    the samples are judged in the references' frame; it rescales CD by ``1/s^2`` and exact
    EMD by ``1/s^2`` (``"pvd"``) or ``1/s`` (``"pointflow"``) and leaves their COV and
    1-NNA as they are. Approx EMD is not scale-equivariant (its rounds use absolute
    :math:`\lambda`), so all three of its metrics can change. ``"per-shape"`` removes each
    cloud's position and size.

    Shapes:
        samples: ``(M, N, 3)``, references: ``(K, N', 3)`` -> the same shapes, float64

    Example:
        >>> s, r = normalize_pointclouds([[[0.0, 0, 0], [4, 0, 0]]], [[[1.0, 1, 1], [1, 1, 3]]], "per-shape")
        >>> s[0].tolist(), r[0].tolist()
        ([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], [[0.0, 0.0, -1.0], [0.0, 0.0, 1.0]])
    """
    _check_choice(normalization, "normalization", NORMALIZATIONS)
    s = _as_clouds(samples, "samples", batched=True)
    r = _as_clouds(references, "references", batched=True)
    if normalization == "none":
        return s, r
    if normalization == "global":
        mu = r.reshape(-1, 3).mean(0)
        sd = float(r.std())
        if not sd > 0:
            raise ValueError("global normalisation needs references with spread (their coordinate std is 0); "
                             "use normalization='none'")
        return (s - mu) / sd, (r - mu) / sd

    def per_shape(x: np.ndarray, name: str) -> np.ndarray:
        c = x - x.mean(1, keepdims=True)
        radius = np.sqrt((c ** 2).sum(-1)).max(1)  # (S,)
        flat = np.flatnonzero(radius == 0)
        if len(flat):
            raise ValueError(f"{name} {flat.tolist()[:5]} are single repeated points and cannot be scaled to the "
                             "unit sphere; drop them or use normalization='none'")
        return c / radius[:, None, None]

    return per_shape(s, "samples"), per_shape(r, "references")


def _versions() -> dict[str, str]:
    import dit3d

    return {"torch": torch.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "dit3d": dit3d.__version__, "python": platform.python_version()}


def _metrics_for(s: np.ndarray, r: np.ndarray, emd: str | None, convention: str, seed: int,
                 progress: bool, device: torch.device) -> dict[str, dict[str, float] | None]:
    cd = generative_metrics(pairwise_cd(s, r, progress=progress, device=device),
                            pairwise_cd(s, progress=progress, device=device),
                            pairwise_cd(r, progress=progress, device=device), seed)
    if emd is None:
        return {"CD": cd, "EMD": None}
    kw = dict(method=emd, convention=convention, progress=progress, device=device)
    # References first, as PointFlow's compute_all_metrics (M_rs), then transposed.
    d_sr = pairwise_emd(r, s, **kw).matrix.T
    em = generative_metrics(d_sr, pairwise_emd(s, **kw).matrix, pairwise_emd(r, **kw).matrix, seed)
    return {"CD": cd, "EMD": em}


def evaluate_pointclouds(samples: Any, references: Any, emd: str | None = "approx", normalization: str = "none",
                         seed: int = 0, batch_size: int | None = None, progress: bool = False,
                         emd_convention: str = "pvd", device: str | torch.device = "cpu") -> dict[str, Any]:
    """MMD, COV and 1-NNA under CD and EMD, the PointFlow / PVD / LION / DiT-3D protocol.

    Args:
        samples: generated clouds ``(M, N, 3)``.
        references: reference clouds ``(K, N, 3)`` (same N: EMD is a bijection).
        emd: ``"approx"`` (approxmatch, as published), ``"exact"`` (small N only), or
            None to skip EMD (its cost dominates: :mod:`dit3d.metrics.pointcloud_pairwise`).
        normalization: ``"none"`` (the published protocol: both sets in the dataset's
            frame), ``"global"`` or ``"per-shape"`` (``NORMALIZATION_DEFINITIONS``).
        seed: seeds the tie-breaking among exactly equal distances.
        batch_size: None (default) compares the full sets, as PointFlow, PVD, LION and
            DiT-3D's ``compute_all_metrics``; an int computes the metrics within
            consecutive batches ``samples[b:b+n]`` vs ``references[b:b+n]`` (needs M == K)
            and averages them weighted by batch size (the last batch may be smaller).
        progress: tqdm bars over the distance matrices.
        emd_convention: ``"pvd"`` (squared ground cost; PVD, LION, DiT-3D) or
            ``"pointflow"`` (Euclidean; PointFlow).
        device: torch device of the distance computations.

    Returns:
        ``{"CD": {"MMD", "COV", "1-NNA"}, "EMD": {...} or None, "protocol": {...}}``;
        the protocol records the definitions, normalisation, EMD method and convention,
        counts, seed, batching and package versions.

    Example:
        >>> refs = np.stack([np.eye(3) * (k + 1) for k in range(3)])  # 3 clouds of 3 points
        >>> out = evaluate_pointclouds(refs.copy(), refs, emd="exact")
        >>> out["CD"]["COV"], out["CD"]["1-NNA"], out["EMD"]["1-NNA"], out["protocol"]["emd"]["method"]
        (1.0, 0.0, 0.0, 'exact')
    """
    if emd is not None:
        _check_choice(emd, "emd", EMD_METHODS)
    _check_choice(emd_convention, "emd_convention", tuple(EMD_CONVENTIONS))
    s, r = normalize_pointclouds(samples, references, normalization)
    if emd is not None and s.shape[1] != r.shape[1]:
        raise ValueError(f"samples have {s.shape[1]} points per cloud and references {r.shape[1]}; EMD needs equal "
                         "counts: resample to a common N (2048 in the published protocol) or pass emd=None")
    m, k = len(s), len(r)
    _check_batch_size(batch_size, m, k)
    dev = torch.device(device)
    starts = [0] if batch_size is None else list(range(0, m, int(batch_size)))
    weights, parts = [], []
    for b0 in starts:
        b1 = max(m, k) if batch_size is None else min(m, b0 + int(batch_size))
        parts.append(_metrics_for(s[b0:b1], r[b0:b1], emd, emd_convention, seed, progress, dev))
        weights.append(b1 - b0)
    w = np.asarray(weights, dtype=np.float64) / sum(weights)

    def average(key: str) -> dict[str, float] | None:
        if parts[0][key] is None:
            return None
        return {name: float(sum(wi * p[key][name] for wi, p in zip(w, parts))) for name in parts[0][key]}

    protocol = _protocol(normalization, emd, emd_convention, m, k, (int(s.shape[1]), int(r.shape[1])), batch_size,
                         len(starts), seed, dev)
    return {"CD": average("CD"), "EMD": average("EMD"), "protocol": protocol}


def _check_batch_size(batch_size: int | None, m: int, k: int) -> None:
    """DiT-3D's per-batch variant pairs samples[b:b+n] with references[b:b+n]: a positive int, equal set sizes."""
    if batch_size is None:
        return
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be None or a positive int, got {batch_size!r}")
    if m != k:
        raise ValueError(f"batch_size pairs samples[b:b+n] with references[b:b+n], so it needs as many samples as "
                         f"references, got {m} and {k}; pass batch_size=None for the full-set protocol")


def _protocol(normalization: str, emd: str | None, emd_convention: str, m: int, k: int, points: tuple[int, int],
              batch_size: int | None, num_batches: int, seed: int, dev: torch.device) -> dict[str, Any]:
    """The protocol record of :func:`evaluate_pointclouds` (``points``: per sample and per reference cloud)."""
    squared, levels = EMD_CONVENTIONS[emd_convention]
    return {
        "normalization": normalization,
        "normalization_definition": NORMALIZATION_DEFINITIONS[normalization],
        "cd_definition": CD_DEFINITION,
        "emd": None if emd is None else {
            "method": emd,
            "convention": emd_convention,
            "ground_cost": "squared Euclidean" if squared else "Euclidean",
            "approxmatch_levels": list(levels) if emd == "approx" else None,
            "divided_by": "N",
            "first_argument": "reference (approxmatch xyz1, as PointFlow's M_rs)",
        },
        "num_samples": m,
        "num_references": k,
        "points_per_cloud": points[0] if points[0] == points[1] else list(points),
        "batch_size": None if batch_size is None else int(batch_size),
        "num_batches": num_batches,
        "within_set_matrices": ("CD and exact EMD: pairs i < j, mirrored; approx EMD: both orders; "
                                "diagonals excluded from 1-NNA, whose neighbours are read per column as PointFlow's"),
        "seed": seed,
        "tie_breaking": "uniform among exactly equal minima, numpy default_rng(seed)",
        "dtype": "float32 (CD, approx EMD); float64 (exact EMD)",
        "device": str(dev),
        "versions": _versions(),
    }
