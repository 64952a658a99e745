"""Point-cloud metrics (CD, EMD, MMD, COV, 1-NNA) on hand-made clouds with known answers."""
import itertools

import numpy as np
import pytest
import torch

from dit3d.metrics.pointclouds import (EMD_CONVENTIONS, chamfer_distance, earth_movers_distance, evaluate_pointclouds,
                                       generative_metrics, normalize_pointclouds, pairwise_cd, pairwise_emd)


def _clouds(n_clouds, n_points, seed=0):
    return np.random.default_rng(seed).random((n_clouds, n_points, 3))


def _brute_force_emd(x, y, squared):
    d2 = ((x[:, None] - y[None]) ** 2).sum(-1)
    c = d2 if squared else np.sqrt(d2)
    return min(c[np.arange(len(x)), list(p)].mean() for p in itertools.permutations(range(len(x))))


def _loop_approxmatch(x, y, squared, levels):
    """The approxmatch update rules written out with plain loops, float64 (a slow reference)."""
    n = len(x)
    a, b = [1.0] * n, [1.0] * n
    cost = 0.0
    for lam in levels:
        w = [[np.exp(lam * float(((x[k] - y[l]) ** 2).sum())) for l in range(n)] for k in range(n)]
        r = [a[k] / (1e-9 + sum(w[k][l] * b[l] for l in range(n))) for k in range(n)]
        s = [b[l] * sum(w[k][l] * r[k] for k in range(n)) for l in range(n)]
        q = [min(b[l] / (s[l] + 1e-9), 1.0) * b[l] for l in range(n)]
        b = [max(0.0, b[l] - s[l]) for l in range(n)]
        for k in range(n):
            moved = [w[k][l] * r[k] * q[l] for l in range(n)]
            d2 = [float(((x[k] - y[l]) ** 2).sum()) for l in range(n)]
            cost += sum(m * (d if squared else np.sqrt(d)) for m, d in zip(moved, d2))
            a[k] = max(0.0, a[k] - sum(moved))
    return cost / n


# ----------------------------------------------------------------------------- Chamfer


def test_cd_of_identical_clouds_is_zero():
    x = _clouds(1, 50)[0]
    assert chamfer_distance(x, x) == pytest.approx(0.0, abs=1e-7)
    assert chamfer_distance(x + 1e4, x + 1e4) == pytest.approx(0.0, abs=1e-7)  # far from the origin


def test_cd_by_hand():
    # Single points: each direction contributes |a - b|^2.
    assert chamfer_distance([[0.0, 0, 0]], [[3.0, 4, 0]]) == pytest.approx(50.0)
    # Two points 1 apart, translated by d = 0.1 < 1/2 along x: every nearest neighbour is
    # the translate, so CD = d^2 + d^2.
    x = np.array([[0.0, 0, 0], [1.0, 0, 0]])
    assert chamfer_distance(x, x + [0.1, 0, 0]) == pytest.approx(2 * 0.1 ** 2, rel=1e-5)
    assert chamfer_distance(x + 5e3, x + [5e3 + 0.1, 5e3, 5e3]) == pytest.approx(0.02, rel=1e-5)
    # Unequal sizes: 0 -> {1, 2} costs 1; {1, 2} -> 0 costs (1 + 4) / 2.
    assert chamfer_distance([[0.0, 0, 0]], [[1.0, 0, 0], [2.0, 0, 0]]) == pytest.approx(3.5)


def test_cd_symmetric_and_batched():
    x, y = _clouds(3, 40, seed=1), _clouds(3, 25, seed=2)
    xy, yx = chamfer_distance(x, y), chamfer_distance(y, x)
    assert xy.shape == (3,) and np.allclose(xy, yx, rtol=1e-6)
    ref = [((xi[:, None] - yi[None]) ** 2).sum(-1) for xi, yi in zip(x, y)]
    np.testing.assert_allclose(xy, [d.min(1).mean() + d.min(0).mean() for d in ref], rtol=1e-5)
    assert chamfer_distance(torch.from_numpy(x[0]), y[0]) == pytest.approx(xy[0], rel=1e-6)


# ----------------------------------------------------------------------------- EMD


