"""``dit3d evaluate pointclouds`` and ``dit3d convert shapes`` on tiny real inputs."""
import gzip
import json

import numpy as np
import pytest

from dit3d.cli import main
from dit3d.metrics.pointclouds import evaluate_pointclouds


def _clouds(m, n, seed):
    return np.random.default_rng(seed).random((m, n, 3)).astype(np.float32)


def test_evaluate_prints_one_json_line_and_writes_outputs(tmp_path, capsys):
    samples, refs = _clouds(4, 16, 0), _clouds(3, 16, 1)
    np.save(tmp_path / "s.npy", samples)
    np.save(tmp_path / "r.npy", refs)
    out = tmp_path / "res.json"
    main(["evaluate", "pointclouds", str(tmp_path / "s.npy"), "--reference", str(tmp_path / "r.npy"),
          "--emd", "exact", "--normalization", "per-shape", "--seed", "3", "--out", str(out)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert set(result["CD"]) == set(result["EMD"]) == {"MMD", "COV", "1-NNA"}
    assert all(0.0 <= result[d][k] <= 1.0 for d in ("CD", "EMD") for k in ("COV", "1-NNA"))  # fractions
    p = result["protocol"]
    assert p["normalization"] == "per-shape" and p["emd"]["method"] == "exact" and p["emd"]["convention"] == "pvd"
    assert (p["num_samples"], p["num_references"], p["seed"]) == (4, 3, 3)
    assert {"torch", "numpy", "scipy", "dit3d"} <= set(p["versions"]) and p["samples"].endswith("s.npy")
    direct = evaluate_pointclouds(samples, refs, emd="exact", normalization="per-shape", seed=3)
    assert result["CD"] == direct["CD"] and result["EMD"] == direct["EMD"]
    assert json.loads(out.read_text()) == result
    png = tmp_path / "res_renders.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["r.npy", "res.json", "res_renders.png", "s.npy"]


def test_evaluate_without_emd(tmp_path, capsys):
    np.save(tmp_path / "s.npy", _clouds(2, 8, 0))
    np.save(tmp_path / "r.npy", _clouds(2, 12, 1))  # unequal point counts are fine for Chamfer
    main(["evaluate", "pointclouds", str(tmp_path / "s.npy"), "--reference", str(tmp_path / "r.npy"), "--emd", "none"])
    result = json.loads(capsys.readouterr().out)
    assert result["EMD"] is None and result["protocol"]["emd"] is None


@pytest.mark.parametrize("samples, match", [
    (np.full((2, 8, 3), np.nan, np.float32), r"s\.npy: contains NaN or inf"),
    (np.zeros((8, 3), np.float32), r"s\.npy: has shape \(8, 3\), expected \(M, N, 3\)"),
    (_clouds(2, 9, 0), "EMD needs equal counts"),
    (None, r"s\.npy: file does not exist"),
])
def test_evaluate_bad_inputs_fail_clearly_and_write_nothing(tmp_path, samples, match):
    if samples is not None:
        np.save(tmp_path / "s.npy", samples)
    np.save(tmp_path / "r.npy", _clouds(2, 8, 1))
    before = sorted(x.name for x in tmp_path.iterdir())
    with pytest.raises(SystemExit, match=match):
        main(["evaluate", "pointclouds", str(tmp_path / "s.npy"), "--reference", str(tmp_path / "r.npy"),
              "--emd", "exact", "--out", str(tmp_path / "res.json")])
    assert sorted(x.name for x in tmp_path.iterdir()) == before


def test_evaluate_refuses_missing_out_folder_before_computing(tmp_path):
    np.save(tmp_path / "s.npy", _clouds(2, 8, 0))
    with pytest.raises(SystemExit, match="does not exist"):
        main(["evaluate", "pointclouds", str(tmp_path / "s.npy"), "--reference", str(tmp_path / "s.npy"),
              "--out", str(tmp_path / "no" / "res.json")])


def test_convert_shapes_command(tmp_path, capsys):
    grids = np.zeros((4, 1, 8, 8, 8))
    for k in range(1, 4):
        grids[k, 0, 2:5, 2:4 + k, 1:6] = 1
    with gzip.open(tmp_path / "things.npy.gz", "wb") as f:
        np.save(f, grids)
    root = tmp_path / "pc15k"
    main(["convert", "shapes", str(tmp_path / "things.npy.gz"), "-o", str(root), "--category", "car",
          "--no-progress"])
    assert "wrote 3 car clouds (1 train, 1 val, 1 test)" in capsys.readouterr().err
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*.npy"))
    assert len(files) == 3 and all(f.startswith("02958343/") for f in files)
    with pytest.raises(SystemExit, match="already exists; pass overwrite=True"):
        main(["convert", "shapes", str(tmp_path / "things.npy.gz"), "-o", str(root), "--category", "car"])
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*.npy")) == files
    with pytest.raises(SystemExit, match="unknown category 'spaceship'"):
        main(["convert", "shapes", str(tmp_path / "things.npy.gz"), "-o", str(tmp_path / "x"), "--category",
              "spaceship"])
    assert not (tmp_path / "x").exists()
