"""Point-cloud readers and atomic writers (NPY, PLY) and PNG renders."""
import numpy as np
import pytest
import torch

from dit3d.data.pointcloud_io import (PointCloudFileError, load_npy, read_ply, read_pointcloud, read_pointclouds,
                                      write_npy, write_ply, write_renders)


def clouds(m=3, n=50, seed=0):
    return np.random.default_rng(seed).standard_normal((m, n, 3))


def test_npy_round_trip(tmp_path):
    x = clouds()
    path = write_npy(tmp_path / "samples.npy", x)
    assert path.exists() and not (tmp_path / "samples.npy.npy").exists()
    back = read_pointclouds(path)
    assert back.dtype == np.float64 and back.shape == (3, 50, 3)
    np.testing.assert_array_equal(back, x.astype(np.float32))  # stored as float32
    write_npy(tmp_path / "exact.npy", x, dtype=np.float64)
    np.testing.assert_array_equal(read_pointclouds(tmp_path / "exact.npy"), x)
    write_npy(tmp_path / "one.npy", torch.from_numpy(x[0]))  # tensors and single clouds too
    np.testing.assert_array_equal(read_pointcloud(tmp_path / "one.npy"), x[0].astype(np.float32))
    with pytest.raises(PointCloudFileError, match=r"one\.npy: has shape \(50, 3\), expected \(M, N, 3\)"):
        read_pointclouds(tmp_path / "one.npy")


def test_ply_round_trip(tmp_path):
    x = clouds(1, 40)[0]
    x[1] = x[0]  # duplicated points are kept, not merged
    path = write_ply(tmp_path / "cloud.ply", x)
    assert path.read_bytes().startswith(b"ply\nformat binary_little_endian")
    back = read_ply(path)
    assert back.shape == (40, 3)
    np.testing.assert_array_equal(back, x.astype(np.float32))
    np.testing.assert_array_equal(read_pointcloud(path), back)


@pytest.mark.parametrize("write, data, match", [
    (write_npy, np.full((2, 5, 3), np.nan), r"x\.out: contains NaN or inf \(10 points; first at cloud 0, point 0\)"),
    (write_npy, np.zeros((2, 5, 4)), r"has shape \(2, 5, 4\), expected \(N, 3\) or \(M, N, 3\)"),
    (write_npy, np.zeros((0, 5, 3)), "is empty"),
    (write_npy, np.array([["a", "b", "c"]]), "not numbers"),
    (write_ply, np.zeros((2, 5, 3)), r"has shape \(2, 5, 3\), expected \(N, 3\)"),
    (write_ply, np.array([[0.0, 1.0, np.inf]]), r"contains NaN or inf \(1 points; first at point 0\)"),
])
def test_writers_reject_bad_clouds_and_write_nothing(tmp_path, write, data, match):
    with pytest.raises(ValueError, match=match):
        write(tmp_path / "x.out", data)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError, match="does not exist; create it first"):
        write(tmp_path / "missing" / "x.out", clouds()[0])


def test_readers_name_broken_files(tmp_path):
    with pytest.raises(PointCloudFileError, match=r"nope\.npy: file does not exist"):
        read_pointclouds(tmp_path / "nope.npy")
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(PointCloudFileError, match=r"junk\.npy: cannot read it as a \.npy array"):
        load_npy(tmp_path / "junk.npy")
    np.save(tmp_path / "obj.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    with pytest.raises(PointCloudFileError, match=r"obj\.npy: cannot read it as a \.npy array"):
        read_pointclouds(tmp_path / "obj.npy")
    np.savez(tmp_path / "both.npz", a=clouds())
    (tmp_path / "both.npz").rename(tmp_path / "both.npy")
    with pytest.raises(PointCloudFileError, match=r"both\.npy: is an \.npz archive"):
        read_pointclouds(tmp_path / "both.npy")
    np.save(tmp_path / "few.npy", clouds(2, 5))
    with pytest.raises(PointCloudFileError, match=r"few\.npy: has 5 points per cloud, fewer than the 8 needed"):
        read_pointclouds(tmp_path / "few.npy", min_points=8)
    (tmp_path / "bad.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 3\nend_header\n1 2\n")
    with pytest.raises(PointCloudFileError, match=r"bad\.ply"):
        read_ply(tmp_path / "bad.ply")
    with pytest.raises(PointCloudFileError, match=r"x\.xyz: unknown extension"):
        read_pointcloud(tmp_path / "x.xyz")


def test_renders_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = write_renders(tmp_path / "r.png", clouds(3, 200), titles=["a", "b", "c"], per_row=2)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["r.png"]  # no temporary left over
