r"""Crystal fingerprints and coverage (COV-R / COV-P) under the CDVAE protocol.

**Fingerprints** (Xie et al. 2022, "Crystal Diffusion Variational Autoencoder for Periodic
Material Generation", ICLR, Sec. 5 and App. on metrics; the same in DiffCSP, Jiao et al. 2023):

* *structure*: the mean over all sites of matminer's ``CrystalNNFingerprint.from_preset("ops")``
  site fingerprints (61 numbers: CrystalNN coordination-number weights and local-order
  parameters). Not normalised.
* *composition*: matminer's ``ElementProperty.from_preset("magpie")`` of the cell composition
  (132 numbers: minimum, maximum, range, mean, average deviation and mode of 22 elemental
  properties), with ``impute_nan=False`` as in the matminer release CDVAE used (missing
  elemental data stay NaN). Standardised before distances are taken: ``(x - mean) / std``
  per feature, then NaN -> 0, i.e. a chemprop-style ``StandardScaler(replace_nan_token=0)``.

CDVAE standardises with fixed statistics shipped in its code (``CompScalerMeans`` /
``CompScalerStds``, 132 numbers each) rather than statistics of the sets being compared.
They are not copied here. :meth:`CompositionScaler.default` uses statistics computed the same
way (``np.nanmean``/``np.nanstd`` with ddof 0, zero std -> 1) on 3000 real MP-20 compositions
(the ``pretty_formula`` of the first 1000 rows of each official MP-20 split, as staged in
``crystals/mp_20_pilot``). Only the standard deviations set the distance scale (the means
cancel in differences, except where NaN -> 0): ours are within 10% of CDVAE's for 90% of the
features (median ratio 0.99, extremes 0.78 and 1.48, on rare-property features). Pass
``CompositionScaler.from_json`` with CDVAE's numbers to reproduce its scale exactly, or
:meth:`CompositionScaler.fit` on your own data. The scaler used is recorded in each result.

**Coverage** (CDVAE): with ``d_s`` the Euclidean distance of structure fingerprints and ``d_c``
that of standardised composition fingerprints, a reference crystal is *recalled* when some
generated sample lies within ``d_s <= delta_s`` **and** some (not necessarily the same) sample
within ``d_c <= delta_c``; COV-R is the recalled fraction of the reference set. COV-P is the
number of generated samples with some reference crystal within both cutoffs, divided by *all*
generated samples, so samples whose fingerprint fails count as misses. Published cutoffs
(:data:`COV_CUTOFFS`, CDVAE's ``COV_Cutoffs``, reused by DiffCSP): MP-20 0.4 / 10,
Carbon-24 0.2 / 4, Perov-5 0.2 / 4.

CrystalNN costs about 15-20 ms per site on one CPU core (0.07-0.1 s per Perov-5 crystal,
0.2-0.3 s per MP-20 crystal, measured here), so :func:`compute_fingerprints` shows a progress bar and can
cache raw fingerprints on disk, keyed by the structures' content and the featurizer versions.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
import os.path as osp
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["COV_CUTOFFS", "CompositionScaler", "Fingerprints", "MissingExtraError", "check_extras",
           "compute_fingerprints", "coverage", "default_cache_dir", "require_extra"]

#: CDVAE's coverage cutoffs (structure, composition) per data set; DiffCSP uses the same
COV_CUTOFFS: dict[str, dict[str, float]] = {
    "mp20": {"struct": 0.4, "comp": 10.0},
    "carbon": {"struct": 0.2, "comp": 4.0},
    "perov": {"struct": 0.2, "comp": 4.0},
}
INSTALL_HINT = 'pip install "dit3d[crystals]"'
STRUCT_FEATURIZER = 'matminer CrystalNNFingerprint.from_preset("ops"), mean over sites'
COMP_FEATURIZER = 'matminer ElementProperty.from_preset("magpie", impute_nan=False) of the cell composition'
# Bump when the cached layout or the featurization changes.
CACHE_VERSION = 1

# Standardisation statistics of the 132 Magpie features, computed as described in the module
# docstring (3000 MP-20 compositions from mp_20_pilot/{train,val,test}.csv.gz).
_MAGPIE_MEANS = (
    18.7673, 57.5557, 38.7883, 33.7608, 13.4166, 26.1107, 27.275, 81.237,
    53.962, 62.0051, 19.7842, 66.2333, 41.4284, 140.097, 98.6685, 79.0997,
    34.0584, 59.87, 544.888, 1851.46, 1306.57, 1022.94, 451.9, 760.666,
    3.68567, 14.2283, 10.5427, 10.1886, 4.02358, 11.02, 3.09667, 5.451,
    2.35433, 4.01927, 0.866119, 3.464, 102.22, 180.248, 78.0287, 130.707,
    29.1837, 110.631, 1.25806, 2.62192, 1.36386, 2.09867, 0.530863, 2.29334,
    1.44833, 1.99267, 0.544333, 1.80904, 0.208983, 1.79133, 0.0683333, 2.76867,
    2.70033, 1.57382, 1.16759, 1.97133, 0.699333, 7.47667, 6.77733, 3.68888,
    2.51613, 2.95933, 0.231667, 5.67033, 5.43867, 1.97216, 1.92417, 1.10633,
    4.34933, 14.5327, 10.1833, 9.04391, 3.37656, 8.29833, 0.00566667, 0.480333,
    0.474667, 0.161526, 0.17988, 0.087, 0.0696667, 2.69433, 2.62467, 1.25777,
    1.02876, 1.20767, 0.131, 3.943, 3.812, 1.31923, 1.33717, 0.664,
    0.028, 2.27667, 2.24867, 0.657479, 0.793442, 0.282, 1.441, 6.80167,
    5.36067, 3.396, 1.7752, 2.553, 13.8064, 37.5171, 23.7107, 22.2034,
    7.91817, 17.7872, 0.020502, 1.13989, 1.11939, 0.526102, 0.465421, 0.576022,
    0.000914592, 0.240745, 0.239831, 0.0808256, 0.0838915, 0.0585142, 98.564, 218.45,
    119.886, 151.01, 49.711, 116.507,
)
_MAGPIE_STDS = (
    15.4767, 20.4735, 20.6855, 16.4951, 7.88925, 21.5231, 22.8357, 12.1764,
    25.747, 13.7038, 10.1684, 27.4474, 37.3536, 54.9319, 54.2856, 41.8474,
    20.6576, 54.2312, 549.938, 779.045, 819.053, 598.477, 278.894, 785.463,
    3.21883, 3.04152, 4.1838, 2.93107, 1.79528, 5.6623, 1.18124, 0.921013,
    1.24611, 1.01872, 0.490441, 1.41564, 32.9468, 30.125, 41.4265, 26.3788,
    15.8947, 40.0834, 0.360723, 0.710639, 0.822692, 0.501042, 0.338123, 0.900436,
    0.575034, 0.0853203, 0.572743, 0.252255, 0.23653, 0.462376, 0.432432, 1.72949,
    1.72642, 1.19235, 0.774316, 2.03187, 2.11146, 3.4672, 3.67012, 2.88511,
    1.57204, 4.23773, 1.52031, 6.23065, 6.12799, 2.94661, 2.33216, 3.56955,
    3.59054, 6.81314, 6.67401, 4.23107, 2.39298, 5.65149, 0.0750637, 0.499613,
    0.499358, 0.213295, 0.201313, 0.281835, 0.412488, 1.71859, 1.70503, 0.881611,
    0.691777, 1.39829, 0.790678, 3.67456, 3.61386, 1.60622, 1.36957, 1.93316,
    0.428037, 3.93143, 3.90668, 1.3751, 1.44401, 1.56306, 1.48162, 4.56483,
    4.41051, 2.09551, 1.60341, 2.50064, 6.69758, 21.9797, 21.8999, 9.00439,
    7.05194, 10.2559, 0.402439, 1.8353, 1.78985, 0.939661, 0.754182, 1.3339,
    0.0321675, 0.59029, 0.588966, 0.23903, 0.216367, 0.301703, 81.4002, 22.06,
    82.6621, 54.6832, 36.5559, 89.4578,
)


class MissingExtraError(ImportError):
    """An optional package of the ``crystals`` extra is not installed."""


def require_extra(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (SMACT or matminer) or explain how to install it.

    Raises:
        MissingExtraError: the package is missing; the message names the extra to install.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(f"{purpose} needs the optional package {module.split('.')[0]!r} ({err}); "
                                f"install the crystal extra: {INSTALL_HINT}") from None


def check_extras() -> None:
    """Raise :class:`MissingExtraError` now if SMACT or matminer is missing (before long work starts)."""
    require_extra("smact", "compositional validity (SMACT)")
    require_extra("matminer", "the crystal fingerprints (matminer)")


def default_cache_dir() -> Path:
    """``$DIT3D_CACHE/crystal_fingerprints``, else ``$XDG_CACHE_HOME/dit3d/...``, else ``~/.cache/dit3d/...``."""
    cache = os.environ.get("DIT3D_CACHE")
    if not cache:
        cache = osp.join(os.environ.get("XDG_CACHE_HOME") or osp.join(osp.expanduser("~"), ".cache"), "dit3d")
    return Path(osp.expanduser(cache)) / "crystal_fingerprints"


@dataclass(frozen=True)
class CompositionScaler:
    """Per-feature standardisation of composition fingerprints: ``(x - means) / stds``, NaN -> 0.

    Args:
        means, stds: ``(132,)`` statistics (zero stds are treated as 1).
        name: how they were obtained (recorded in the protocol).
    """

    means: np.ndarray
    stds: np.ndarray
    name: str

    @classmethod
    def default(cls) -> CompositionScaler:
        """Statistics of 3000 real MP-20 compositions (see the module docstring)."""
        return cls(np.array(_MAGPIE_MEANS), np.array(_MAGPIE_STDS),
                   "mp20-pilot-3000: nanmean/nanstd of Magpie features of the 3000 MP-20 compositions in "
                   "mp_20_pilot/{train,val,test} (dit3d); CDVAE's fixed CompScaler statistics are similar, not equal")

    @classmethod
    def fit(cls, features: np.ndarray, name: str = "fitted") -> CompositionScaler:
        """NaN-aware mean and standard deviation (ddof 0) of ``(M, 132)`` raw fingerprints."""
        x = np.asarray(features, np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
            means, stds = np.nanmean(x, 0), np.nanstd(x, 0)
        return cls(np.nan_to_num(means), np.where(np.isfinite(stds) & (stds > 0), stds, 1.0), name)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> CompositionScaler:
        """Read ``{"means": [...132], "stds": [...132]}`` (e.g. CDVAE's CompScalerMeans/Stds).

        Raises:
            ValueError: missing keys or wrong lengths.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            means, stds = np.asarray(data["means"], float), np.asarray(data["stds"], float)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: not a composition scaler ({type(err).__name__}: {err}); expected JSON "
                             '{"means": [132 numbers], "stds": [132 numbers]}') from None
        if means.shape != (132,) or stds.shape != (132,):
            raise ValueError(f"{path}: means and stds need 132 numbers each (Magpie), got {means.shape}, {stds.shape}")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        return cls(means, np.where(stds > 0, stds, 1.0), f"from {path.name} (sha256 {digest})")

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Standardised ``(M, 132)`` fingerprints with NaN replaced by 0."""
        z = (np.asarray(features, np.float64) - self.means) / self.stds
        return np.where(np.isnan(z), 0.0, z)


@functools.lru_cache(maxsize=1)
def _featurizers() -> tuple[Any, Any]:
    fp = require_extra("matminer.featurizers.site.fingerprint", "the crystal structure fingerprint")
    comp = require_extra("matminer.featurizers.composition.composite", "the crystal composition fingerprint")
    try:
        magpie = comp.ElementProperty.from_preset("magpie", impute_nan=False)
    except TypeError:  # matminer releases before impute_nan never imputed
        magpie = comp.ElementProperty.from_preset("magpie")
    return fp.CrystalNNFingerprint.from_preset("ops"), magpie


@dataclass
class Fingerprints:
    """Raw fingerprints of ``M`` structures.

    Shapes:
        struct: ``(M, 61)``, NaN rows where CrystalNN failed; comp: ``(M, 132)`` unscaled
        (NaN where Magpie lacks data); ok: ``(M,)`` bool.
    """

    struct: np.ndarray
    comp: np.ndarray
    ok: np.ndarray
    errors: list[str | None] = field(default_factory=list)
    seconds: float = 0.0
    cache_file: str | None = None
    from_cache: bool = False


def _structure_key(structures: Sequence[Any]) -> str:
    from importlib.metadata import version

    h = hashlib.sha256(f"{CACHE_VERSION}|{STRUCT_FEATURIZER}|{COMP_FEATURIZER}|matminer {version('matminer')}|"
                       f"pymatgen {version('pymatgen')}|{len(structures)}".encode())
    for s in structures:
        h.update(np.asarray(s.atomic_numbers, np.int64).tobytes())
        h.update(np.ascontiguousarray(s.lattice.matrix, np.float64).tobytes())
        h.update(np.ascontiguousarray(s.frac_coords, np.float64).tobytes())
    return h.hexdigest()[:32]


def _featurize_one(structure: Any, site_fp: Any, comp_fp: Any, n_struct: int
                   ) -> tuple[np.ndarray, np.ndarray, str | None]:
    comp = np.asarray(comp_fp.featurize(structure.composition), np.float64)
    try:
        struct = np.asarray([site_fp.featurize(structure, i) for i in range(len(structure))], np.float64).mean(0)
    except Exception as err:  # noqa: BLE001 - CrystalNN fails in many ways on odd structures
        return np.full(n_struct, np.nan), comp, f"CrystalNN failed ({type(err).__name__}: {err})"
    if struct.shape != (n_struct,) or not np.isfinite(struct).all():
        return np.full(n_struct, np.nan), comp, "CrystalNN gave non-finite values"
    return struct, comp, None


def compute_fingerprints(structures: Sequence[Any], cache_dir: str | os.PathLike | None = None,
                         progress: bool | None = None, desc: str = "fingerprints") -> Fingerprints:
    """Structure and composition fingerprints (see the module docstring) of pymatgen structures.

    Args:
        structures: pymatgen ``Structure`` s.
        cache_dir: folder for a cache file keyed by the structures' content (atomic numbers,
            lattice, fractional coordinates) and the matminer/pymatgen versions; ``None``: no cache.
        progress: tqdm bar (``None``: only on a terminal).
        desc: label of the bar.

    Returns:
        :class:`Fingerprints`; a structure whose CrystalNN fingerprint fails has ``ok=False``
        and its reason in ``errors``.

    Raises:
        MissingExtraError: matminer is not installed.
    """
    from tqdm.auto import tqdm

    from dit3d.fileio import atomic_write

    site_fp, comp_fp = _featurizers()
    n_struct, n_comp = len(site_fp.feature_labels()), len(comp_fp.feature_labels())
    cache_file = None
    if cache_dir is not None:
        cache_file = Path(cache_dir) / f"{_structure_key(structures)}.npz"
        if cache_file.is_file():
            try:
                with np.load(cache_file, allow_pickle=False) as z:
                    errors = [str(e) or None for e in z["errors"]]
                    return Fingerprints(z["struct"], z["comp"], z["ok"], errors, float(z["seconds"]),
                                        str(cache_file), True)
            except Exception as err:  # noqa: BLE001 - a broken cache file means "recompute"
                warnings.warn(f"recomputing fingerprints: cache {cache_file} unreadable ({err})", stacklevel=2)
    t0 = time.perf_counter()
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CrystalNN warns about missing oxidation states on every site
        for s in tqdm(structures, desc=desc, unit="crystal", leave=False,
                      disable=None if progress is None else not progress):
            rows.append(_featurize_one(s, site_fp, comp_fp, n_struct))
    seconds = time.perf_counter() - t0
    struct = np.stack([r[0] for r in rows]) if rows else np.zeros((0, n_struct))
    comp = np.stack([r[1] for r in rows]) if rows else np.zeros((0, n_comp))
    errors = [r[2] for r in rows]
    ok = np.array([e is None for e in errors], dtype=bool)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, struct=struct, comp=comp, ok=ok, errors=np.array([e or "" for e in errors], dtype=str),
                         seconds=seconds)

        atomic_write(cache_file, write)
    return Fingerprints(struct, comp, ok, errors, seconds, None if cache_file is None else str(cache_file))


def coverage(generated: Fingerprints, reference: Fingerprints, struct_cutoff: float, comp_cutoff: float,
             scaler: CompositionScaler | None = None, num_generated: int | None = None) -> dict[str, Any]:
    """COV-R and COV-P of CDVAE (see the module docstring for the definition).

    Args:
        generated: fingerprints of the generated samples scored (rows with ``ok=False`` are left
            out of the distances and count as misses for COV-P).
        reference: fingerprints of the reference set (rows with ``ok=False`` are left out).
        struct_cutoff, comp_cutoff: ``delta_s`` and ``delta_c``.
        scaler: composition standardisation; default :meth:`CompositionScaler.default`.
        num_generated: COV-P denominator; default ``len(generated.ok)``. Pass the number of all
            generated samples (unreadable ones included) to follow CDVAE.

    Returns:
        ``cov_recall``, ``cov_precision`` and the mean nearest distances ``amsd_recall``,
        ``amsd_precision``, ``amcd_recall``, ``amcd_precision`` (None when a side is empty).
    """
    from scipy.spatial.distance import cdist

    scaler = scaler or CompositionScaler.default()
    n_gen = len(generated.ok) if num_generated is None else int(num_generated)
    g, r = generated.ok, reference.ok
    empty = {"cov_recall": 0.0, "cov_precision": 0.0, "amsd_recall": None, "amsd_precision": None,
             "amcd_recall": None, "amcd_precision": None}
    if not g.any() or not r.any() or n_gen == 0:
        return empty
    d_s = cdist(generated.struct[g], reference.struct[r])
    d_c = cdist(scaler.transform(generated.comp[g]), scaler.transform(reference.comp[r]))
    s_rec, c_rec = d_s.min(0), d_c.min(0)  # per reference crystal
    s_pre, c_pre = d_s.min(1), d_c.min(1)  # per generated sample
    return {
        "cov_recall": float(np.mean((s_rec <= struct_cutoff) & (c_rec <= comp_cutoff))),
        "cov_precision": float(np.sum((s_pre <= struct_cutoff) & (c_pre <= comp_cutoff)) / n_gen),
        "amsd_recall": float(s_rec.mean()), "amsd_precision": float(s_pre.mean()),
        "amcd_recall": float(c_rec.mean()), "amcd_precision": float(c_pre.mean()),
    }
