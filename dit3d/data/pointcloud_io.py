"""Point-cloud files: NPY and PLY readers and atomic writers, and PNG renders of clouds.

A point cloud is an array ``(N, 3)``; a set of clouds of equal size is ``(M, N, 3)`` (the
layout of ``dit3d evaluate pointclouds``, PointFlow's and PVD's sample files). NPY keeps
the array as it is (float32 unless asked otherwise); PLY (through trimesh, binary little
endian) holds one cloud as float32 vertices. Readers reject broken files with a
:class:`PointCloudFileError` that names the file and says what to do; writers validate
first and never leave half-written output behind (:mod:`dit3d.fileio`).
"""
from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dit3d.fileio import atomic_output

__all__ = ["PointCloudFileError", "check_clouds", "load_npy", "read_ply", "read_pointcloud", "read_pointclouds",
           "write_npy", "write_ply", "write_renders"]

PathLike = str | os.PathLike


class PointCloudFileError(ValueError):
    """A point-cloud (or shape) file is missing, unreadable or holds the wrong data.

    Args:
        path: the file.
        problem: what is wrong.
        fix: what the user can do about it.
    """

    def __init__(self, path: PathLike, problem: str, *, fix: str | None = None) -> None:
        self.path, self.problem = str(path), problem
        super().__init__(f"{self.path}: {problem}" + (f"; {fix}" if fix else ""))


def _check_npy_size(path: Path, what: str) -> None:
    """Refuse a ``.npy`` whose header promises more data than the file holds."""
    fix = f"the file is truncated or corrupt; re-create the {what} with numpy.save"
    with open(path, "rb") as f:
        head = f.read(6)
        if head.startswith(b"PK\x03\x04"):
            return  # an .npz archive: np.load opens it and load_npy says what it is
        if head != b"\x93NUMPY":
            raise PointCloudFileError(path, "cannot read it as a .npy array (no NUMPY header)",
                                      fix=f"save the {what} with numpy.save")
        f.seek(0)
        try:
            version = np.lib.format.read_magic(f)
            reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, _, dtype = reader(f)
        except Exception as e:  # noqa: BLE001 - numpy raises several types on bad headers
            raise PointCloudFileError(path, f"cannot read it as a .npy array (bad header: {type(e).__name__}: {e})",
                                      fix=fix) from None
        if dtype.hasobject:
            return  # refused by np.load(allow_pickle=False) with its own message
        expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
        actual = path.stat().st_size - f.tell()
    if actual < expected:
        raise PointCloudFileError(path, f"cannot read it as a .npy array: the header says {dtype} {tuple(shape)} "
                                  f"({expected:,} bytes) but the file holds {actual:,} bytes of data", fix=fix)


def load_npy(path: PathLike, what: str = "point cloud") -> np.ndarray:
    """``np.load`` without pickles, turning every failure into a :class:`PointCloudFileError`.

    The header is checked against the file size first, so a truncated file or a header
    with a huge shape is refused before any memory is allocated for it.

    Args:
        path: a ``.npy`` file.
        what: what the file should hold, for the messages.

    Raises:
        PointCloudFileError: missing file, a folder, no ``.npy`` header, a truncated or
            oversized file, object (pickled) data, an ``.npz`` archive.
    """
    path = Path(path)
    if not path.is_file():
        raise PointCloudFileError(path, "file does not exist" if not path.exists() else "not a file",
                                  fix=f"check the path of the {what} file")
    _check_npy_size(path, what)
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise PointCloudFileError(path, f"cannot read it as a .npy array ({type(e).__name__}: {e})",
                                  fix=f"re-create the {what} with numpy.save") from None
    if isinstance(arr, np.lib.npyio.NpzFile):
        arr.close()
        raise PointCloudFileError(path, "is an .npz archive, not a single .npy array",
                                  fix="save the clouds with numpy.save")
    return arr