@pytest.mark.parametrize("convention", list(EMD_CONVENTIONS))
def test_exact_emd_equals_brute_force(convention):
    squared = EMD_CONVENTIONS[convention][0]
    for n in range(1, 7):
        x, y = _clouds(2, n, seed=n)
        r = earth_movers_distance(x, y, method="exact", convention=convention)
        assert (r.method, r.convention) == ("exact", convention)
        assert r.value == pytest.approx(_brute_force_emd(x, y, squared), rel=1e-12)


def test_emd_by_hand():
    x, y = [[0.0, 0, 0], [1.0, 0, 0]], [[1.0, 1, 0], [0.0, 1, 0]]  # straight up, 1 each
    for convention in EMD_CONVENTIONS:
        assert earth_movers_distance(x, y, method="exact", convention=convention).value == pytest.approx(1.0)
        assert earth_movers_distance(x, y, convention=convention).value == pytest.approx(1.0, rel=1e-3)
    # Squared and Euclidean costs differ: one point moved by 2 vs two points by 1.
    x, y = [[0.0, 0, 0], [5.0, 0, 0]], [[2.0, 0, 0], [5.0, 0, 0]]
    assert earth_movers_distance(x, y, method="exact", convention="pvd").value == pytest.approx(2.0)
    assert earth_movers_distance(x, y, method="exact", convention="pointflow").value == pytest.approx(1.0)


@pytest.mark.parametrize("convention", list(EMD_CONVENTIONS))
def test_approx_emd_follows_the_update_rules(convention):
    squared, levels = EMD_CONVENTIONS[convention]
    rng = np.random.default_rng(3)
    x = rng.random((20, 3))
    for y in (rng.random((20, 3)), x + 0.03 * rng.standard_normal((20, 3))):
        got = earth_movers_distance(x, y, convention=convention)
        assert (got.method, got.convention) == ("approx", convention)
        assert got.value == pytest.approx(_loop_approxmatch(x, y, squared, levels), rel=1e-3)


def test_approx_emd_upper_bounds_exact_and_is_close_on_similar_clouds():
    rng = np.random.default_rng(4)
    x = rng.random((8, 48, 3))
    spacing = 48 ** (-1 / 3)
    cases = {"random": rng.random((8, 48, 3)), "jittered": x + 0.1 * spacing * rng.standard_normal(x.shape)}
    for name, y in cases.items():
        approx = earth_movers_distance(x, y, convention="pvd").value
        exact = earth_movers_distance(x, y, method="exact", convention="pvd").value
        # With the final lambda = 0 round the plan is a full transport plan: never below the optimum.
        assert (approx >= exact * (1 - 1e-5)).all(), name
        if name == "jittered":
            assert (approx / exact).mean() < 1.05 and (approx / exact).max() < 1.15


def test_approx_emd_of_identical_clouds_is_zero():
    x = _clouds(1, 64)[0]
    for convention in EMD_CONVENTIONS:
        assert earth_movers_distance(x, x, convention=convention).value == pytest.approx(0.0, abs=1e-6)


