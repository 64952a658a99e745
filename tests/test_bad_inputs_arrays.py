"""Bad-input sweep (issue 7), part 2 of 3: in-memory entry points.

Metrics (molecules, point clouds, crystals), the crystal array/structure converters and
the tokenizers get NaN/inf, zero atoms or points, huge values, wrong dtypes, wrong types
and wrong shapes. Each must raise ``ValueError`` (or a subclass) whose message says what
is wrong and, for a batch, which item; what is returned must be finite. Overview and
counts in ``tests/test_bad_inputs.py``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from cifs import PO_CIF
from hypothesis import given
from hypothesis import strategies as st
from rdkit import Chem

from bad_inputs import SWEEP, expect_error
from dit3d.chem.crystals import (ase_to_structure, check_structure, parse_cif, structure_from_arrays,
                                 structure_to_arrays, structure_to_ase)
from dit3d.metrics import evaluate_molecules
from dit3d.metrics.pointclouds import (chamfer_distance, earth_movers_distance, evaluate_pointclouds,
                                       generative_metrics, normalize_pointclouds, pairwise_cd, pairwise_emd)
from dit3d.tokenizers import AtomAutoencoder, Atoms, PatchTokenizer2D, VoxelTokenizer, lattice_features

WATER = (np.array([8, 1, 1]), np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.2404, 0.9294, 0.0]]))

# ============================================================================ molecule metrics
MOLECULE_METRICS = [
    ("no-molecules", lambda: evaluate_molecules([]), ["no molecules"]),
    ("bad-protocol", lambda: evaluate_molecules([WATER], protocol="x"), ["protocol"]),
    ("unknown-element", lambda: evaluate_molecules([WATER, ([0, 1, 1], WATER[1])]), ["molecule 1", "element"]),
    ("unknown-symbol", lambda: evaluate_molecules([(["O", "Xx", "H"], WATER[1])]), ["molecule 0", "Xx"]),
    ("bool-elements", lambda: evaluate_molecules([(np.ones(3, bool), WATER[1])]), ["molecule 0"]),
    ("wrong-shape", lambda: evaluate_molecules([(WATER[0], np.zeros((3, 2)))]), ["molecule 0", "(3, 3)"]),
    ("string-positions", lambda: evaluate_molecules([WATER, (WATER[0], [["a", "b", "c"]] * 3)]),
     ["molecule 1", "positions"]),
    ("int-item", lambda: evaluate_molecules([WATER, 5]), ["molecule 1"]),
    ("none-item", lambda: evaluate_molecules([None]), ["molecule 0"]),
    ("string-item", lambda: evaluate_molecules(["CCO"]), ["molecule 0"]),
    ("mol-without-conformer", lambda: evaluate_molecules([Chem.MolFromSmiles("CCO")]), ["molecule 0", "conformer"]),
    ("missing-file", lambda: evaluate_molecules("no_such_file.sdf"), ["no_such_file.sdf", "does not exist"]),
]


@pytest.mark.parametrize("call, where", [c[1:] for c in MOLECULE_METRICS], ids=[c[0] for c in MOLECULE_METRICS])
def test_molecule_metrics_reject(call, where):
    expect_error(call, ValueError, *where)


def test_molecule_metrics_count_nonfinite_and_empty_as_invalid():
    """Documented: a molecule with NaN/inf coordinates or no atoms is scored, as invalid."""
    r = evaluate_molecules([WATER, (WATER[0], WATER[1] * np.nan), (np.zeros(0, int), np.zeros((0, 3)))])
    assert r["counts"]["nonfinite_or_empty"] == 2 and r["counts"]["molecules"] == 3
    assert all(0.0 <= r[k] <= 1.0 for k in ("atom_stability", "mol_stability", "validity", "uniqueness"))


# ============================================================================ point-cloud metrics
GOOD = np.random.default_rng(0).random((2, 8, 3))
BAD_CLOUDS = [
    ("nan", np.where(GOOD > 0.9, np.nan, GOOD), ["NaN"]),
    ("inf", np.full((2, 8, 3), np.inf), ["inf"]),
    ("zero-points", np.zeros((2, 0, 3)), ["empty"]),
    ("zero-clouds", np.zeros((0, 8, 3)), ["empty"]),
    ("strings", np.full((2, 8, 3), "a"), ["numeric"]),
    ("objects", np.array([None, None], dtype=object), []),
    ("ragged", [np.zeros((3, 3)), np.zeros((4, 3))], ["numeric"]),
    ("complex", np.zeros((2, 8, 3), complex), ["real"]),
    ("bool", np.ones((2, 8, 3), bool), ["bool"]),
    ("complex-tensor", torch.zeros(2, 8, 3, dtype=torch.cfloat), ["real"]),
    ("wrong-last-axis", np.zeros((2, 8, 2)), ["(2, 8, 2)"]),
    ("four-axes", np.zeros((1, 2, 8, 3)), ["(1, 2, 8, 3)"]),
    ("huge", np.full((2, 8, 3), 1e300), ["rescale"]),
    ("huge-float32-overflow", GOOD * 1e20, ["rescale"]),
]
CLOUD_METRICS = {
    "chamfer": lambda a: chamfer_distance(a, GOOD),
    "emd": lambda a: earth_movers_distance(a, GOOD, method="exact"),
    "pairwise_cd": lambda a: pairwise_cd(a, GOOD),
    "pairwise_emd": lambda a: pairwise_emd(GOOD, a, method="exact"),
    "evaluate": lambda a: evaluate_pointclouds(a, GOOD, emd="exact"),
    "normalize": lambda a: normalize_pointclouds(GOOD, a, "global"),
}


@pytest.mark.parametrize("metric", list(CLOUD_METRICS))
@pytest.mark.parametrize("clouds, where", [c[1:] for c in BAD_CLOUDS], ids=[c[0] for c in BAD_CLOUDS])
def test_pointcloud_metrics_reject(metric, clouds, where):
    expect_error(lambda: CLOUD_METRICS[metric](clouds), ValueError, *where)


POINTCLOUD_OPTIONS = [
    ("emd-method", lambda: evaluate_pointclouds(GOOD, GOOD, emd="magic"), ["emd"]),
    ("normalization", lambda: evaluate_pointclouds(GOOD, GOOD, emd=None, normalization="magic"), ["normalization"]),
    ("batch-size-0", lambda: evaluate_pointclouds(GOOD, GOOD, emd=None, batch_size=0), ["batch_size"]),
    ("batch-size-float", lambda: evaluate_pointclouds(GOOD, GOOD, emd=None, batch_size=1.5), ["batch_size"]),
    ("emd-unequal-points", lambda: evaluate_pointclouds(GOOD, GOOD[:, :5], emd="exact"), ["EMD"]),
    ("per-shape-degenerate", lambda: evaluate_pointclouds(np.zeros((2, 8, 3)), GOOD, emd=None,
                                                          normalization="per-shape"), ["samples", "0, 1"]),
    ("global-degenerate", lambda: evaluate_pointclouds(GOOD, np.zeros((2, 8, 3)), emd=None, normalization="global"),
     ["std is 0"]),
    ("chunk-0", lambda: pairwise_cd(GOOD, GOOD, chunk=0), ["chunk"]),
    ("single-vs-batch", lambda: chamfer_distance(GOOD[0], GOOD), ["(8, 3)", "(2, 8, 3)"]),
    ("matrix-nan", lambda: generative_metrics(np.full((2, 2), np.nan), np.zeros((2, 2)), np.zeros((2, 2))), ["NaN"]),
    ("matrix-negative", lambda: generative_metrics(-np.ones((2, 2)), np.zeros((2, 2)), np.zeros((2, 2))),
     ["negative"]),
    ("matrix-shape", lambda: generative_metrics(np.zeros((2, 2)), np.zeros((3, 3)), np.zeros((2, 2))), ["(2, 2)"]),
    ("matrix-empty", lambda: generative_metrics(np.zeros((0, 2)), np.zeros((0, 0)), np.zeros((2, 2))), ["empty"]),
]


@pytest.mark.parametrize("call, where", [c[1:] for c in POINTCLOUD_OPTIONS], ids=[c[0] for c in POINTCLOUD_OPTIONS])
def test_pointcloud_metric_options_reject(call, where):
    expect_error(call, ValueError, *where)


# ============================================================================ crystal metrics and arrays
def _po():
    return parse_cif(PO_CIF)[0]


def _crystal_metric(name):
    from dit3d.metrics.crystals import evaluate_crystals, smact_validity, structure_validity

    return {"structure_validity": structure_validity, "smact_validity": smact_validity,
            "evaluate_crystals": lambda x: evaluate_crystals(x, [_po()], progress=False)}[name]


CRYSTAL_METRICS = [
    ("validity-string", "structure_validity", "x", ["Structure", "str"]),
    ("validity-none", "structure_validity", None, ["Structure", "NoneType"]),
    ("smact-none", "smact_validity", None, ["None"]),
    ("smact-int", "smact_validity", 5, ["5"]),
    ("smact-empty", "smact_validity", "", ["composition"]),
    ("evaluate-empty", "evaluate_crystals", [], ["nothing to compare"]),
    ("evaluate-string-item", "evaluate_crystals", "POISON", ["generated 0", "str"]),
    ("evaluate-none-item", "evaluate_crystals", "NONE", ["generated 1", "NoneType"]),
    ("evaluate-one-structure", "evaluate_crystals", "ONE", ["sequence"]),
]


@pytest.mark.parametrize("name, value, where", [c[1:] for c in CRYSTAL_METRICS], ids=[c[0] for c in CRYSTAL_METRICS])
def test_crystal_metrics_reject(name, value, where):
    value = {"POISON": ["x"], "NONE": [_po(), None], "ONE": _po()}.get(value, value) if isinstance(value, str) else value
    expect_error(lambda: _crystal_metric(name)(value), ValueError, *where)


def _disordered():
    s = _po().copy()
    s.replace_species({"Po": {"Po": 0.5}})
    return s


CRYSTAL_ARRAYS = [
    ("nan-frac", lambda: structure_from_arrays([84], [[np.nan, 0, 0]], [3, 3, 3], [90, 90, 90]), ["NaN"]),
    ("inf-frac", lambda: structure_from_arrays([84], [[0, np.inf, 0]], [3, 3, 3], [90, 90, 90]), ["inf"]),
    ("zero-atoms", lambda: structure_from_arrays([], np.zeros((0, 3)), [3, 3, 3], [90, 90, 90]), ["zero atoms"]),
    ("atomic-number-0", lambda: structure_from_arrays([0], [[0, 0, 0]], [3, 3, 3], [90, 90, 90]), ["0"]),
    ("atomic-number-119", lambda: structure_from_arrays([119], [[0, 0, 0]], [3, 3, 3], [90, 90, 90]), ["119"]),
    ("unknown-symbol", lambda: structure_from_arrays(["Xx"], [[0, 0, 0]], [3, 3, 3], [90, 90, 90]), ["Xx"]),
    ("fractional-z", lambda: structure_from_arrays([1.5], [[0, 0, 0]], [3, 3, 3], [90, 90, 90]), ["1.5"]),
    ("string-frac", lambda: structure_from_arrays([1], [["a", 0, 0]], [3, 3, 3], [90, 90, 90]), ["frac_coords"]),
    ("string-length", lambda: structure_from_arrays([1], [[0, 0, 0]], ["a", 3, 3], [90, 90, 90]), ["lengths"]),
    ("frac-shape", lambda: structure_from_arrays([1], [[0, 0]], [3, 3, 3], [90, 90, 90]), ["(1, 2)"]),
    ("two-lengths", lambda: structure_from_arrays([1], [[0, 0, 0]], [3, 3], [90, 90, 90]), ["3 values"]),
    ("negative-length", lambda: structure_from_arrays([1], [[0, 0, 0]], [-3, 3, 3], [90, 90, 90]), ["non-positive"]),
    ("huge-lengths", lambda: structure_from_arrays([1], [[0, 0, 0]], [1e308] * 3, [90, 90, 90]), ["overflow"]),
    ("inf-length", lambda: structure_from_arrays([1], [[0, 0, 0]], [np.inf, 3, 3], [90, 90, 90]), ["non-finite"]),
    ("angle-0", lambda: structure_from_arrays([1], [[0, 0, 0]], [3, 3, 3], [0, 90, 90]), ["(0, 180)"]),
    ("flat-cell", lambda: structure_from_arrays([1], [[0, 0, 0]], [3, 3, 3], [120, 120, 120]), ["volume"]),
    ("to-arrays-not-a-structure", lambda: structure_to_arrays("x"), ["Structure"]),
    ("to-arrays-disordered", lambda: structure_to_arrays(_disordered()), ["disordered"]),
    ("to-ase-none", lambda: structure_to_ase(None), ["Structure"]),
    ("check-structure-list", lambda: check_structure([_po()]), ["Structure"]),
]


@pytest.mark.parametrize("call, where", [c[1:] for c in CRYSTAL_ARRAYS], ids=[c[0] for c in CRYSTAL_ARRAYS])
def test_crystal_arrays_reject(call, where):
    expect_error(call, ValueError, *where)


def _ase(**kwargs):
    from ase import Atoms as AseAtoms

    return AseAtoms(**{"numbers": [1], "positions": [[0, 0, 0]], "cell": np.eye(3) * 3, "pbc": True, **kwargs})


ASE_CASES = [
    ("none", lambda: None, ["ase.Atoms"]),
    ("not-periodic", lambda: _ase(pbc=False), ["periodic"]),
    ("zero-atoms", lambda: _ase(numbers=[], positions=np.zeros((0, 3))), ["zero atoms"]),
    ("nan-position", lambda: _ase(positions=[[np.nan, 0, 0]]), ["NaN"]),
    ("flat-cell", lambda: _ase(cell=np.zeros((3, 3))), ["volume"]),
    ("nan-cell", lambda: _ase(cell=np.full((3, 3), np.nan)), ["non-finite"]),
    ("atomic-number-0", lambda: _ase(numbers=[0]), ["1..118"]),
]


@pytest.mark.parametrize("build, where", [c[1:] for c in ASE_CASES], ids=[c[0] for c in ASE_CASES])
def test_ase_to_structure_rejects(build, where):
    expect_error(lambda: ase_to_structure(build()), ValueError, *where)


# ============================================================================ tokenizers
VOXEL_INPUTS = [
    ("nan", torch.full((2, 5, 3), float("nan")), ["NaN"]),
    ("inf", torch.full((2, 5, 3), float("inf")), ["inf"]),
    ("zero-points", torch.zeros(2, 0, 3), ["no points"]),
    ("two-axes", torch.rand(5, 3), ["(B, N, 3)"]),
    ("wrong-last-axis", torch.rand(2, 5, 2), ["(B, N, 3)"]),
    ("long", torch.ones(2, 5, 3, dtype=torch.long), ["floating", "int64"]),
    ("bool", torch.ones(2, 5, 3, dtype=torch.bool), ["floating", "bool"]),
    ("complex", torch.zeros(2, 5, 3, dtype=torch.cfloat), ["floating"]),
    ("numpy", np.random.rand(2, 5, 3), ["torch.Tensor", "ndarray"]),
    ("list", [[[0.0, 0.0, 0.0]]], ["torch.Tensor", "list"]),
    ("overflowing", torch.tensor([[[3e38, 3e38, 3e38], [-3e38, -3e38, -3e38]]]), ["too large"]),
]


@pytest.mark.parametrize("points, where", [c[1:] for c in VOXEL_INPUTS], ids=[c[0] for c in VOXEL_INPUTS])
def test_voxel_tokenizer_rejects(points, where):
    expect_error(lambda: VoxelTokenizer(8, 2).encode(points), ValueError, *where)


IMAGE_INPUTS = [
    ("nan", torch.full((2, 1, 8, 8), float("nan")), ["NaN"]),
    ("inf", torch.full((2, 1, 8, 8), float("-inf")), ["inf"]),
    ("long", torch.ones(2, 1, 8, 8, dtype=torch.long), ["floating", "int64"]),
    ("bool", torch.ones(2, 1, 8, 8, dtype=torch.bool), ["floating"]),
    ("numpy", np.random.rand(2, 1, 8, 8), ["torch.Tensor", "ndarray"]),
    ("wrong-size", torch.rand(2, 1, 7, 8), ["(2, 1, 7, 8)"]),
    ("no-batch-axis", torch.rand(1, 8, 8), ["(1, 8, 8)"]),
]


@pytest.mark.parametrize("images, where", [c[1:] for c in IMAGE_INPUTS], ids=[c[0] for c in IMAGE_INPUTS])
def test_patch_tokenizer_rejects(images, where):
    expect_error(lambda: PatchTokenizer2D(8, 2, channels=1).encode(images), ValueError, *where)


TOKENIZER_ARGS = [
    ("voxel-patch-does-not-divide", lambda: VoxelTokenizer(8, 3), ["divide"]),
    ("voxel-resolution-0", lambda: VoxelTokenizer(0, 1), ["resolution"]),
    ("voxel-float-resolution", lambda: VoxelTokenizer(8.0, 2), ["resolution"]),
    ("patch-does-not-divide", lambda: PatchTokenizer2D(8, 3), ["divide"]),
    ("patch-float-size", lambda: PatchTokenizer2D(8.5, 2), ["image_size", "8.5"]),
    ("patch-negative", lambda: PatchTokenizer2D(8, -2), ["patch_size"]),
    ("patch-string", lambda: PatchTokenizer2D("8", 2), ["image_size"]),
]


@pytest.mark.parametrize("build, where", [c[1:] for c in TOKENIZER_ARGS], ids=[c[0] for c in TOKENIZER_ARGS])
def test_tokenizer_arguments_rejected(build, where):
    expect_error(build, ValueError, *where)


def _atoms(**change):
    fields = dict(atom_types=torch.tensor([[8, 1, 1], [6, 1, 0]]), pos=torch.rand(2, 3, 3),
                  frac_coords=torch.rand(2, 3, 3), mask=torch.tensor([[True] * 3, [True, True, False]]),
                  lattice=torch.zeros(2, 6), dataset_idx=torch.tensor([0, 1]))
    fields.update(change)
    return Atoms(**fields)


ATOM_INPUTS = [
    ("nan-positions", lambda: _atoms(pos=torch.full((2, 3, 3), float("nan"))), ["NaN"]),
    ("atomic-number-200", lambda: _atoms(atom_types=torch.tensor([[200, 1, 1], [6, 1, 0]])), ["0..", "200"]),
    ("negative-atomic-number", lambda: _atoms(atom_types=torch.tensor([[-1, 1, 1], [6, 1, 0]])), ["-1"]),
    ("float-atom-types", lambda: _atoms(atom_types=torch.tensor([[8.0, 1, 1], [6, 1, 0]])), ["atom_types", "float"]),
    ("double-positions", lambda: _atoms(pos=torch.rand(2, 3, 3, dtype=torch.float64)), ["pos", "float64"]),
    ("positions-shape", lambda: _atoms(pos=torch.rand(2, 4, 3)), ["pos", "(2, 4, 3)"]),
    ("mask-not-bool", lambda: _atoms(mask=torch.ones(2, 3)), ["mask", "bool"]),
    ("unknown-system-kind", lambda: _atoms(dataset_idx=torch.tensor([0, 5])), ["dataset_idx", "5"]),
    ("numpy-positions", lambda: _atoms(pos=np.zeros((2, 3, 3), np.float32)), ["pos", "ndarray"]),
    ("not-atoms", lambda: {"atom_types": torch.zeros(1, 1, dtype=torch.long)}, ["Atoms", "dict"]),
]


@pytest.fixture(scope="module")
def autoencoder():
    return AtomAutoencoder(hidden_size=16, depth=1, num_heads=2, latent_dim=4).eval()


@pytest.mark.parametrize("build, where", [c[1:] for c in ATOM_INPUTS], ids=[c[0] for c in ATOM_INPUTS])
def test_atom_autoencoder_rejects(autoencoder, build, where):
    expect_error(lambda: autoencoder.encode(build()), ValueError, *where)


def test_lattice_features_rejects_wrong_shape():
    expect_error(lambda: lattice_features(torch.rand(2, 5), torch.tensor([1, 2])), ValueError, "(2, 5)")


# ============================================================================ hypothesis
NUMBER = st.one_of(st.floats(-1e3, 1e3), st.just(np.nan), st.just(np.inf), st.just(-np.inf), st.just(1e30),
                   st.just(1e300))
CLOUD_SHAPE = st.lists(st.integers(0, 5), min_size=1, max_size=4).map(tuple)


@SWEEP
@given(shape=CLOUD_SHAPE, fill=NUMBER, dtype=st.sampled_from(["f4", "f8", "i8", "b1", "c16", "U1"]),
       noise=st.booleans())
def test_property_chamfer_is_finite_or_value_error(shape, fill, dtype, noise):
    with np.errstate(all="ignore"):
        base = np.full(shape, fill) + (np.random.default_rng(0).random(shape) if noise else 0.0)
        arr = base.astype(dtype) if dtype != "U1" else np.full(shape, "a")
    try:
        d = chamfer_distance(arr, arr + 0 if dtype not in ("b1", "U1") else arr)
    except ValueError:
        return
    assert np.all(np.isfinite(d)) and np.all(np.asarray(d) >= 0)


@SWEEP
@given(shape=CLOUD_SHAPE, fill=NUMBER, dtype=st.sampled_from([torch.float32, torch.float64, torch.float16,
                                                              torch.long, torch.bool]))
def test_property_voxel_tokenizer_is_finite_or_value_error(shape, fill, dtype):
    with np.errstate(all="ignore"):
        values = np.full(shape, fill) + np.random.default_rng(1).random(shape)
    try:
        points = torch.as_tensor(values).to(dtype)
    except (RuntimeError, OverflowError):
        return
    tok = VoxelTokenizer(4, 2)
    try:
        tokens, coords = tok.encode(points)
    except ValueError:
        return
    assert torch.isfinite(tokens).all() and torch.isfinite(coords).all()
    assert coords.min() >= 0 and coords.max() <= 3


@SWEEP
@given(z=st.lists(st.one_of(st.integers(-2, 120), st.sampled_from(["Na", "Cl", "Xx", ""])), max_size=3),
       frac=st.lists(NUMBER, min_size=9, max_size=9), lengths=st.lists(NUMBER, min_size=3, max_size=3),
       angles=st.lists(st.one_of(st.floats(-10, 200), st.just(np.nan)), min_size=3, max_size=3))
def test_property_structure_from_arrays(z, frac, lengths, angles):
    try:
        s = structure_from_arrays(z, np.asarray(frac).reshape(3, 3)[:len(z)], lengths, angles)
    except ValueError:
        return
    check_structure(s)  # whatever is built is a valid crystal of the shared representation


@SWEEP
@given(mols=st.lists(st.tuples(st.lists(st.integers(1, 20), min_size=0, max_size=4),
                               st.lists(NUMBER, min_size=12, max_size=12)), min_size=1, max_size=3))
def test_property_evaluate_molecules(mols):
    items = [(np.asarray(z, np.int64), np.asarray(c).reshape(4, 3)[:len(z)]) for z, c in mols]
    r = evaluate_molecules(items)
    assert r["counts"]["molecules"] == len(items)
    assert all(0.0 <= r[k] <= 1.0 for k in ("atom_stability", "mol_stability", "validity", "uniqueness"))