def check_clouds(arr: Any, path: PathLike, batched: bool | None = None, min_points: int = 1) -> np.ndarray:
    """Validate clouds read from ``path``: numeric, ``(N, 3)`` / ``(M, N, 3)``, finite, big enough.

    Args:
        arr: the array.
        path: where it came from (named in errors).
        batched: True for ``(M, N, 3)``, False for ``(N, 3)``, None for either.
        min_points: least number of points per cloud.

    Returns:
        the array as float64, same shape.
    """
    a = np.asarray(arr)
    if a.dtype.kind not in "fiu":
        raise PointCloudFileError(path, f"holds {a.dtype} data, not numbers", fix="save float coordinates")
    want = {None: "(N, 3) or (M, N, 3)", True: "(M, N, 3)", False: "(N, 3)"}[batched]
    ndim_ok = a.ndim in (2, 3) if batched is None else a.ndim == (3 if batched else 2)
    if not ndim_ok or a.shape[-1] != 3:
        raise PointCloudFileError(path, f"has shape {a.shape}, expected {want} (clouds of 3D points)",
                                  fix="reshape the array to that layout before saving it")
    if a.size == 0:
        raise PointCloudFileError(path, f"is empty (shape {a.shape})", fix="the writer may have failed; regenerate it")
    if a.shape[-2] < min_points:
        raise PointCloudFileError(path, f"has {a.shape[-2]} points per cloud, fewer than the {min_points} needed",
                                  fix="resample the clouds with more points or ask for fewer")
    a = a.astype(np.float64, copy=False)
    bad = ~np.isfinite(a).all(-1)
    if bad.any():
        where = np.argwhere(bad)[0].tolist()
        label = f"cloud {where[0]}, point {where[1]}" if a.ndim == 3 else f"point {where[0]}"
        raise PointCloudFileError(path, f"contains NaN or inf ({int(bad.sum())} points; first at {label})",
                                  fix="drop or regenerate those clouds")
    return a


def read_pointclouds(path: PathLike, min_points: int = 1) -> np.ndarray:
    """Read a set of clouds ``(M, N, 3)`` from a ``.npy`` file, validated, as float64.

    Raises:
        PointCloudFileError: missing or unreadable file, wrong shape, empty, NaN/inf,
            fewer than ``min_points`` points per cloud.

    Example:
        >>> import tempfile
        >>> p = write_npy(Path(tempfile.mkdtemp()) / "s.npy", np.zeros((2, 5, 3)))
        >>> read_pointclouds(p).shape
        (2, 5, 3)
    """
    return check_clouds(load_npy(path, "point clouds"), path, batched=True, min_points=min_points)


def read_ply(path: PathLike, min_points: int = 1) -> np.ndarray:
    """Vertices ``(N, 3)`` float64 of a PLY file (a point cloud, or a mesh's vertices), via trimesh.

    Raises:
        PointCloudFileError: missing file, not PLY, fewer vertices than the header declares
            (truncated), NaN/inf, fewer than ``min_points`` points.
    """
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise PointCloudFileError(path, "file does not exist", fix="check the path")
    try:
        geom = trimesh.load(path, file_type="ply", process=False)
        vertices = np.asarray(geom.vertices)
    except Exception as e:  # trimesh raises many types on malformed files
        raise PointCloudFileError(path, f"cannot read it as PLY ({type(e).__name__}: {e})",
                                  fix="re-export it as a PLY point cloud") from None
    declared = _ply_vertex_count(path)
    if declared is not None and declared != len(vertices):
        raise PointCloudFileError(path, f"the header declares {declared} vertices but {len(vertices)} were read",
                                  fix="the file is truncated or corrupt; re-export it")
    return check_clouds(vertices, path, batched=False, min_points=min_points)


def _ply_vertex_count(path: Path) -> int | None:
    """``element vertex N`` of a PLY header, or None if the header does not say."""
    with open(path, "rb") as f:
        for _ in range(200):  # header lines
            line = f.readline()
            if not line or line.strip() == b"end_header":
                return None
            words = line.split()
            if len(words) == 3 and words[:2] == [b"element", b"vertex"] and words[2].isdigit():
                return int(words[2])
    return None