def test_emd_rejects_unequal_sizes():
    with pytest.raises(ValueError, match="same shape"):
        earth_movers_distance(np.zeros((4, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="equal point counts"):
        pairwise_emd(np.zeros((2, 4, 3)), np.zeros((2, 5, 3)))


# ----------------------------------------------------------------------------- pairwise


def test_pairwise_cd_matches_single_pairs_and_chunking():
    a, b = _clouds(5, 30, seed=5), _clouds(4, 20, seed=6)
    m = pairwise_cd(a, b)
    assert m.shape == (5, 4)
    for i, j in itertools.product(range(5), range(4)):
        assert m[i, j] == pytest.approx(chamfer_distance(a[i], b[j]), rel=1e-6)
    for chunk in (1, 3, 20):
        np.testing.assert_array_equal(pairwise_cd(a, b, chunk=chunk), m)
    within = pairwise_cd(a, chunk=2)
    assert np.array_equal(within, within.T) and (np.diag(within) == 0).all()
    np.testing.assert_array_equal(within, pairwise_cd(a, chunk=1))
    np.testing.assert_allclose(within[np.triu_indices(5, 1)], pairwise_cd(a, a)[np.triu_indices(5, 1)], rtol=1e-6)


def test_pairwise_emd_matches_single_pairs_and_chunking():
    a, b = _clouds(4, 16, seed=7), _clouds(3, 16, seed=8)
    r = pairwise_emd(a, b)
    assert r.matrix.shape == (4, 3) and (r.method, r.convention) == ("approx", "pvd")
    for i, j in itertools.product(range(4), range(3)):
        assert r.matrix[i, j] == pytest.approx(earth_movers_distance(a[i], b[j]).value, rel=1e-6)
    np.testing.assert_array_equal(pairwise_emd(a, b, chunk=5).matrix, r.matrix)
    # Within a set the approximation is run in both orders (it is not symmetric).
    within = pairwise_emd(a, chunk=3).matrix
    assert (np.diag(within) == 0).all()
    assert within[0, 1] == pytest.approx(earth_movers_distance(a[0], a[1]).value, rel=1e-6)
    assert within[1, 0] == pytest.approx(earth_movers_distance(a[1], a[0]).value, rel=1e-6)
    exact = pairwise_emd(a, method="exact", convention="pointflow")
    assert (exact.method, exact.convention) == ("exact", "pointflow") and np.array_equal(exact.matrix, exact.matrix.T)
    assert exact.matrix[2, 3] == pytest.approx(
        earth_movers_distance(a[2], a[3], method="exact", convention="pointflow").value)


def test_pairwise_progress_bar_runs(capsys):
    a = _clouds(3, 8)
    assert pairwise_cd(a, progress=True).shape == (3, 3)
    assert pairwise_emd(a, progress=True).matrix.shape == (3, 3)


# ----------------------------------------------------------------------------- MMD / COV / 1-NNA


def test_generative_metrics_by_hand():
    # 3 samples, 2 references. Nearest reference of each sample: 0, 0, 0 -> COV = 1/2.
    # MMD = mean over references of the closest sample: (1 + 3) / 2.
    d_sr = np.array([[1.0, 4.0], [2.0, 3.0], [1.5, 5.0]])
    d_ss = np.array([[0.0, 0.5, 9.0], [0.5, 0.0, 9.0], [9.0, 9.0, 0.0]])
    d_rr = np.array([[0.0, 0.2], [0.2, 0.0]])
    # Nearest other cloud: s0 -> s1, s1 -> s0 (right); s2 -> r0 (wrong); r0 -> r1, r1 -> r0 (right).
    assert generative_metrics(d_sr, d_ss, d_rr) == {"MMD": 2.0, "COV": 0.5, "1-NNA": 4 / 5}


def test_samples_equal_to_references():
    refs = _clouds(6, 32, seed=9)
    out = evaluate_pointclouds(refs.copy(), refs, emd="exact")
    for name in ("CD", "EMD"):
        # Each cloud's nearest other cloud is its twin in the other set: all misclassified.
        assert out[name]["COV"] == 1.0 and out[name]["1-NNA"] == 0.0
        assert out[name]["MMD"] == pytest.approx(0.0, abs=1e-6)


def test_samples_far_from_references():
    # References spread along x; samples are copies moved 100 further: each sample's nearest
    # reference is the last one, and everything's nearest other cloud is in its own set.
    base = _clouds(1, 16, seed=10)[0]
    refs = np.stack([base + [0.3 * k, 0, 0] for k in range(5)])
    out = evaluate_pointclouds(refs + [100.0, 0, 0], refs, emd="approx")
    for name in ("CD", "EMD"):
        assert out[name]["1-NNA"] == 1.0 and out[name]["COV"] == 1 / 5
    # Single-point clouds: CD = 2 |a - b|^2 and EMD = |a - b|^2 ("pvd"), so MMD is the mean
    # over references of the closest sample, the one at x = 100.
    refs = np.array([[[0.3 * k, 0, 0]] for k in range(5)])
    out = evaluate_pointclouds(refs + [100.0, 0, 0], refs, emd="approx")
    gaps = np.array([100.0 - 0.3 * k for k in range(5)])
    assert out["CD"]["MMD"] == pytest.approx(2 * np.mean(gaps ** 2), rel=1e-6)
    assert out["EMD"]["MMD"] == pytest.approx(np.mean(gaps ** 2), rel=1e-6)
    assert out["CD"]["1-NNA"] == out["EMD"]["1-NNA"] == 1.0


def test_ties_are_broken_with_the_seed():
    # Two identical references: a sample equally close to both covers either one.
    d_sr = np.array([[1.0, 1.0]])
    d_ss, d_rr = np.zeros((1, 1)), np.array([[0.0, 0.0], [0.0, 0.0]])
    picks = {generative_metrics(d_sr, d_ss, d_rr, seed=s)["1-NNA"] for s in range(20)}
    assert picks == {2 / 3}  # r0 <-> r1 at 0 are right, the sample always lands on a reference
    a = evaluate_pointclouds(_clouds(3, 8, seed=1), np.repeat(_clouds(1, 8), 3, 0), emd=None, seed=1)
    b = evaluate_pointclouds(_clouds(3, 8, seed=1), np.repeat(_clouds(1, 8), 3, 0), emd=None, seed=1)
    assert a["CD"] == b["CD"]
    covs = {evaluate_pointclouds(_clouds(3, 8, seed=1), np.repeat(_clouds(1, 8), 3, 0), emd=None,
                                 seed=s)["CD"]["COV"] for s in range(10)}
    assert len(covs) > 1  # the three tied references are drawn at random


def test_generative_metrics_rejects_bad_matrices():
    ok = np.array([[1.0, 2, 3], [3, 2, 1]]), np.zeros((2, 2)), np.zeros((3, 3))
    with pytest.raises(ValueError, match="d_ss must have shape"):
        generative_metrics(ok[0], np.zeros((3, 3)), ok[2])
    with pytest.raises(ValueError, match="NaN or inf"):
        generative_metrics(np.array([[1.0, np.nan, 1.0], [1, 1, 1]]), ok[1], ok[2])
    with pytest.raises(ValueError, match="negative"):
        generative_metrics(-ok[0], ok[1], ok[2])
    with pytest.raises(ValueError, match="non-empty"):
        generative_metrics(np.ones((0, 3)), np.zeros((0, 0)), ok[2])
    # The diagonals of the within-set matrices are ignored, whatever they hold.
    d_ss = np.array([[np.inf, 1.0], [1.0, np.nan]])
    assert generative_metrics(ok[0], d_ss, ok[2])["COV"] == 2 / 3


# ----------------------------------------------------------------------------- evaluate


def test_protocol_records_how_numbers_were_made():
    s, r = _clouds(4, 16, seed=11), _clouds(3, 16, seed=12)
    out = evaluate_pointclouds(s, r, emd="exact", normalization="per-shape", seed=7, emd_convention="pointflow")
    p = out["protocol"]
    assert set(out) == {"CD", "EMD", "protocol"} and set(out["CD"]) == set(out["EMD"]) == {"MMD", "COV", "1-NNA"}
    assert p["normalization"] == "per-shape" and p["emd"]["method"] == "exact"
    assert p["emd"]["convention"] == "pointflow" and p["emd"]["ground_cost"] == "Euclidean"
    assert (p["num_samples"], p["num_references"], p["points_per_cloud"], p["seed"]) == (4, 3, 16, 7)
    assert set(p["versions"]) >= {"torch", "numpy", "scipy", "dit3d"} and p["batch_size"] is None
    assert all(0.0 <= out[k][m] <= 1.0 for k in ("CD", "EMD") for m in ("COV", "1-NNA"))
    skipped = evaluate_pointclouds(s, r, emd=None)
    assert skipped["EMD"] is None and skipped["protocol"]["emd"] is None


def test_batch_size_averages_consecutive_batches():
    s, r = _clouds(6, 12, seed=13), _clouds(6, 12, seed=14)
    full = evaluate_pointclouds(s, r, emd=None)
    assert evaluate_pointclouds(s, r, emd=None, batch_size=6)["CD"] == full["CD"]
    out = evaluate_pointclouds(s, r, emd="exact", batch_size=4)  # batches of 4 and 2
    assert out["protocol"]["num_batches"] == 2
    parts = []
    for lo, hi in ((0, 4), (4, 6)):
        d_sr = pairwise_emd(r[lo:hi], s[lo:hi], method="exact").matrix.T
        parts.append(generative_metrics(d_sr, pairwise_emd(s[lo:hi], method="exact").matrix,
                                        pairwise_emd(r[lo:hi], method="exact").matrix))
    for k in ("MMD", "COV", "1-NNA"):
        assert out["EMD"][k] == pytest.approx((4 * parts[0][k] + 2 * parts[1][k]) / 6)


def test_normalizations():
    s, r = _clouds(4, 20, seed=15), _clouds(5, 20, seed=16)
    gs, gr = normalize_pointclouds(s, r, "global")
    sd = r.std()  # one scalar over all reference coordinates, as PointFlow's dataset
    np.testing.assert_allclose(gr, (r - r.reshape(-1, 3).mean(0)) / sd)
    np.testing.assert_allclose(gs, (s - r.reshape(-1, 3).mean(0)) / sd)
    none, glob = evaluate_pointclouds(s, r, emd=None), evaluate_pointclouds(s, r, emd=None, normalization="global")
    assert glob["CD"]["MMD"] == pytest.approx(none["CD"]["MMD"] / sd ** 2, rel=1e-4)
    assert glob["CD"]["COV"] == none["CD"]["COV"] and glob["CD"]["1-NNA"] == none["CD"]["1-NNA"]
    ps, _ = normalize_pointclouds(s, r, "per-shape")
    assert np.allclose(ps.mean(1), 0) and np.allclose(np.linalg.norm(ps, axis=-1).max(1), 1.0)
    # Moved and rescaled copies of the references are the references again per shape.
    moved = 3.0 * r + [10.0, -2.0, 5.0]
    assert evaluate_pointclouds(moved, r, emd=None, normalization="per-shape")["CD"]["1-NNA"] == 0.0
    assert evaluate_pointclouds(moved, r, emd=None)["CD"]["1-NNA"] == 1.0


@pytest.mark.parametrize("samples, references, kwargs, match", [
    (np.zeros((2, 5, 2)), np.zeros((2, 5, 3)), {}, r"shape \(S, N, 3\)"),
    (np.zeros((5, 3)), np.zeros((2, 5, 3)), {}, r"shape \(S, N, 3\)"),
    (np.zeros((0, 5, 3)), np.zeros((2, 5, 3)), {}, "empty"),
    (np.full((2, 5, 3), np.nan), np.zeros((2, 5, 3)), {}, "NaN or inf"),
    (np.zeros((2, 5, 3)), np.full((2, 5, 3), np.inf), {}, "NaN or inf"),
    (np.ones((2, 5, 3)), np.ones((2, 6, 3)), {}, "equal counts"),
    (np.ones((2, 5, 3)), np.ones((3, 5, 3)), {"batch_size": 2}, "as many samples as references"),
    (np.ones((2, 5, 3)), np.ones((2, 5, 3)), {"batch_size": 0}, "positive int"),
    (np.ones((2, 5, 3)), np.ones((2, 5, 3)), {"emd": "sinkhorn"}, "emd must be one of"),
    (np.ones((2, 5, 3)), np.ones((2, 5, 3)), {"normalization": "unit"}, "normalization must be one of"),
    (np.ones((2, 5, 3)), np.ones((2, 5, 3)), {"normalization": "per-shape"}, "single repeated points"),
    (np.ones((2, 5, 3)), np.ones((2, 5, 3)), {"normalization": "global"}, "std is 0"),
    ("clouds", np.ones((2, 5, 3)), {}, "numeric array"),
])
def test_bad_inputs_raise(samples, references, kwargs, match):
    with pytest.raises(ValueError, match=match):
        evaluate_pointclouds(samples, references, **kwargs)


def test_unequal_point_counts_allowed_without_emd():
    out = evaluate_pointclouds(_clouds(2, 10), _clouds(3, 14, seed=1), emd=None)
    assert out["protocol"]["points_per_cloud"] == [10, 14]
    with pytest.raises(ValueError, match="chunk must be a positive int"):
        pairwise_cd(_clouds(2, 4), chunk=0)
