"""Voxel grids and binvox files -> surface point clouds in the PC15k layout."""
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import trimesh

from dit3d.data.pc15k import ShapeNetPC15k
from dit3d.data.shapes import ShapeFileError, convert_shapes, grid_to_pointcloud, iter_shapes, surface_mesh

VOXELS = Path(__file__).resolve().parents[2] / "shared" / "data" / "voxels"  # ../shared/data/voxels
MODELNET_CHAIRS = VOXELS / "modelnet10_chair32" / "chair.npy.gz"
SHAPENET_BINVOX = VOXELS / "shapenet_chair64_zihad13" / "03001627"
CHAIR = "03001627"


def box(shape=(12, 12, 12), lo=(2, 2, 2), hi=(6, 9, 4)):
    g = np.zeros(shape, bool)
    g[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    return g


def write_grids(path, grids):
    with gzip.open(path, "wb") as f:
        np.save(f, np.asarray(grids, np.float64)[:, None])
    return path


def leftovers(root):
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*"))


def test_surface_nets_mesh_is_closed_and_outward():
    v, f = surface_mesh(box())
    mesh = trimesh.Trimesh(v, f, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume > 0  # outward normals
    # The box spans voxel centres 2..5, 2..8, 2..3: its flat sides lie on the outer voxel faces.
    np.testing.assert_allclose(v.min(0), [1.5, 1.5, 1.5])
    np.testing.assert_allclose(v.max(0), [5.5, 8.5, 3.5])
    rng = np.random.default_rng(0)
    for _ in range(3):  # ragged random solids: still consistently outward
        v, f = surface_mesh(rng.random((7, 8, 9)) > 0.5)
        assert (f >= 0).all() and trimesh.Trimesh(v, f, process=False).volume > 0
    with pytest.raises(ValueError, match="non-empty 3-D occupancy"):
        surface_mesh(np.zeros((4, 4, 4)))


def test_marching_cubes_needs_scikit_image():
    try:
        import skimage  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="needs scikit-image"):
            surface_mesh(box(), method="marching-cubes")
    else:
        v, f = surface_mesh(box(), method="marching-cubes")
        assert trimesh.Trimesh(v, f, process=False).volume > 0
    with pytest.raises(ValueError, match="method must be one of"):
        surface_mesh(box(), method="dual-contouring")


def test_pointcloud_frame_and_seed():
    g = box(hi=(4, 5, 11))  # tallest along z
    pts = grid_to_pointcloud(g, 3000, seed=[0, 1], up_axis="z")
    assert pts.shape == (3000, 3) and pts.dtype == np.float32
    lo, hi = pts.min(0), pts.max(0)
    assert np.linalg.norm(hi - lo) == pytest.approx(1.0, abs=0.02)  # unit bounding-box diagonal
    np.testing.assert_allclose(0.5 * (lo + hi), 0.0, atol=0.01)
    assert np.argmax(hi - lo) == 1  # z up in the grid -> y up in the cloud
    np.testing.assert_array_equal(pts, grid_to_pointcloud(g, 3000, seed=[0, 1], up_axis="z"))
    assert not np.array_equal(pts, grid_to_pointcloud(g, 3000, seed=[0, 2], up_axis="z"))
    with pytest.raises(ValueError, match="up_axis"):
        grid_to_pointcloud(g, 10, up_axis="w")


def test_convert_array_to_pc15k_tree(tmp_path):
    grids = [np.zeros((10, 10, 10))] + [box((10, 10, 10), (1, 1, 1), (3 + k, 4, 5)) for k in range(5)]
    src = write_grids(tmp_path / "thing.npy.gz", grids)
    ids, _, kind = iter_shapes(src)
    assert ids == [f"thing_{k:04d}" for k in range(1, 6)] and kind == "occupancy-grid array"  # empty row 0 dropped
    root = tmp_path / "pc15k"
    manifest = convert_shapes(src, root, category="chair", num_points=15_000, seed=3, split=(0.6, 0.2, 0.2))
    assert manifest["counts"] == {"train": 3, "val": 1, "test": 1} and manifest["source_up_axis"] == "z"
    on_disk = {s: sorted(p.stem for p in (root / CHAIR / s).glob("*.npy")) for s in ("train", "val", "test")}
    assert on_disk == manifest["ids"]
    assert json.loads((root / CHAIR / "conversion.json").read_text())["ids"] == on_disk
    cloud = np.load(root / CHAIR / "train" / f"{on_disk['train'][0]}.npy")
    assert cloud.shape == (15_000, 3) and cloud.dtype == np.float32
    assert np.linalg.norm(cloud.max(0) - cloud.min(0)) == pytest.approx(1.0, abs=0.01)
    ds = ShapeNetPC15k(root, ["chair"], "train", num_points=2048)
    assert len(ds) == 3 and ds[0]["points"].shape == (2048, 3)
    # Same seed, same tree; limit keeps the first shapes.
    again = convert_shapes(src, tmp_path / "again", seed=3, split=(0.6, 0.2, 0.2))
    assert again["ids"] == manifest["ids"]
    np.testing.assert_array_equal(np.load(tmp_path / "again" / CHAIR / "train" / f"{on_disk['train'][0]}.npy"), cloud)
    assert convert_shapes(src, tmp_path / "few", limit=2)["num_shapes"] == 2


@pytest.mark.skipif(not MODELNET_CHAIRS.is_file(), reason="../shared/data/voxels is not available")
def test_convert_real_modelnet_chairs(tmp_path):
    manifest = convert_shapes(MODELNET_CHAIRS, tmp_path, "chair", limit=3)
    assert manifest["num_shapes"] == 3 and manifest["counts"] == {"train": 1, "val": 1, "test": 1}
    assert sorted(sum(manifest["ids"].values(), [])) == ["chair_0001", "chair_0002", "chair_0003"]
    for split in ("train", "val", "test"):
        ds = ShapeNetPC15k(tmp_path, ["chair"], split, normalization="none")
        cloud = ds.points[0]
        extent = cloud.max(0) - cloud.min(0)
        assert np.linalg.norm(extent) == pytest.approx(1.0, abs=0.01)
        assert np.argmax(extent) == 1  # chairs are taller than wide or deep: y is up
        assert ds.references().shape == (1, 5000, 3)


@pytest.mark.skipif(not SHAPENET_BINVOX.is_dir(), reason="../shared/data/voxels is not available")
def test_convert_real_shapenet_binvox(tmp_path):
    manifest = convert_shapes(SHAPENET_BINVOX, tmp_path, CHAIR, limit=3, seed=1)
    assert manifest["source_format"] == "binvox" and manifest["source_up_axis"] == "y"
    ids = sorted(p.stem for p in SHAPENET_BINVOX.glob("*.binvox"))[:3]
    assert sorted(sum(manifest["ids"].values(), [])) == ids
    cloud = np.load(tmp_path / CHAIR / "train" / f"{manifest['ids']['train'][0]}.npy")
    assert cloud.shape == (15_000, 3) and np.argmax(cloud.max(0) - cloud.min(0)) == 1


def test_bad_sources_leave_nothing(tmp_path):
    root = tmp_path / "out" / "pc15k"
    with pytest.raises(FileNotFoundError, match="shape source .* does not exist"):
        convert_shapes(tmp_path / "missing.npy.gz", root)
    src = write_grids(tmp_path / "g.npy.gz", [box((8, 8, 8))] * 4)
    data = gzip.decompress(src.read_bytes())
    (tmp_path / "short.npy.gz").write_bytes(gzip.compress(data[:-100]))
    with pytest.raises(ShapeFileError, match=r"short\.npy\.gz: truncated: the header says 4 grids, data ends in grid"):
        convert_shapes(tmp_path / "short.npy.gz", root)
    (tmp_path / "junk.npy.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ShapeFileError, match=r"junk\.npy\.gz: cannot read it as a \(gzip-compressed\) \.npy array"):
        convert_shapes(tmp_path / "junk.npy.gz", root)
    with gzip.open(tmp_path / "flat.npy.gz", "wb") as f:
        np.save(f, np.zeros((4, 8, 8)))
    with pytest.raises(ShapeFileError, match=r"flat\.npy\.gz: holds a float64 array of shape \(4, 8, 8\)"):
        convert_shapes(tmp_path / "flat.npy.gz", root)
    nan = np.stack([box((8, 8, 8))] * 2).astype(float)
    nan[1, 0, 0, 0] = np.nan
    with pytest.raises(ShapeFileError, match="grid 1 contains NaN"):
        convert_shapes(write_grids(tmp_path / "nan.npy.gz", nan), root)
    # A broken binvox file among good ones fails mid-conversion: no tree, no temporary folder, no root.
    folder = tmp_path / "binvox"
    folder.mkdir()
    for k in range(2):
        trimesh.voxel.VoxelGrid(box((8, 8, 8))).export(str(folder / f"ok{k}.binvox"))
    (folder / "zz_broken.binvox").write_bytes(b"#binvox 1\ndim 8 8 8\ndata\n\x01")
    with pytest.raises(ShapeFileError, match=r"zz_broken\.binvox: cannot read it as binvox"):
        convert_shapes(folder, root, split=(0.4, 0.3, 0.3))
    assert not (tmp_path / "out").exists()
    # An existing tree is kept unless overwrite.
    convert_shapes(folder, root, limit=2, split=(1.0, 0.0, 0.0))
    before = leftovers(root)
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        convert_shapes(src, root)
    assert leftovers(root) == before
    convert_shapes(src, root, overwrite=True)
    assert leftovers(root) != before and not [p for p in leftovers(root.parent) if p.startswith(".")]
    with pytest.raises(ValueError, match="split fractions"):
        convert_shapes(src, tmp_path / "x", split=(0.5, 0.2, 0.2))