def read_pointcloud(path: PathLike, min_points: int = 1) -> np.ndarray:
    """Read one cloud ``(N, 3)`` from ``.npy`` or ``.ply``, validated, as float64.

    Raises:
        PointCloudFileError: unknown extension, or what :func:`load_npy`, :func:`check_clouds`
            and :func:`read_ply` reject.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".ply":
        return read_ply(path, min_points)
    if suffix != ".npy":
        raise PointCloudFileError(path, f"unknown extension {Path(path).suffix!r}", fix="use .npy or .ply")
    return check_clouds(load_npy(path), path, batched=False, min_points=min_points)


def _valid(clouds: Any, what: str, batched: bool | None, dtype: Any = np.float32) -> np.ndarray:
    try:
        arr = check_clouds(clouds.detach().cpu().numpy() if hasattr(clouds, "detach") else clouds, what, batched)
    except PointCloudFileError as e:
        raise ValueError(f"cannot write {e}") from None
    if np.dtype(dtype).kind == "f" and np.abs(arr).max() > np.finfo(dtype).max:
        raise ValueError(f"cannot write {what}: coordinates up to {np.abs(arr).max():.3g} overflow {np.dtype(dtype)}; "
                         "rescale the clouds")
    return arr


def write_npy(path: PathLike, clouds: Any, dtype: Any = np.float32) -> Path:
    """Write a cloud ``(N, 3)`` or clouds ``(M, N, 3)`` to ``.npy``, validated and atomically.

    Args:
        path: output file (written as given; no ``.npy`` is appended).
        clouds: array or tensor; must be finite and non-empty.
        dtype: stored dtype (float32, as PC15k and PointFlow's samples).

    Raises:
        ValueError: not numbers, not ``(N, 3)`` / ``(M, N, 3)``, empty, NaN/inf, or values
            that overflow ``dtype`` (nothing is written).
        FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError: ``path``
            cannot be written (see :func:`dit3d.fileio.atomic_output`).
    """
    arr = _valid(clouds, str(path), None, dtype).astype(dtype)
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)
    return Path(path)


def write_ply(path: PathLike, cloud: Any) -> Path:
    """Write one cloud ``(N, 3)`` as a binary PLY point cloud (float32 vertices), atomically.

    Raises:
        ValueError: not numbers, not ``(N, 3)``, empty, NaN/inf or beyond float32 (nothing
            is written); OSError subclasses as :func:`write_npy`.
    """
    import trimesh

    arr = _valid(cloud, str(path), False)
    data = trimesh.PointCloud(arr).export(file_type="ply", encoding="binary")
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_renders(path: PathLike, clouds: Any, titles: Sequence[str] | None = None, per_row: int = 4,
                  max_points: int = 2048, elev: float = 20.0, azim: float = -60.0) -> Path | None:
    """PNG grid of 3-D scatter renders of clouds ``(M, N, 3)``; None (nothing written) without matplotlib.

    Each panel shows one cloud with equal axis scales (``y`` up, as ShapeNet), at most
    ``max_points`` of its points (evenly strided). Uses matplotlib's object API (no
    ``pyplot``), so it changes no global backend.

    Args:
        path: output PNG.
        clouds: ``(M, N, 3)``.
        titles: one per cloud (default: their indices).
        per_row: panels per row.
        max_points: points drawn per cloud.
        elev: camera elevation in degrees.
        azim: camera azimuth in degrees.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from mpl_toolkits.mplot3d import Axes3D  # noqa: F401  (registers the 3d projection)
    except ImportError:
        return None
    arr = _valid(clouds, str(path), True)
    m = len(arr)
    cols = min(per_row, m)
    rows = -(-m // cols)
    fig = Figure(figsize=(2.6 * cols, 2.6 * rows), dpi=100)
    FigureCanvasAgg(fig)
    half = 0.5 * float(np.ptp(arr.reshape(-1, 3), axis=0).max()) or 1.0
    for i, cloud in enumerate(arr):
        ax = fig.add_subplot(rows, cols, i + 1, projection="3d")
        pts = cloud[:: max(1, -(-len(cloud) // max_points))]
        c = 0.5 * (cloud.min(0) + cloud.max(0))
        # matplotlib's 3-D axes put z up; show the cloud's y (ShapeNet's up axis) there.
        ax.scatter(pts[:, 0], pts[:, 2], pts[:, 1], s=0.5, c=pts[:, 1], cmap="viridis", depthshade=False)
        ax.set_xlim(c[0] - half, c[0] + half)
        ax.set_ylim(c[2] - half, c[2] + half)
        ax.set_zlim(c[1] - half, c[1] + half)
        ax.set_box_aspect((1, 1, 1), zoom=1.4)
        ax.view_init(elev=elev, azim=azim)
        ax.set_axis_off()
        ax.set_title(str(titles[i]) if titles is not None else str(i), fontsize=8)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)
